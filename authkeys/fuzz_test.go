package authkeys

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// FuzzParseCache: ParseCache and ParseCacheFor never panic and answer
// as agree requires (for a v1 file, exactly what the reference parser
// answers), and what ParseCache accepts marshals back to a file that
// parses to the same policy.
func FuzzParseCache(f *testing.F) {
	valid := validCacheFile(f)
	f.Add([]byte(valid))
	f.Add([]byte(valid[:len(valid)/2]))
	f.Add([]byte("\x00\xffgarbage\n\n"))
	for _, bc := range badCaches(f) {
		if len(bc.data) < 4096 {
			f.Add([]byte(bc.data))
		}
	}
	for _, s := range orderSeeds(f) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		users := []string{"", "alice", "zed"}
		for line := range strings.Lines(string(data)) {
			if kw, rest, _ := strings.Cut(line, " "); (kw == "user" || kw == "locked") && len(users) < 6 {
				name, _, _ := strings.Cut(rest, " ")
				users = append(users, name)
			}
		}
		for _, u := range users {
			agree(t, data, u)
		}
		c, err := ParseCache(data)
		if err != nil {
			return
		}
		b, err := c.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed cache: %v", err)
		}
		c2, err := ParseCache(b)
		if err != nil {
			t.Fatalf("ParseCache of the re-marshalled cache: %v\n%s", err, b)
		}
		// Expiry times are written to the second.
		want := *c
		want.Revoked = nil
		for _, r := range c.Revoked {
			r.Expires = r.Expires.Truncate(time.Second)
			want.Revoked = append(want.Revoked, r)
		}
		if d := cacheDiff(c2, &want); d != "" {
			t.Fatalf("the round trip changed the policy:\n%s\n%s", d, b)
		}
		if b2, err := c2.Marshal(); err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("Marshal is not stable: %v\n%s\n---\n%s", err, b, b2)
		}

		users = []string{"zed"}
		for u := range c.Users {
			if len(users) < 5 {
				users = append(users, u)
			}
		}
		for _, u := range users {
			cu, err := ParseCacheFor(data, u)
			if err != nil {
				t.Fatalf("ParseCacheFor(%q) refused a file ParseCache accepts: %v", u, err)
			}
			want := *c
			want.Users = map[string]Access{}
			if a, ok := c.Users[u]; ok {
				want.Users[u] = a
			}
			if d := cacheDiff(cu, &want); d != "" {
				t.Fatalf("ParseCacheFor(%q):\n%s", u, d)
			}
		}
	})
}

// FuzzLookup: for any lines under a first line of format v2 that matches
// them, as only a writer could make, lookup never panics and answers as
// agree requires: what the full parse answers whenever that accepts,
// and otherwise only from a valid line of the user.
func FuzzLookup(f *testing.F) {
	for _, s := range lookupSeeds(f) {
		f.Add([]byte(s.body), s.user)
	}
	valid := validCacheFileV1(f)
	for _, bc := range badCaches(f) {
		if _, body, ok := strings.Cut(bc.data, "\n"); ok && len(body) < 4096 && bc.data != valid {
			f.Add([]byte(body), "alice")
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, user string) {
		data := seal(body)
		agree(t, data, user)
		agree(t, data, "")
	})
}

// keysLineRE is every line KeysLine may print.
var keysLineRE = regexp.MustCompile(`^cert-authority,principals="[a-z_][a-z0-9_-]*" [^\n]+\n$`)

