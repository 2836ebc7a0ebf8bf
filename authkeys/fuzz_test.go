package authkeys

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
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

// FuzzPrincipalsLine: the answer to "principals %u %i %s" (login, KeyId
// and serial as sshd passes them) is a *Denied with nothing printed, or
// the login alone on one line, and that only when Check allows the KeyId
// and serial.
func FuzzPrincipalsLine(f *testing.F) {
	for _, s := range [][3]string{
		{"root", "alice", "1"}, {"root", keyIDFor(ModeProxy, "alice"), "1"}, {"root", "bob", "1"}, {"root", "alice", "10"},
		{"root", "alice", "-1"}, {"root", "alice", "+1"}, {"root", "alice", "18446744073709551616"}, {"root\n", "alice", "1"},
		{"deploy", "user=alice proxy=p session=s extra=x", "1"}, {"root", "user=alice  proxy=p session=s", "1"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	caches := []*Cache{policyCache(f, ModeOff), policyCache(f, ModeProxy)}
	f.Fuzz(func(t *testing.T, login, keyID, serial string) {
		for _, c := range caches {
			line, err := c.PrincipalsLine(login, keyID, serial)
			if err != nil {
				var d *Denied
				if line != "" || !errors.As(err, &d) {
					t.Fatalf("mode %s: PrincipalsLine = %q, %v (%T)", c.Mode, line, err, err)
				}
				continue
			}
			if line != login+"\n" || !validLogin(login) {
				t.Fatalf("mode %s: PrincipalsLine printed %q for login %q", c.Mode, line, login)
			}
			s, err := strconv.ParseUint(serial, 10, 64)
			if err != nil {
				t.Fatalf("mode %s: allowed serial %q", c.Mode, serial)
			}
			if err := c.Check(login, keyID, s); err != nil {
				t.Fatalf("mode %s: allowed what Check refuses: %v", c.Mode, err)
			}
			user, err := UserFromKeyID(c.Mode, keyID)
			if err != nil || !slices.Contains(c.Users[user].Logins, login) || c.Users[user].Locked {
				t.Fatalf("mode %s: allowed %q as %q (user %q: %+v)", c.Mode, keyID, login, user, c.Users[user])
			}
		}
	})
}

// FuzzFromPolicy: the node turns any policy the CA answers into a cache
// that marshals to a file teleport-authkeys reads back as the same
// policy, or refuses it; a user the policy locks is never allowed in.
func FuzzFromPolicy(f *testing.F) {
	ca := authorizedKey(testSigner(f, seedTrustedCA).PublicKey())
	p := api.NodePolicy{
		Node: "web-1", Hash: "ab", Generated: time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC), RecordingMode: ModeProxy,
		UserCA: ca, SessionCA: ca, HostCA: ca,
		Users:   []api.NodeUser{{Name: "alice", Logins: []string{"root", "deploy"}}, {Name: "bob", Logins: []string{"root"}, Locked: true}},
		Revoked: []api.RevokedSerial{{Serial: "10", CA: "session", Expires: time.Date(2025, 3, 5, 5, 0, 0, 0, time.UTC)}},
	}
	b, err := json.Marshal(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(strings.Replace(string(b), `"users":[`, `"users":[{"name":"bob","logins":["root"]},`, 1)))
	f.Add([]byte(strings.Replace(string(b), `"locked":true}`, `"locked":true},{"name":"bob","logins":["root"]}`, 1)))
	f.Add([]byte(strings.Replace(string(b), `["root","deploy"]`, `["root","root"]`, 1)))
	f.Add([]byte(strings.Replace(string(b), `"10"`, `"0"`, 1)))
	f.Add([]byte(`{"recording_mode":"off","user_ca":"x"}`))
	confirmed := time.Date(2025, 3, 4, 6, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		var p api.NodePolicy
		if json.Unmarshal(data, &p) != nil {
			return
		}
		c, err := FromPolicy(p, confirmed)
		if err != nil {
			return
		}
		for _, u := range p.Users {
			if a, ok := c.Users[u.Name]; u.Locked && (!ok || !a.Locked) {
				t.Fatalf("user %q is locked in the policy, not in the cache (%+v)", u.Name, a)
			}
		}
		out, err := c.Marshal()
		if err != nil {
			return
		}
		back, err := ParseCache(out)
		if err != nil {
			t.Fatalf("a cache Marshal wrote does not parse: %v\n%s", err, out)
		}
		want := *c
		want.Revoked = nil
		for _, r := range c.Revoked {
			r.Expires = r.Expires.Truncate(time.Second)
			want.Revoked = append(want.Revoked, r)
		}
		if d := cacheDiff(back, &want); d != "" {
			t.Fatalf("the cache changed on its way through the file:\n%s\n%s", d, out)
		}
	})
}
