package authkeys

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Proxies' session signers: written as "signer" lines after the header
// lines, read back by the full parse and by the one-user lookup, and
// trusted by KeysLine beside the CA.
func TestSessionSigners(t *testing.T) {
	c := policyCache(t, ModeProxy)
	p1, p2 := testSigner(t, 201), testSigner(t, 202)
	c.Signers = []ssh.PublicKey{p1.PublicKey(), p2.PublicKey()}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	file := string(b)
	if !strings.Contains(file, "\nca ssh-ed25519 ") || strings.Count(file, "\nsigner ssh-ed25519 ") != 2 {
		t.Fatalf("cache file lacks the signer lines:\n%s", file)
	}
	full, err := ParseCache(b)
	if err != nil {
		t.Fatalf("ParseCache: %v", err)
	}
	one, err := ParseCacheFor(b, "alice")
	if err != nil {
		t.Fatalf("ParseCacheFor: %v", err)
	}
	for name, got := range map[string]*Cache{"full parse": full, "lookup": one} {
		if len(got.Signers) != 2 || !keysEq(got.Signers[0], p1.PublicKey()) || !keysEq(got.Signers[1], p2.PublicKey()) {
			t.Errorf("%s: signers %v", name, got.Signers)
		}
	}

	// A session certificate from a proxy's signer is trusted, and the
	// cert-authority line names that signer.
	typ, b64 := offered(signCert(t, p2, ssh.UserCert, keyIDFor(ModeProxy, "alice"), 7))
	line, err := one.KeysLine("root", typ, b64)
	if err != nil {
		t.Fatalf("KeysLine for a proxy-signed certificate: %v", err)
	}
	if want := `cert-authority,principals="root" ` + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p2.PublicKey()))) + "\n"; line != want {
		t.Errorf("KeysLine = %q, want %q", line, want)
	}
	// Another key is not.
	typ, b64 = offered(signCert(t, testSigner(t, 203), ssh.UserCert, keyIDFor(ModeProxy, "alice"), 8))
	if _, err := one.KeysLine("root", typ, b64); err == nil {
		t.Fatal("KeysLine trusted a certificate from a key that is neither the CA nor a signer")
	}
	// The policy still decides for proxy-signed certificates.
	typ, b64 = offered(signCert(t, p1, ssh.UserCert, keyIDFor(ModeProxy, "bob"), 9))
	if _, err := one.KeysLine("root", typ, b64); err == nil {
		t.Fatal("KeysLine let a locked user in with a proxy-signed certificate")
	}
}

func keysEq(a, b ssh.PublicKey) bool { return string(a.Marshal()) == string(b.Marshal()) }

func TestSessionSignersRefused(t *testing.T) {
	c := policyCache(t, ModeProxy)
	p1 := testSigner(t, 201)
	for name, signers := range map[string][]ssh.PublicKey{
		"twice":      {p1.PublicKey(), p1.PublicKey()},
		"the CA key": {c.TrustedCA},
	} {
		c.Signers = signers
		if _, err := c.Marshal(); err == nil {
			t.Errorf("Marshal accepted signers %s", name)
		}
	}
	c.Signers = []ssh.PublicKey{p1.PublicKey()}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	file := string(b)
	signer := "signer " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p1.PublicKey())))
	for name, bad := range map[string]string{
		"signer after the users": strings.Replace(file, signer+"\n", "", 1)[:0] + moveBeforeEnd(file, signer),
		"signer with options":    strings.Replace(file, signer, `signer command="x" `+signer[len("signer "):], 1),
		"two keys on one line":   strings.Replace(file, signer, signer+" "+signer[len("signer "):], 1),
	} {
		if _, err := ParseCache([]byte(resealV2(bad))); err == nil {
			t.Errorf("%s: ParseCache accepted\n%s", name, bad)
		}
	}
}

// moveBeforeEnd moves line from its place to just before the end line.
func moveBeforeEnd(file, line string) string {
	return beforeEnd(strings.Replace(file, line+"\n", "", 1), line)
}