// fuzzKeysSeeds are FuzzKeysLine's seeds: login, %t, %k. The
// certificates are signed with a zero nonce so that the committed
// corpus does not change with -update.
func fuzzKeysSeeds(t testing.TB) map[string][3]string {
	ca := testSigner(t, seedTrustedCA)
	sign := func(ca ssh.Signer, certType uint32, keyID string) ssh.PublicKey {
		cert := signCert(t, ca, certType, keyID, 1)
		if err := cert.SignCert(zeroReader{}, ca); err != nil {
			t.Fatal(err)
		}
		return cert
	}
	seed := func(login string, pub ssh.PublicKey) [3]string {
		typ, key := offered(pub)
		return [3]string{login, typ, key}
	}
	return map[string][3]string{
		"user-cert":     seed("root", sign(ca, ssh.UserCert, "alice")),
		"session-cert":  seed("deploy", sign(ca, ssh.UserCert, keyIDFor(ModeProxy, "alice"))),
		"host-cert":     seed("root", sign(ca, ssh.HostCert, "alice")),
		"other-ca-cert": seed("root", sign(testSigner(t, seedOtherCA), ssh.UserCert, "alice")),
		"plain-key":     seed("root", testSigner(t, seedUserKey).PublicKey()),
		"bad-login":     seed(`root" command="sh`, sign(ca, ssh.UserCert, "alice")),
		"garbage":       {"root", "ssh-ed25519-cert-v01@openssh.com", base64.StdEncoding.EncodeToString([]byte("\x00\x00\x00\x20ssh-ed25519-cert-v01@openssh.com garbage"))},
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// FuzzKeysLine: ParseOfferedCert and KeysLine never panic, refuse with
// a *Denied, and print nothing but one cert-authority line for the
// trusted CA, and that only when Check allows the certificate.
func FuzzKeysLine(f *testing.F) {
	for _, s := range fuzzKeysSeeds(f) {
		f.Add(s[0], s[1], s[2])
	}
	caches := []*Cache{policyCache(f, ModeOff), policyCache(f, ModeProxy)}
	f.Fuzz(func(t *testing.T, login, keyType, keyB64 string) {
		cert, perr := ParseOfferedCert(keyType, keyB64)
		if perr != nil {
			var d *Denied
			if cert != nil || !errors.As(perr, &d) {
				t.Fatalf("ParseOfferedCert: %v (%T), cert %v", perr, perr, cert)
			}
		} else if cert.Type() != keyType || !strings.HasSuffix(keyType, "-cert-v01@openssh.com") || len(keyB64) > MaxKeyBytes {
			t.Fatalf("ParseOfferedCert accepted a %q key as %q (%d bytes)", cert.Type(), keyType, len(keyB64))
		}
		for _, c := range caches {
			line, err := c.KeysLine(login, keyType, keyB64)
			if err != nil {
				var d *Denied
				if line != "" || !errors.As(err, &d) {
					t.Fatalf("mode %s: KeysLine = %q, %v (%T)", c.Mode, line, err, err)
				}
				continue
			}
			if !keysLineRE.MatchString(line) || strings.Count(line, "\n") != 1 {
				t.Fatalf("mode %s: KeysLine printed %q", c.Mode, line)
			}
			if want := wantKeysLine(t, login); line != want {
				t.Fatalf("mode %s: KeysLine printed %q, want %q", c.Mode, line, want)
			}
			if perr != nil {
				t.Fatalf("mode %s: KeysLine allowed a key ParseOfferedCert refuses: %v", c.Mode, perr)
			}
			if cert.CertType != ssh.UserCert || !bytes.Equal(cert.SignatureKey.Marshal(), c.TrustedCA.Marshal()) {
				t.Fatalf("mode %s: KeysLine allowed a type %d certificate signed by %s", c.Mode, cert.CertType, authorizedKey(cert.SignatureKey))
			}
			if err := c.Check(login, cert.KeyId, cert.Serial); err != nil {
				t.Fatalf("mode %s: KeysLine allowed what Check refuses: %v", c.Mode, err)
			}
		}
	})
}

// TestFuzzCorpus writes the committed seeds under testdata/fuzz with
// -update, and otherwise checks that they still say what their names
// say.
func TestFuzzCorpus(t *testing.T) {
	t.Parallel()
	parseCache := map[string]string{
		"valid":     validCacheFile(t),
		"valid-v1":  validCacheFileV1(t),
		"truncated": strings.TrimSuffix(validCacheFile(t), "end\n"),
		"garbage":   "\x00\xffgarbage\n\n",
	}
	accepted := map[string]bool{"valid": true, "valid-v1": true, "unordered": true}
	maps.Copy(parseCache, orderSeeds(t))
	lookups := lookupSeeds(t)
	keys := fuzzKeysSeeds(t)
	if *update {
		for name, data := range parseCache {
			writeSeed(t, "FuzzParseCache", name, fmt.Sprintf("[]byte(%s)", strconv.Quote(data)))
		}
		for name, s := range lookups {
			writeSeed(t, "FuzzLookup", name, fmt.Sprintf("[]byte(%s)\nstring(%s)", strconv.Quote(s.body), strconv.Quote(s.user)))
		}
		for name, s := range keys {
			writeSeed(t, "FuzzKeysLine", name, fmt.Sprintf("string(%s)\nstring(%s)\nstring(%s)", strconv.Quote(s[0]), strconv.Quote(s[1]), strconv.Quote(s[2])))
		}
		return
	}
	for name, want := range parseCache {
		v := readSeed(t, "FuzzParseCache", name)
		if len(v) != 1 || v[0] != want {
			t.Errorf("FuzzParseCache/%s is out of date (go test -update)", name)
			continue
		}
		if _, err := ParseCache([]byte(v[0])); (err == nil) != accepted[name] {
			t.Errorf("FuzzParseCache/%s: ParseCache error %v", name, err)
		}
	}
	for name, want := range lookups {
		v := readSeed(t, "FuzzLookup", name)
		if len(v) != 2 || v[0] != want.body || v[1] != want.user {
			t.Errorf("FuzzLookup/%s is out of date (go test -update)", name)
			continue
		}
		_, err := ParseCacheFor(seal([]byte(v[0])), v[1])
		_, fullErr := ParseCache(seal([]byte(v[0])))
		if (err == nil) != want.answered || (fullErr == nil) != want.valid {
			t.Errorf("FuzzLookup/%s: lookup error %v, full parse error %v; want answered %v, valid %v", name, err, fullErr, want.answered, want.valid)
		}
	}
	for name := range keys {
		v := readSeed(t, "FuzzKeysLine", name)
		if len(v) != 3 {
			t.Errorf("FuzzKeysLine/%s has %d values, want 3", name, len(v))
			continue
		}
		c := policyCache(t, ModeOff)
		if name == "session-cert" {
			c.Mode = ModeProxy
		}
		line, err := c.KeysLine(v[0], v[1], v[2])
		wantOK := name == "user-cert" || name == "session-cert"
		if (err == nil) != wantOK || (wantOK && line != wantKeysLine(t, v[0])) {
			t.Errorf("FuzzKeysLine/%s: KeysLine = %q, %v; want allowed %v", name, line, err, wantOK)
		}
	}
}

func writeSeed(t *testing.T, target, name, values string) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n"+values+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readSeed returns the values of a corpus file of strings and []bytes.
func readSeed(t *testing.T, target, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", target, name))
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if lines[0] != "go test fuzz v1" {
		t.Fatalf("%s/%s: first line %q", target, name, lines[0])
	}
	var vals []string
	for _, l := range lines[1:] {
		lit, ok := strings.CutPrefix(l, "string(")
		if !ok {
			lit, ok = strings.CutPrefix(l, "[]byte(")
		}
		s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
		if !ok || err != nil {
			t.Fatalf("%s/%s: value %q", target, name, l)
		}
		vals = append(vals, s)
	}
	return vals
}
