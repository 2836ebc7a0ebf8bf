package node

import (
	"bytes"
	"crypto/ed25519"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/authkeys"
	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/nodedir"
)

// testCAKey is an authorized_keys line of an ed25519 key made from seed.
func testCAKey(t *testing.T, seed byte) string {
	t.Helper()
	pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)).Public())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

// TestApplyCache: apply writes the policy cache in format v2, with the
// users in increasing byte order of their names whatever order the CA
// sent them in (teleport-authkeys finds a user by binary search), and a
// first line that matches the rest; and it replaces the cache with one
// rename: a reader that opened the previous cache reads all of it, and
// the path gives all of the new one.
func TestApplyCache(t *testing.T) {
	t.Parallel()
	dir := nodedir.Dir(t.TempDir())
	if err := os.Mkdir(dir.Path(nodedir.CacheDir), 0o750); err != nil {
		t.Fatal(err)
	}
	a := &applier{dir: dir, group: -1, log: slog.New(slog.DiscardHandler)}
	t0 := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
	p := api.NodePolicy{
		Node: "web-1", Hash: "ab", Generated: t0, RecordingMode: "proxy",
		UserCA: testCAKey(t, 1), SessionCA: testCAKey(t, 2), HostCA: testCAKey(t, 3),
		// Out of order, with names that sort differently as bytes and
		// as words, and one that is a prefix of another.
		Users: []api.NodeUser{
			{Name: "zoe", Logins: []string{"root"}},
			{Name: "alice.b", Logins: []string{"deploy"}},
			{Name: "alice", Logins: []string{"root", "deploy"}},
			{Name: "_svc", Logins: []string{"www-data"}},
			{Name: "alice-b", Logins: []string{"root"}, Locked: true},
			{Name: "bob"},
		},
		Revoked: []api.RevokedSerial{{Serial: "7", CA: "session", Expires: t0.Add(time.Hour)}},
	}
	if err := a.apply(p, t0); err != nil {
		t.Fatalf("apply: %v", err)
	}
	first := readFile(t, dir.Path(nodedir.Cache))
	if !bytes.HasPrefix(first, []byte(authkeys.HeaderV2+" ")) {
		t.Errorf("the cache is not of format v2:\n%s", first)
	}
	if _, err := authkeys.ParseCache(first); err != nil {
		t.Errorf("ParseCache refuses the cache apply wrote: %v\n%s", err, first)
	}
	var names []string
	for line := range strings.Lines(string(first)) {
		if kw, rest, _ := strings.Cut(line, " "); kw == "user" || kw == "locked" {
			name, _, _ := strings.Cut(rest, " ")
			names = append(names, name)
		}
	}
	if want := []string{"_svc", "alice", "alice-b", "alice.b", "bob", "zoe"}; !slices.Equal(names, want) {
		t.Errorf("users in the cache in order %q, want %q", names, want)
	}
	c, err := authkeys.ParseCacheFor(first, "alice")
	if err != nil {
		t.Fatalf("the cache apply wrote does not parse: %v\n%s", err, first)
	}
	if got := c.Users["alice"]; len(c.Users) != 1 || !slices.Equal(got.Logins, []string{"root", "deploy"}) || !c.Confirmed.Equal(t0) {
		t.Errorf("ParseCacheFor(alice): users %+v, confirmed %v", c.Users, c.Confirmed)
	}
	if fi, err := os.Stat(dir.Path(nodedir.Cache)); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("cache mode: %v, %v; want 0640", fi.Mode(), err)
	}

	// A reader holds the first generation open while the next is written.
	f, err := os.Open(dir.Path(nodedir.Cache))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p.Users = p.Users[:2]
	if err := a.apply(p, t0.Add(time.Minute)); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	held, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(held, first) {
		t.Errorf("the open cache changed under its reader:\n%s\n--- was\n%s", held, first)
	}
	second := readFile(t, dir.Path(nodedir.Cache))
	c, err = authkeys.ParseCache(second)
	if err != nil {
		t.Fatalf("the second cache does not parse: %v\n%s", err, second)
	}
	if len(c.Users) != 2 || !c.Confirmed.Equal(t0.Add(time.Minute)) {
		t.Errorf("second cache: users %+v, confirmed %v", c.Users, c.Confirmed)
	}
	if ents, err := os.ReadDir(dir.Path(nodedir.CacheDir)); err != nil || len(ents) != 1 {
		t.Errorf("cache directory holds %v (%v), want the cache alone", ents, err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// In mode proxy the proxies' session signers are trusted beside the
// session CA (TrustedUserCAKeys and the cache); in mode off no signer
// is; a signer that is not one plain key is refused before anything is
// written.
func TestApplySessionSigners(t *testing.T) {
	t.Parallel()
	dir := nodedir.Dir(t.TempDir())
	if err := os.Mkdir(dir.Path(nodedir.CacheDir), 0o750); err != nil {
		t.Fatal(err)
	}
	a := &applier{dir: dir, group: -1, log: slog.New(slog.DiscardHandler)}
	t0 := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
	p := api.NodePolicy{
		Node: "web-1", Hash: "ab", Generated: t0, RecordingMode: "proxy",
		UserCA: testCAKey(t, 1), SessionCA: testCAKey(t, 2), HostCA: testCAKey(t, 3),
		Proxies: []api.ProxyInfo{
			{Name: "p1", TunnelAddr: "p1:3024", SessionSigner: testCAKey(t, 4)},
			{Name: "p2", TunnelAddr: "p2:3024"},
			{Name: "p3", TunnelAddr: "p3:3024", SessionSigner: testCAKey(t, 5)},
		},
		Users: []api.NodeUser{{Name: "alice", Logins: []string{"root"}}},
	}
	if err := a.apply(p, t0); err != nil {
		t.Fatalf("apply: %v", err)
	}
	trusted := string(readFile(t, dir.Path(nodedir.TrustedCA)))
	if want := p.SessionCA + "\n" + testCAKey(t, 4) + "\n" + testCAKey(t, 5) + "\n"; trusted != want {
		t.Errorf("TrustedUserCAKeys file =\n%s\nwant\n%s", trusted, want)
	}
	c, err := authkeys.ParseCache(readFile(t, dir.Path(nodedir.Cache)))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Signers) != 2 {
		t.Errorf("cache signers %v, want 2", c.Signers)
	}

	bad := p
	bad.Proxies = []api.ProxyInfo{{Name: "p1", SessionSigner: testCAKey(t, 4) + "\n" + testCAKey(t, 6)}}
	if err := a.apply(bad, t0.Add(time.Minute)); err == nil {
		t.Fatal("apply accepted a session signer of two lines")
	}
	if got := string(readFile(t, dir.Path(nodedir.TrustedCA))); got != trusted {
		t.Fatalf("a refused policy changed the trusted keys:\n%s", got)
	}

	off := p
	off.RecordingMode = "off"
	if err := a.apply(off, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := string(readFile(t, dir.Path(nodedir.TrustedCA))); got != p.UserCA+"\n" {
		t.Errorf("mode off: TrustedUserCAKeys file =\n%s\nwant the user CA alone", got)
	}
}
