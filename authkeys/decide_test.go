package authkeys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// policyCache is the cache the decision tests answer from: alice may log
// in as root or deploy, bob is locked, carol has no login; serial 10 of
// the user CA, 20 of the session CA and 30 of the host CA are revoked.
func policyCache(t testing.TB, mode string) *Cache {
	return &Cache{
		Node:      "web-1",
		Confirmed: time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC),
		Generated: time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC),
		Hash:      "ab12",
		Mode:      mode,
		TrustedCA: testSigner(t, seedTrustedCA).PublicKey(),
		Users: map[string]Access{
			"alice":    {Logins: []string{"root", "deploy"}},
			"bob":      {Logins: []string{"root"}, Locked: true},
			"carol":    {},
			"dave.ops": {Logins: []string{"www-data"}},
		},
		Revoked: []Revoked{
			{CA: "user", Serial: 10},
			{CA: "session", Serial: 20},
			{CA: "host", Serial: 30},
		},
	}
}

// keyIDFor is the KeyId the node sees for user's certificates in mode.
func keyIDFor(mode, user string) string {
	if mode == ModeProxy {
		return "user=" + user + " proxy=proxy-1 session=3f2a9c"
	}
	return user
}

// signCert returns a certificate of the fixed user key signed by ca.
func signCert(t testing.TB, ca ssh.Signer, certType uint32, keyID string, serial uint64) *ssh.Certificate {
	t.Helper()
	cert := &ssh.Certificate{
		Key:             testSigner(t, seedUserKey).PublicKey(),
		CertType:        certType,
		Serial:          serial,
		KeyId:           keyID,
		ValidPrincipals: []string{"root"},
		ValidAfter:      uint64(time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC).Unix()),
		ValidBefore:     uint64(time.Date(2025, 3, 5, 0, 0, 0, 0, time.UTC).Unix()),
		Permissions:     ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return cert
}

// offered is a key as sshd passes it to AuthorizedKeysCommand: %t, %k.
func offered(pub ssh.PublicKey) (keyType, keyB64 string) {
	return pub.Type(), base64.StdEncoding.EncodeToString(pub.Marshal())
}

// wantDenied fails t unless err is a *Denied whose reason mentions all
// of the fragments.
func wantDenied(t *testing.T, err error, fragments ...string) {
	t.Helper()
	var d *Denied
	if !errors.As(err, &d) {
		t.Fatalf("error %v (%T) is not a *Denied", err, err)
	}
	for _, f := range fragments {
		if !strings.Contains(d.Reason, f) {
			t.Errorf("reason %q does not mention %q", d.Reason, f)
		}
	}
}

// keyIDCase is a certificate KeyId and the user it names in mode.
type keyIDCase struct {
	name, mode, keyID string
	want              string // "" means refused
}

