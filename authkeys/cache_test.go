package authkeys

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

var update = flag.Bool("update", false, "rewrite the golden files and fuzz seeds in testdata")

// Seeds of the deterministic test keys.
const (
	seedTrustedCA byte = 1 + iota
	seedOtherCA
	seedUserKey
)

// testSigner returns an ed25519 signer made from a fixed seed, so that
// golden files and fuzz seeds do not change from run to run.
func testSigner(t testing.TB, seed byte) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// authorizedKey is pub as an authorized_keys line without the newline.
func authorizedKey(pub ssh.PublicKey) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(pub)), "\n")
}

// exampleCache is the cache of testdata/cache.golden. Its times are not
// all in UTC, so that the round trip shows they come back equal.
func exampleCache(t testing.TB) *Cache {
	return &Cache{
		Node:      "web-1.prod.example.com",
		Confirmed: time.Date(2025, 3, 4, 5, 6, 7, 890000000, time.UTC),
		Generated: time.Date(2025, 3, 4, 6, 6, 6, 123456789, time.FixedZone("CET", 3600)),
		Hash:      "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Mode:      ModeProxy,
		TrustedCA: testSigner(t, seedTrustedCA).PublicKey(),
		Users: map[string]Access{
			"alice":       {Logins: []string{"root", "deploy"}},
			"bob":         {Logins: []string{"root"}, Locked: true},
			"carol.smith": {},
			"_svc-1":      {Logins: []string{"_svc", "www-data"}},
		},
		Revoked: []Revoked{
			{CA: "user", Serial: 10, Expires: time.Date(2025, 3, 5, 0, 0, 0, 0, time.UTC)},
			{CA: "session", Serial: 20, Expires: time.Date(2025, 3, 4, 7, 0, 0, 0, time.UTC)},
			{CA: "host", Serial: 18446744073709551615, Expires: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		},
	}
}

// validCacheFile is exampleCache marshalled (format v2).
func validCacheFile(t testing.TB) string {
	t.Helper()
	b, err := exampleCache(t).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// marshalV1 writes c in format v1, as teleport-node did before v2: the
// same lines after a different first line.
func marshalV1(t testing.TB, c *Cache) string {
	t.Helper()
	body, err := c.marshalBody()
	if err != nil {
		t.Fatal(err)
	}
	return Header + "\n" + string(body)
}

// validCacheFileV1 is exampleCache in format v1.
func validCacheFileV1(t testing.TB) string { return marshalV1(t, exampleCache(t)) }

// resealV2 turns a file of format v1 (valid or not) into one of format
// v2 with the same lines after the first, with a first line that
// matches them: what only a writer can make, not damage.
func resealV2(v1file string) string {
	_, body, _ := strings.Cut(v1file, "\n")
	return string(seal([]byte(body)))
}

// cacheDiff describes how got differs from want, or returns "" when they
// hold the same policy.
func cacheDiff(got, want *Cache) string {
	var d []string
	add := func(format string, args ...any) { d = append(d, fmt.Sprintf(format, args...)) }
	if got.Node != want.Node {
		add("node %q, want %q", got.Node, want.Node)
	}
	if !got.Confirmed.Equal(want.Confirmed) {
		add("confirmed %v, want %v", got.Confirmed, want.Confirmed)
	}
	if !got.Generated.Equal(want.Generated) {
		add("generated %v, want %v", got.Generated, want.Generated)
	}
	if got.Hash != want.Hash {
		add("hash %q, want %q", got.Hash, want.Hash)
	}
	if got.Mode != want.Mode {
		add("mode %q, want %q", got.Mode, want.Mode)
	}
	switch {
	case got.TrustedCA == nil || want.TrustedCA == nil:
		if got.TrustedCA != want.TrustedCA {
			add("trusted CA %v, want %v", got.TrustedCA, want.TrustedCA)
		}
	case !bytes.Equal(got.TrustedCA.Marshal(), want.TrustedCA.Marshal()):
		add("trusted CA %s, want %s", authorizedKey(got.TrustedCA), authorizedKey(want.TrustedCA))
	}
	if len(got.Users) != len(want.Users) {
		add("%d users, want %d", len(got.Users), len(want.Users))
	}
	for name, w := range want.Users {
		g, ok := got.Users[name]
		if !ok || g.Locked != w.Locked || !slices.Equal(g.Logins, w.Logins) {
			add("user %s: %+v (present %v), want %+v", name, g, ok, w)
		}
	}
	if len(got.Revoked) != len(want.Revoked) {
		add("%d revoked, want %d", len(got.Revoked), len(want.Revoked))
	} else {
		for i, w := range want.Revoked {
			if g := got.Revoked[i]; g.CA != w.CA || g.Serial != w.Serial || !g.Expires.Equal(w.Expires) {
				add("revoked[%d] %+v, want %+v", i, g, w)
			}
		}
	}
	return strings.Join(d, "\n")
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run go test -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestCacheGolden pins the cache file format: testdata/cache.golden is the
// documented example of a cache file. testdata/cache-v1.golden is the
// same cache as teleport-node wrote it in format v1; it is not
// rewritten by -update, and must still be read.
func TestCacheGolden(t *testing.T) {
	t.Parallel()
	golden(t, "cache.golden", validCacheFile(t))

	v1, err := os.ReadFile(filepath.Join("testdata", "cache-v1.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if got := validCacheFileV1(t); got != string(v1) {
		t.Errorf("marshalV1 is not what teleport-node wrote in format v1:\n%s\n--- want\n%s", got, v1)
	}
	for _, name := range []string{"cache.golden", "cache-v1.golden"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseCache(b)
		if err != nil {
			t.Fatalf("ParseCache(%s): %v", name, err)
		}
		if d := cacheDiff(c, exampleCache(t)); d != "" {
			t.Errorf("%s does not hold the example cache:\n%s", name, d)
		}
		for user, want := range exampleCache(t).Users {
			c, err := ParseCacheFor(b, user)
			if err != nil {
				t.Fatalf("ParseCacheFor(%s, %q): %v", name, user, err)
			}
			if got, ok := c.Users[user]; !ok || len(c.Users) != 1 || got.Locked != want.Locked || !slices.Equal(got.Logins, want.Logins) {
				t.Errorf("ParseCacheFor(%s, %q) users %+v, want %+v", name, user, c.Users, want)
			}
		}
	}
}

func TestCacheRoundTrip(t *testing.T) {
	t.Parallel()
	other := testSigner(t, seedOtherCA).PublicKey()
	rsaCA := func() ssh.PublicKey {
		// An RSA CA makes a long "ca" line.
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := ssh.NewPublicKey(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return pub
	}()
	tests := []struct {
		name string
		edit func(c *Cache)
	}{
		{"example", func(*Cache) {}},
		{"mode off", func(c *Cache) { c.Mode = ModeOff; c.TrustedCA = other }},
		{"rsa CA", func(c *Cache) { c.TrustedCA = rsaCA }},
		{"no users, no revocations", func(c *Cache) { c.Users = nil; c.Revoked = nil }},
		{"empty logins slice", func(c *Cache) { c.Users = map[string]Access{"dave": {Logins: []string{}}} }},
		{"locked without logins", func(c *Cache) { c.Users = map[string]Access{"dave": {Locked: true}} }},
		{"longest names", func(c *Cache) {
			c.Node = strings.Repeat("a", 253)
			c.Hash = strings.Repeat("f", 64)
			c.Users = map[string]Access{strings.Repeat("u", 64): {Logins: []string{strings.Repeat("l", 32)}}}
		}},
		{"one-character names", func(c *Cache) {
			c.Node = "n"
			c.Hash = "0"
			c.Users = map[string]Access{"_": {Logins: []string{"_"}}}
		}},
		{"zero times", func(c *Cache) { c.Confirmed, c.Generated = time.Time{}, time.Time{} }},
		{"year 0", func(c *Cache) { // FuzzParseCache/year-zero: ParseCache read it, Marshal refused it
			c.Confirmed = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
			c.Revoked = []Revoked{{CA: "user", Serial: 1, Expires: time.Date(0, 12, 31, 23, 59, 59, 0, time.UTC)}}
		}},
		{"many users", func(c *Cache) {
			for i := range 500 {
				c.Users[fmt.Sprintf("user%03d", i)] = Access{Logins: []string{"root", fmt.Sprintf("l%d", i)}, Locked: i%7 == 0}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := exampleCache(t)
			tt.edit(want)
			b, err := want.Marshal()
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			got, err := ParseCache(b)
			if err != nil {
				t.Fatalf("ParseCache: %v\n%s", err, b)
			}
			if d := cacheDiff(got, want); d != "" {
				t.Errorf("round trip differs:\n%s\nfile:\n%s", d, b)
			}
			b2, err := got.Marshal()
			if err != nil {
				t.Fatalf("Marshal of the parsed cache: %v", err)
			}
			if !bytes.Equal(b, b2) {
				t.Errorf("Marshal is not stable across a round trip:\n%s\n---\n%s", b, b2)
			}
		})
	}
}

// TestMarshalSortsUsers: the file does not depend on map order, so that
// teleport-node can compare caches byte by byte.
func TestMarshalSortsUsers(t *testing.T) {
	t.Parallel()
	file := validCacheFile(t)
	var users []string
	for line := range strings.Lines(file) {
		if kw, rest, _ := strings.Cut(line, " "); kw == "user" || kw == "locked" {
			name, _, _ := strings.Cut(rest, " ")
			users = append(users, name)
		}
	}
	if want := []string{"_svc-1", "alice", "bob", "carol.smith"}; !slices.Equal(users, want) {
		t.Errorf("users in file order %q, want %q", users, want)
	}
	for range 20 {
		if again := validCacheFile(t); again != file {
			t.Fatalf("Marshal output changed between calls:\n%s\n---\n%s", file, again)
		}
	}
}

// badCache is a cache file ParseCache must refuse, with a fragment of the
// error it must give.
type badCache struct {
	name, data, wantErr string
}

// replaceLine returns file with its first line that starts with prefix
// replaced by repl (which carries its own newline, if any).
func replaceLine(file, prefix, repl string) string {
	var b strings.Builder
	done := false
	for line := range strings.Lines(file) {
		if !done && strings.HasPrefix(line, prefix) {
			b.WriteString(repl)
			done = true
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// beforeEnd returns file with line (and a newline) added before "end".
func beforeEnd(file, line string) string {
	return replaceLine(file, "end\n", line+"\nend\n")
}

// badCaches is the table of TestParseCacheRefuses, built from a valid
// file of format v1 (a v2 file changed by hand fails its checksum
// first); FuzzParseCache is seeded from it, and TestParseCacheRefuses
// also gives each to the v2 parser with its first line made to match.
func badCaches(t testing.TB) []badCache {
	valid := validCacheFileV1(t)
	c := exampleCache(t)
	userLine := "user alice root,deploy\n"
	if !strings.Contains(valid, userLine) {
		t.Fatalf("the example cache has no line %q:\n%s", userLine, valid)
	}
	certLine := func() string {
		ca := testSigner(t, seedTrustedCA)
		cert := &ssh.Certificate{Key: ca.PublicKey(), CertType: ssh.UserCert, Serial: 1, KeyId: "ca",
			ValidBefore: ssh.CertTimeInfinity}
		if err := cert.SignCert(rand.Reader, ca); err != nil {
			t.Fatal(err)
		}
		return "ca " + authorizedKey(cert) + "\n"
	}()
	exp := " 2030-01-01T00:00:00Z"
	bad := []badCache{
		// Framing.
		{"empty", "", "truncated"},
		{"only header", Header + "\n", "truncated"},
		{"no header", strings.TrimPrefix(valid, Header+"\n"), "line 1"},
		{"header v2", replaceLine(valid, Header, "teleport-node policy v2\n"), "line 1"},
		{"header with trailing space", replaceLine(valid, Header, Header+" \n"), "line 1"},
		{"header twice", replaceLine(valid, "node ", Header+"\n"+"node "+c.Node+"\n"), "unknown keyword"},
		{"no end line", strings.TrimSuffix(valid, "end\n"), "truncated"},
		{"end with text", replaceLine(valid, "end\n", "end now\n"), "text after end"},
		{"line after end", valid + "user dave root\n", "text after the end line"},
		{"blank line after end", valid + "\n", "text after the end line"},
		{"second end", valid + "end\n", "text after the end line"},
		{"two files", valid + valid, "text after the end line"},
		{"blank line", beforeEnd(valid, ""), "unknown keyword"},
		{"unknown keyword", beforeEnd(valid, "group wheel 10"), "unknown keyword"},
		{"keyword in capitals", beforeEnd(valid, "User dave root"), "unknown keyword"},
		{"leading space", beforeEnd(valid, " user dave root"), "unknown keyword"},
		{"tab separator", beforeEnd(valid, "user\tdave root"), "unknown keyword"},
		{"comment", beforeEnd(valid, "# a comment"), "unknown keyword"},
		{"CR LF", strings.ReplaceAll(valid, "\n", "\r\n"), "line 1"},
		{"CR after end", replaceLine(valid, "end\n", "end\r\n"), "unknown keyword"},
		{"CR after login", beforeEnd(valid, "user dave root\r"), "not valid"},
		{"line too long", beforeEnd(valid, "user dave "+strings.Repeat("a", 70<<10)), "longer than"},

		// Header values.
		{"node bad", replaceLine(valid, "node ", "node Web_1\n"), "node name"},
		{"node starts with dash", replaceLine(valid, "node ", "node -web\n"), "node name"},
		{"node with space", replaceLine(valid, "node ", "node web 1\n"), "node name"},
		{"node empty", replaceLine(valid, "node ", "node \n"), "node name"},
		{"node keyword alone", replaceLine(valid, "node ", "node\n"), "node name"},
		{"confirmed not a time", replaceLine(valid, "confirmed ", "confirmed yesterday\n"), "parsing time"},
		{"confirmed date only", replaceLine(valid, "confirmed ", "confirmed 2025-03-04\n"), "parsing time"},
		{"generated not a time", replaceLine(valid, "generated ", "generated 1741064767\n"), "parsing time"},
		{"hash not hex", replaceLine(valid, "hash ", "hash xyz\n"), "not hex"},
		{"hash capitals", replaceLine(valid, "hash ", "hash ABCDEF\n"), "not hex"},
		{"hash empty", replaceLine(valid, "hash ", "hash \n"), "not hex"},
		{"hash too long", replaceLine(valid, "hash ", "hash "+strings.Repeat("a", 65)+"\n"), "not hex"},
		{"mode unknown", replaceLine(valid, "mode ", "mode recording\n"), "mode"},
		{"mode capitals", replaceLine(valid, "mode ", "mode Proxy\n"), "mode"},
		{"mode empty", replaceLine(valid, "mode ", "mode \n"), "mode"},
		{"ca empty", replaceLine(valid, "ca ", "ca \n"), "line 7"},
		{"ca garbage", replaceLine(valid, "ca ", "ca ssh-ed25519 !!!!\n"), "line 7"},
		{"ca is a certificate", replaceLine(valid, "ca ", certLine), "certificate"},

		// Users and logins: nothing that could inject into sshd output.
		{"user in capitals", beforeEnd(valid, "user Dave root"), "not \"user NAME"},
		{"user starts with digit", beforeEnd(valid, "user 1dave root"), "not \"user NAME"},
		{"user with comma", beforeEnd(valid, "user da,ve root"), "not \"user NAME"},
		{"user with quote", beforeEnd(valid, `user da"ve root`), "not \"user NAME"},
		{"user with percent", beforeEnd(valid, "user da%ve root"), "not \"user NAME"},
		{"user with equals", beforeEnd(valid, "user da=ve root"), "not \"user NAME"},
		{"user too long", beforeEnd(valid, "user "+strings.Repeat("d", 65)+" root"), "not \"user NAME"},
		{"user without logins", beforeEnd(valid, "user dave"), "not \"user NAME"},
		{"user with empty logins", beforeEnd(valid, "user dave "), "login \"\""},
		{"two spaces", beforeEnd(valid, "user dave  root"), "login \" root\""},
		{"trailing comma", beforeEnd(valid, "user dave root,"), "login \"\""},
		{"leading comma", beforeEnd(valid, "user dave ,root"), "login \"\""},
		{"login with space", beforeEnd(valid, "user dave root admin"), "not valid"},
		{"login with quote", beforeEnd(valid, `user dave ro"ot`), "not valid"},
		{"login with percent", beforeEnd(valid, "user dave %u"), "not valid"},
		{"login in capitals", beforeEnd(valid, "user dave Root"), "not valid"},
		{"login with dot", beforeEnd(valid, "user dave ro.ot"), "not valid"},
		{"login with CR", beforeEnd(valid, "user dave ro\rot"), "not valid"},
		{"login with NUL", beforeEnd(valid, "user dave ro\x00ot"), "not valid"},
		{"login too long", beforeEnd(valid, "user dave "+strings.Repeat("l", 33)), "not valid"},
		{"login is a dash and more", beforeEnd(valid, "user dave -,root"), "not valid"},
		{"login with newline", beforeEnd(valid, "user dave root\ncommand=\"sh\""), "unknown keyword"},
		{"user twice", beforeEnd(valid, strings.TrimSuffix(userLine, "\n")), "listed twice"},
		{"user and locked", beforeEnd(valid, "locked alice -"), "listed twice"},

		// Revocations.
		{"revoked serial 0", beforeEnd(valid, "revoked user 0"+exp), "positive decimal"},
		{"revoked serial 0 of session CA", beforeEnd(valid, "revoked session 0"+exp), "positive decimal"},
		{"revoked negative serial", beforeEnd(valid, "revoked user -1"+exp), "positive decimal"},
		{"revoked signed serial", beforeEnd(valid, "revoked user +5"+exp), "positive decimal"},
		{"revoked hex serial", beforeEnd(valid, "revoked user 0x14"+exp), "positive decimal"},
		{"revoked serial overflows", beforeEnd(valid, "revoked user 18446744073709551616"+exp), "positive decimal"},
		{"revoked serial empty", beforeEnd(valid, "revoked user "+exp), "positive decimal"},
		{"revoked unknown CA", beforeEnd(valid, "revoked bogus 5"+exp), "revoked line"},
		{"revoked CA in capitals", beforeEnd(valid, "revoked User 5"+exp), "revoked line"},
		{"revoked without expiry", beforeEnd(valid, "revoked user 5"), "revoked line"},
		{"revoked extra field", beforeEnd(valid, "revoked user 5"+exp+" x"), "revoked line"},
		{"revoked bad expiry", beforeEnd(valid, "revoked user 5 never"), "parsing time"},
	}
	for _, kw := range []string{"node", "confirmed", "generated", "hash", "mode", "ca"} {
		var line string
		for l := range strings.Lines(valid) {
			if strings.HasPrefix(l, kw+" ") {
				line = l
				break
			}
		}
		bad = append(bad,
			badCache{"second " + kw, beforeEnd(valid, strings.TrimSuffix(line, "\n")), fmt.Sprintf("second %q line", kw)},
			badCache{"no " + kw, replaceLine(valid, kw+" ", ""), fmt.Sprintf("no %q line", kw)},
		)
	}
	return bad
}

func TestParseCacheRefuses(t *testing.T) {
	t.Parallel()
	valid := validCacheFileV1(t)
	if _, err := ParseCache([]byte(valid)); err != nil {
		t.Fatalf("the valid file does not parse: %v", err)
	}
	for _, tt := range badCaches(t) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.data == valid {
				t.Fatal("the test case did not change the valid file")
			}
			c, err := ParseCache([]byte(tt.data))
			if err == nil {
				t.Fatalf("ParseCache accepted:\n%s", tt.data)
			}
			if c != nil {
				t.Errorf("ParseCache returned a cache with error %v", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
			// The same lines in format v2, under a first line that matches
			// them: still refused, whatever made them bad (cases that
			// change only the first line have nothing left to refuse).
			if v2 := resealV2(tt.data); v2 != resealV2(valid) {
				if c, err := ParseCache([]byte(v2)); err == nil || c != nil {
					t.Errorf("ParseCache accepted it in format v2 (err %v):\n%s", err, v2)
				}
			}
		})
	}
}

// TestParseCacheTruncated: a valid file cut at any byte is refused, in
// either format, for any user. The cut of a v1 file that loses only the
// final newline is TestParseCacheExactEnd's.
func TestParseCacheTruncated(t *testing.T) {
	t.Parallel()
	for _, valid := range []string{validCacheFile(t), validCacheFileV1(t)} {
		for n := range len(valid) - 1 {
			for _, user := range []string{"", "alice", "zed"} {
				if c, err := ParseCacheFor([]byte(valid[:n]), user); err == nil || c != nil {
					t.Errorf("ParseCacheFor(%q) accepted the first %d of %d bytes (err %v):\n%s", user, n, len(valid), err, valid[:n])
				}
			}
		}
	}
}

// TestParseCacheExactEnd: the file ends with exactly "end\n"; a file
// that lost its final newline or whose end line has a trailing space was
// not written by Marshal.
func TestParseCacheExactEnd(t *testing.T) {
	t.Parallel()
	for _, valid := range []string{validCacheFileV1(t), validCacheFile(t)} {
		for name, data := range map[string]string{
			"no final newline": strings.TrimSuffix(valid, "\n"),
			"end with a space": replaceLine(valid, "end\n", "end \n"),
		} {
			for _, d := range []string{data, resealV2(data)} {
				if _, err := ParseCache([]byte(d)); err == nil {
					t.Errorf("%s: ParseCache accepted %q", name, d)
				}
				if _, err := ParseCacheFor([]byte(d), "alice"); err == nil {
					t.Errorf("%s: ParseCacheFor accepted %q", name, d)
				}
			}
		}
	}
}

func TestParseCacheOversize(t *testing.T) {
	t.Parallel()
	// A well-formed file just over the limit: only its size is wrong.
	valid := validCacheFile(t)
	var b strings.Builder
	b.Grow(MaxCacheBytes + 100)
	b.WriteString(strings.TrimSuffix(valid, "end\n"))
	for i := uint64(1); b.Len() <= MaxCacheBytes; i++ {
		fmt.Fprintf(&b, "revoked user %d 2030-01-01T00:00:00Z\n", i)
	}
	b.WriteString("end\n")
	c, err := ParseCache([]byte(b.String()))
	if err == nil || c != nil {
		t.Fatalf("ParseCache accepted %d bytes", b.Len())
	}
	if !strings.Contains(err.Error(), "larger than") {
		t.Errorf("error %q does not say the file is too large", err)
	}
}

func TestMarshalRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		edit    func(c *Cache)
		wantErr string
	}{
		{"node empty", func(c *Cache) { c.Node = "" }, "node name"},
		{"node in capitals", func(c *Cache) { c.Node = "Web" }, "node name"},
		{"node with space", func(c *Cache) { c.Node = "web 1" }, "node name"},
		{"node with newline", func(c *Cache) { c.Node = "web\nuser x root" }, "node name"},
		{"node too long", func(c *Cache) { c.Node = strings.Repeat("a", 254) }, "node name"},
		{"mode empty", func(c *Cache) { c.Mode = "" }, "recording mode"},
		{"mode unknown", func(c *Cache) { c.Mode = "Proxy" }, "recording mode"},
		{"no CA", func(c *Cache) { c.TrustedCA = nil }, "no trusted CA"},
		{"hash empty", func(c *Cache) { c.Hash = "" }, "hash"},
		{"hash not hex", func(c *Cache) { c.Hash = "xyz" }, "hash"},
		{"hash in capitals", func(c *Cache) { c.Hash = "ABC" }, "hash"},
		{"hash with newline", func(c *Cache) { c.Hash = "ab\nuser x root" }, "hash"},
		{"revoked CA empty", func(c *Cache) { c.Revoked = []Revoked{{Serial: 1}} }, "has CA"},
		{"revoked CA unknown", func(c *Cache) { c.Revoked = []Revoked{{CA: "node", Serial: 1}} }, "has CA"},
	}
	for _, name := range []string{"", "Alice", "1alice", "al,ice", `al"ice`, "al ice", "al\nice", "al%ice", "al=ice", strings.Repeat("a", 65)} {
		tests = append(tests, struct {
			name    string
			edit    func(c *Cache)
			wantErr string
		}{fmt.Sprintf("user %q", name), func(c *Cache) { c.Users[name] = Access{Logins: []string{"root"}} }, "user name"})
	}
	for _, login := range []string{"", "-", "Root", "ro,ot", `ro"ot`, "ro ot", "ro\not", "%u", "ro.ot", "-root", strings.Repeat("l", 33)} {
		tests = append(tests, struct {
			name    string
			edit    func(c *Cache)
			wantErr string
		}{fmt.Sprintf("login %q", login), func(c *Cache) { c.Users["dave"] = Access{Logins: []string{"root", login}} }, "login"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := exampleCache(t)
			tt.edit(c)
			b, err := c.Marshal()
			if err == nil {
				t.Fatalf("Marshal accepted it:\n%s", b)
			}
			if b != nil {
				t.Errorf("Marshal returned output with error %v", err)
			}
			if !strings.HasPrefix(err.Error(), "authkeys: ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q is not \"authkeys: ...%s...\"", err, tt.wantErr)
			}
		})
	}
}

// TestMarshalOutputParses: whatever Marshal accepts, ParseCache accepts,
// so a bad record at the CA cannot produce a cache that denies everyone
// (or makes every login ask the CA) by failing to parse.
func TestMarshalOutputParses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		bug  string // non-empty: a known bug, the case is skipped
		edit func(t *testing.T, c *Cache)
	}{
		{name: "revoked serial 0",
			edit: func(_ *testing.T, c *Cache) { c.Revoked = append(c.Revoked, Revoked{CA: "user", Serial: 0}) }},
		{name: "trusted CA is a certificate",
			edit: func(t *testing.T, c *Cache) {
				ca := testSigner(t, seedTrustedCA)
				cert := &ssh.Certificate{Key: ca.PublicKey(), CertType: ssh.UserCert, Serial: 1, KeyId: "ca", ValidBefore: ssh.CertTimeInfinity}
				if err := cert.SignCert(rand.Reader, ca); err != nil {
					t.Fatal(err)
				}
				c.TrustedCA = cert
			}},
		{name: "time after year 9999",
			edit: func(_ *testing.T, c *Cache) { c.Confirmed = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{name: "revoked expiry in UTC before year 0",
			edit: func(_ *testing.T, c *Cache) {
				c.Revoked = append(c.Revoked, Revoked{CA: "user", Serial: 1, Expires: time.Date(0, 1, 1, 0, 0, 0, 0, time.FixedZone("", 3600))})
			}},
		{name: "logins with duplicates", edit: func(_ *testing.T, c *Cache) { c.Users["dave"] = Access{Logins: []string{"root", "root"}} }},
		{name: "user name with dots", edit: func(_ *testing.T, c *Cache) { c.Users["dave.x.y"] = Access{Logins: []string{"root"}} }},
		{name: "max serial of every CA", edit: func(_ *testing.T, c *Cache) {
			for _, ca := range []string{"user", "session", "host"} {
				c.Revoked = append(c.Revoked, Revoked{CA: ca, Serial: 1<<64 - 1})
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.bug != "" {
				t.Skip("BUG: " + tt.bug)
			}
			t.Parallel()
			c := exampleCache(t)
			tt.edit(t, c)
			b, err := c.Marshal()
			if err != nil {
				return // refusing is fine; producing an unparsable file is not
			}
			if _, err := ParseCache(b); err != nil {
				t.Errorf("Marshal wrote a file ParseCache refuses: %v\n%s", err, b)
			}
		})
	}
}

// TestNamePatterns: the names a cache accepts are exactly those of the
// documented patterns, checked through ParseCache over every short
// string of an alphabet that has each kind of character, and the
// lengths at the limits.
func TestNamePatterns(t *testing.T) {
	t.Parallel()
	patterns := []struct {
		what string
		re   *regexp.Regexp
		file func(valid, s string) string
	}{
		{"login", regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`), func(v, s string) string { return beforeEnd(v, "user dave root,"+s) }},
		{"user", regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,63}$`), func(v, s string) string { return beforeEnd(v, "user "+s+" root") }},
		{"node", regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`), func(v, s string) string { return replaceLine(v, "node ", "node "+s+"\n") }},
		{"hash", regexp.MustCompile(`^[0-9a-f]{1,64}$`), func(v, s string) string { return replaceLine(v, "hash ", "hash "+s+"\n") }},
	}
	alphabet := []string{"a", "f", "g", "z", "0", "9", "_", "-", ".", "A", ",", " ", "%", `"`, "=", "\x00", "\xff"}
	candidates := []string{""}
	level := []string{""}
	for range 3 {
		var next []string
		for _, c := range level {
			for _, a := range alphabet {
				next = append(next, c+a)
			}
		}
		candidates = append(candidates, next...)
		level = next
	}
	for _, n := range []int{31, 32, 33, 63, 64, 65, 251, 252, 253, 254} {
		for _, c := range []string{"a", "0", "_", "-", "."} {
			candidates = append(candidates, c+strings.Repeat("a", n-2)+"0", strings.Repeat(c, n))
		}
	}
	// Format v1, whose lines may come in any order; the v2 parsers use
	// the same checks.
	valid := validCacheFileV1(t)
	for _, p := range patterns {
		for _, s := range candidates {
			if p.what == "login" && strings.Contains(s, ",") {
				continue // a list of logins, not one
			}
			_, err := ParseCache([]byte(p.file(valid, s)))
			if want := p.re.MatchString(s); (err == nil) != want {
				t.Errorf("%s %q: ParseCache error %v, want accepted %v", p.what, s, err, want)
			}
		}
	}
}

// TestParseCacheFor: parsing for one user keeps that user's access and
// everything but the other users, and refuses what ParseCache refuses.
func TestParseCacheFor(t *testing.T) {
	t.Parallel()
	valid := validCacheFile(t)
	full := exampleCache(t)
	for _, user := range []string{"", "alice", "bob", "carol.smith", "_svc-1", "dave", "al"} {
		c, err := ParseCacheFor([]byte(valid), user)
		if err != nil {
			t.Fatalf("ParseCacheFor(%q): %v", user, err)
		}
		want := exampleCache(t)
		if user != "" {
			want.Users = map[string]Access{}
			if a, ok := full.Users[user]; ok {
				want.Users[user] = a
			}
		}
		if d := cacheDiff(c, want); d != "" {
			t.Errorf("ParseCacheFor(%q):\n%s", user, d)
		}
	}

	for _, user := range []string{"alice", "bob", "zed"} {
		for _, tt := range badCaches(t) {
			t.Run(user+"/"+tt.name, func(t *testing.T) {
				if user != "alice" && (tt.name == "user twice" || tt.name == "user and locked") {
				}
				t.Parallel()
				if c, err := ParseCacheFor([]byte(tt.data), user); err == nil || c != nil {
					t.Errorf("ParseCacheFor(%q) accepted it (err %v):\n%.2000s", user, err, tt.data)
				}
			})
		}
	}
}