// keyIDCases is TestUserFromKeyID's table.
func keyIDCases() []keyIDCase {
	return []keyIDCase{
		{"proxy session cert", ModeProxy, "user=alice proxy=p1 session=abc", "alice"},
		{"proxy user with dots and dashes", ModeProxy, "user=a.b-c_d proxy=p1 session=abc", "a.b-c_d"},
		{"proxy empty proxy and session", ModeProxy, "user=alice proxy= session=", "alice"},
		{"proxy plain user", ModeProxy, "alice", ""},
		{"proxy missing session", ModeProxy, "user=alice proxy=p1", ""},
		{"proxy extra field", ModeProxy, "user=alice proxy=p1 session=abc extra=1", ""},
		{"proxy trailing space", ModeProxy, "user=alice proxy=p1 session=abc ", ""},
		{"proxy double space", ModeProxy, "user=alice  proxy=p1 session=abc", ""},
		{"proxy tabs", ModeProxy, "user=alice\tproxy=p1\tsession=abc", ""},
		{"proxy fields reordered", ModeProxy, "proxy=p1 user=alice session=abc", ""},
		{"proxy missing user prefix", ModeProxy, "alice proxy=p1 session=abc", ""},
		{"proxy missing proxy prefix", ModeProxy, "user=alice p1 session=abc", ""},
		{"proxy missing session prefix", ModeProxy, "user=alice proxy=p1 abc", ""},
		{"proxy prefix in capitals", ModeProxy, "User=alice proxy=p1 session=abc", ""},
		{"proxy empty user", ModeProxy, "user= proxy=p1 session=abc", ""},
		{"proxy user in capitals", ModeProxy, "user=Alice proxy=p1 session=abc", ""},
		{"proxy user with comma", ModeProxy, "user=al,ice proxy=p1 session=abc", ""},
		{"proxy user with quote", ModeProxy, `user=al"ice proxy=p1 session=abc`, ""},
		{"proxy user with percent", ModeProxy, "user=%u proxy=p1 session=abc", ""},
		{"proxy user with equals", ModeProxy, "user=user=alice proxy=p1 session=abc", ""},
		{"proxy user with newline", ModeProxy, "user=alice\nx proxy=p1 session=abc", ""},
		{"proxy user too long", ModeProxy, "user=" + strings.Repeat("a", 65) + " proxy=p1 session=abc", ""},
		{"proxy empty", ModeProxy, "", ""},

		{"off plain user", ModeOff, "alice", "alice"},
		{"off user with dot", ModeOff, "alice.b", "alice.b"},
		{"off longest user", ModeOff, strings.Repeat("a", 64), strings.Repeat("a", 64)},
		{"off session key id", ModeOff, "user=alice proxy=p1 session=abc", ""},
		{"off user= prefix", ModeOff, "user=alice", ""},
		{"off capitals", ModeOff, "Alice", ""},
		{"off trailing space", ModeOff, "alice ", ""},
		{"off trailing newline", ModeOff, "alice\n", ""},
		{"off comma", ModeOff, "alice,root", ""},
		{"off quote", ModeOff, `alice"`, ""},
		{"off percent", ModeOff, "%u", ""},
		{"off too long", ModeOff, strings.Repeat("a", 65), ""},
		{"off empty", ModeOff, "", ""},

		{"unknown mode", "", "alice", ""},
		{"unknown mode session", "record", "user=alice proxy=p1 session=abc", ""},
	}
}

func TestUserFromKeyID(t *testing.T) {
	t.Parallel()
	for _, tt := range keyIDCases() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := UserFromKeyID(tt.mode, tt.keyID)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("UserFromKeyID(%q, %q) = %q, want a refusal", tt.mode, tt.keyID, got)
				}
				wantDenied(t, err)
				if got != "" {
					t.Errorf("refusal returned user %q", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("UserFromKeyID(%q, %q) = %q, %v; want %q", tt.mode, tt.keyID, got, err, tt.want)
			}
		})
	}
}

// checkCase is one login attempt; user is the KeyId's user, made into
// the KeyId of the cache's mode.
type checkCase struct {
	name, login, user string
	serial            uint64
	wantReason        string // "" means allowed
}

// checkCases are the attempts both Check and KeysLine decide, for mode.
func checkCases(mode string) []checkCase {
	// The serial of the CA the mode trusts, and one of the CA it does not.
	trusted, untrusted := uint64(10), uint64(20)
	if mode == ModeProxy {
		trusted, untrusted = 20, 10
	}
	return []checkCase{
		{"allowed", "root", "alice", 1, ""},
		{"second login", "deploy", "alice", 1, ""},
		{"user with dot", "www-data", "dave.ops", 1, ""},
		{"serial 0", "root", "alice", 0, ""},
		{"other login", "admin", "alice", 1, "may not log in as admin"},
		{"login of another user", "www-data", "alice", 1, "may not log in as www-data"},
		{"unknown user", "root", "eve", 1, "eve has no login"},
		{"locked", "root", "bob", 1, "bob is locked"},
		{"no logins", "root", "carol", 1, "may not log in as root"},
		{"revoked", "root", "alice", trusted, "revoked"},
		{"revoked by the other CA", "root", "alice", untrusted, ""},
		{"revoked host serial", "root", "alice", 30, ""},
		{"login in capitals", "Root", "alice", 1, "not a valid login"},
		{"login list", "root,deploy", "alice", 1, "not a valid login"},
		{"login with quote", `root" command="sh`, "alice", 1, "not a valid login"},
		{"login with space", "root x", "alice", 1, "not a valid login"},
		{"login with newline", "root\n", "alice", 1, "not a valid login"},
		{"login with percent", "%u", "alice", 1, "not a valid login"},
		{"login empty", "", "alice", 1, "not a valid login"},
		{"login too long", strings.Repeat("r", 33), "alice", 1, "not a valid login"},
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{ModeOff, ModeProxy} {
		c := policyCache(t, mode)
		for _, tt := range checkCases(mode) {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				err := c.Check(tt.login, keyIDFor(mode, tt.user), tt.serial)
				if tt.wantReason == "" {
					if err != nil {
						t.Fatalf("Check(%q, %q, %d): %v", tt.login, keyIDFor(mode, tt.user), tt.serial, err)
					}
					return
				}
				if err == nil {
					t.Fatalf("Check(%q, %q, %d) allowed it", tt.login, keyIDFor(mode, tt.user), tt.serial)
				}
				wantDenied(t, err, tt.wantReason)
			})
		}
	}
}

// TestCheckKeyIDOfOtherMode: a node in mode proxy does not let users log
// in with their own certificates, and a node in mode off does not take
// session certificates.
func TestCheckKeyIDOfOtherMode(t *testing.T) {
	t.Parallel()
	if err := policyCache(t, ModeProxy).Check("root", keyIDFor(ModeOff, "alice"), 1); err == nil {
		t.Error("mode proxy allowed a user certificate's key id")
	} else {
		wantDenied(t, err, "session certificate")
	}
	if err := policyCache(t, ModeOff).Check("root", keyIDFor(ModeProxy, "alice"), 1); err == nil {
		t.Error("mode off allowed a session certificate's key id")
	} else {
		wantDenied(t, err, "not a cluster user name")
	}
}

func TestPrincipalsLine(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{ModeOff, ModeProxy} {
		c := policyCache(t, mode)
		revoked := "10"
		if mode == ModeProxy {
			revoked = "20"
		}
		tests := []struct {
			name, login, user, serial string
			want                      string // "" means refused
		}{
			{"allowed", "root", "alice", "1", "root\n"},
			{"second login", "deploy", "alice", "18446744073709551615", "deploy\n"},
			{"leading zeros", "root", "alice", "007", "root\n"},
			{"other login", "admin", "alice", "1", ""},
			{"unknown user", "root", "eve", "1", ""},
			{"locked", "root", "bob", "1", ""},
			{"revoked", "root", "alice", revoked, ""},
			{"revoked with leading zero", "root", "alice", "0" + revoked, ""},
			{"serial hex", "root", "alice", "0x1", ""},
			{"serial negative", "root", "alice", "-1", ""},
			{"serial signed", "root", "alice", "+1", ""},
			{"serial empty", "root", "alice", "", ""},
			{"serial with space", "root", "alice", " 1", ""},
			{"serial float", "root", "alice", "1e3", ""},
			{"serial overflows", "root", "alice", "18446744073709551616", ""},
			{"serial with underscore", "root", "alice", "1_000", ""},
			{"bad login", "root\nadmin", "alice", "1", ""},
		}
		for _, tt := range tests {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				got, err := c.PrincipalsLine(tt.login, keyIDFor(mode, tt.user), tt.serial)
				if got != tt.want {
					t.Fatalf("PrincipalsLine(%q, %q, %q) = %q, %v; want %q", tt.login, keyIDFor(mode, tt.user), tt.serial, got, err, tt.want)
				}
				if tt.want == "" {
					wantDenied(t, err)
				} else if err != nil {
					t.Errorf("allowed with error %v", err)
				}
			})
		}
	}
}

// wantKeysLine is the exact line KeysLine prints for login: a
// cert-authority line for the trusted CA limited to the one principal.
func wantKeysLine(t testing.TB, login string) string {
	return `cert-authority,principals="` + login + `" ` + authorizedKey(testSigner(t, seedTrustedCA).PublicKey()) + "\n"
}

func TestKeysLineDecides(t *testing.T) {
	t.Parallel()
	ca := testSigner(t, seedTrustedCA)
	for _, mode := range []string{ModeOff, ModeProxy} {
		c := policyCache(t, mode)
		for _, tt := range checkCases(mode) {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				typ, b64 := offered(signCert(t, ca, ssh.UserCert, keyIDFor(mode, tt.user), tt.serial))
				got, err := c.KeysLine(tt.login, typ, b64)
				if tt.wantReason == "" {
					if err != nil {
						t.Fatalf("KeysLine(%q): %v", tt.login, err)
					}
					if want := wantKeysLine(t, tt.login); got != want {
						t.Errorf("KeysLine(%q) =\n%q\nwant\n%q", tt.login, got, want)
					}
					return
				}
				if got != "" || err == nil {
					t.Fatalf("KeysLine(%q) = %q, %v; want a refusal", tt.login, got, err)
				}
				wantDenied(t, err, tt.wantReason)
			})
		}
	}
}

// TestKeysLineFormat checks the allowed line the way sshd reads it.
func TestKeysLineFormat(t *testing.T) {
	t.Parallel()
	ca := testSigner(t, seedTrustedCA)
	c := policyCache(t, ModeOff)
	typ, b64 := offered(signCert(t, ca, ssh.UserCert, "alice", 1))
	line, err := c.KeysLine("deploy", typ, b64)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("line %q is not exactly one line", line)
	}
	if !strings.HasPrefix(line, `cert-authority,principals="deploy" ssh-ed25519 AAAA`) {
		t.Errorf("line %q does not start with the cert-authority option for deploy and an ed25519 key", line)
	}
	pub, _, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatalf("the line does not parse as authorized_keys: %v", err)
	}
	if len(rest) != 0 {
		t.Errorf("text after the line: %q", rest)
	}
	if len(options) != 2 || options[0] != "cert-authority" || options[1] != `principals="deploy"` {
		t.Errorf("options %q, want [cert-authority principals=\"deploy\"]", options)
	}
	if string(pub.Marshal()) != string(ca.PublicKey().Marshal()) {
		t.Errorf("the line names key %s, want the trusted CA %s", authorizedKey(pub), authorizedKey(ca.PublicKey()))
	}
}

func TestKeysLineRefusesKeys(t *testing.T) {
	t.Parallel()
	ca := testSigner(t, seedTrustedCA)
	ecdsaKey := func() ssh.PublicKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := ssh.NewPublicKey(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return pub
	}()
	for _, mode := range []string{ModeOff, ModeProxy} {
		c := policyCache(t, mode)
		kid := keyIDFor(mode, "alice")
		good := signCert(t, ca, ssh.UserCert, kid, 1)
		goodType, goodB64 := offered(good)
		// The unchanged certificate is allowed, so each refusal below is
		// due to what its case changed.
		if got, err := c.KeysLine("root", goodType, goodB64); got != wantKeysLine(t, "root") {
			t.Fatalf("%s: the unchanged certificate: %q, %v", mode, got, err)
		}
		ecdsaCert := signCert(t, ca, ssh.UserCert, kid, 1)
		ecdsaCert.Key = ecdsaKey
		if err := ecdsaCert.SignCert(rand.Reader, ca); err != nil {
			t.Fatal(err)
		}
		// A certificate that would be allowed but for its size: an
		// extension makes its base64 longer than MaxKeyBytes.
		big := signCert(t, ca, ssh.UserCert, kid, 1)
		big.Extensions["x@example.com"] = strings.Repeat("x", MaxKeyBytes*3/4)
		if err := big.SignCert(rand.Reader, ca); err != nil {
			t.Fatal(err)
		}
		bigType, bigB64 := offered(big)
		if len(bigB64) <= MaxKeyBytes {
			t.Fatalf("the big certificate is only %d bytes of base64", len(bigB64))
		}

		tests := []struct {
			name, keyType, keyB64 string
			wantReason            string
		}{
			{"other CA", goodType, b64(signCert(t, testSigner(t, seedOtherCA), ssh.UserCert, kid, 1)), "not signed by the CA this node trusts"},
			{"host certificate", goodType, b64(signCert(t, ca, ssh.HostCert, kid, 1)), "host certificate"},
			{"plain key", "ssh-ed25519", b64(testSigner(t, seedUserKey).PublicKey()), "not a certificate"},
			{"plain key of the CA", "ssh-ed25519", b64(ca.PublicKey()), "not a certificate"},
			{"plain key named a certificate", goodType, b64(testSigner(t, seedUserKey).PublicKey()), "is not a"},
			{"type of another certificate", "ecdsa-sha2-nistp256-cert-v01@openssh.com", goodB64, "is not a"},
			{"ecdsa certificate named ed25519", goodType, b64(ecdsaCert), "is not a"},
			{"type with suffix only", "-cert-v01@openssh.com", goodB64, "is not a"},
			{"type empty", "", goodB64, "not a certificate"},
			{"type of a security key", "sk-ssh-ed25519@openssh.com", goodB64, "not a certificate"},
			{"garbage base64", goodType, "!!!not base64!!!", "not base64"},
			{"URL base64", goodType, base64.URLEncoding.EncodeToString(good.Marshal()) + "-_", "not base64"},
			{"garbage blob", goodType, base64.StdEncoding.EncodeToString([]byte("garbage that is not a key")), "does not parse"},
			{"truncated blob", goodType, base64.StdEncoding.EncodeToString(good.Marshal()[:len(good.Marshal())-10]), "does not parse"},
			{"empty", goodType, "", "does not parse"},
			{"oversize", bigType, bigB64, "larger than"},
		}
		for _, tt := range tests {
			t.Run(mode+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				got, err := c.KeysLine("root", tt.keyType, tt.keyB64)
				if got != "" || err == nil {
					t.Fatalf("KeysLine accepted it: %q", got)
				}
				wantDenied(t, err, tt.wantReason)
			})
		}
	}
}

func b64(pub ssh.PublicKey) string { return base64.StdEncoding.EncodeToString(pub.Marshal()) }

func TestParseOfferedCert(t *testing.T) {
	t.Parallel()
	cert := signCert(t, testSigner(t, seedTrustedCA), ssh.UserCert, "user=alice proxy=p session=s", 42)
	typ, b := offered(cert)
	if typ != "ssh-ed25519-cert-v01@openssh.com" {
		t.Fatalf("cert type %q", typ)
	}
	got, err := ParseOfferedCert(typ, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.KeyId != cert.KeyId || got.Serial != 42 || got.CertType != ssh.UserCert || string(got.Marshal()) != string(cert.Marshal()) {
		t.Errorf("ParseOfferedCert = %+v, want %+v", got, cert)
	}
	if _, err := ParseOfferedCert(typ, strings.Repeat("A", MaxKeyBytes+4)); err == nil {
		t.Error("ParseOfferedCert accepted a key longer than MaxKeyBytes")
	} else {
		wantDenied(t, err, "larger than")
	}
}
