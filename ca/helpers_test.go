package ca

import (
	"context"
	"crypto/ed25519"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// fakeClock is an injected clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// newFakeClock starts at the real time, aligned 10 s into a TOTP step so
// that Advance(30*time.Second) crosses exactly one step. It must not start
// at a fixed date: tests that serve real TLS issue certificates from this
// clock, and real clients check them against the real time.
func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Now().UTC().Truncate(30 * time.Second).Add(10 * time.Second)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// cheapArgon2 keeps tests fast; production parameters are tested in
// password_test.go.
var cheapArgon2 = Argon2Params{Time: 1, MemoryKiB: 1024, Threads: 1}

func newTestAuthority(t testing.TB, mod func(*Config)) (*Authority, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	cfg := Config{DataDir: filepath.Join(t.TempDir(), "ca"), Clock: clk.Now, Argon2: cheapArgon2, PublicURL: "https://ca.test:3080"}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a, clk
}

// addUser creates an active user and returns its TOTP secret.
func addUser(t testing.TB, a *Authority, name string, logins, roles []string) string {
	t.Helper()
	resp, err := a.AddUser(context.Background(), api.AddUserRequest{Name: name, Logins: logins, Roles: roles, Password: "correct horse battery"}, "test")
	if err != nil {
		t.Fatalf("AddUser(%s): %v", name, err)
	}
	return secretOf(t, resp.OTPAuthURI)
}

// secretOf extracts the TOTP secret from an otpauth URI.
func secretOf(t testing.TB, uri string) string {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil || u.Query().Get("secret") == "" {
		t.Fatalf("otpauth URI %q: %v", uri, err)
	}
	return u.Query().Get("secret")
}

// oathtool computes a TOTP code with the independent implementation from
// oath-toolkit, at the given time.
func oathtool(t testing.TB, secret string, at time.Time) string {
	t.Helper()
	path, err := exec.LookPath("oathtool")
	if err != nil {
		t.Skip("oathtool not installed (apt-get install oathtool); .ci/run installs it")
	}
	out, err := exec.Command(path, "--totp", "-b", "--now", at.UTC().Format("2006-01-02 15:04:05 UTC"), secret).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func newPub(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func authorizedKey(p ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p)))
}

// keygenL runs the real ssh-keygen -L on the certificate and returns its
// output: an independent reader of what the CA issued.
func keygenL(t testing.TB, c *ssh.Certificate) string {
	t.Helper()
	path, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed; .ci/run installs openssh-client")
	}
	f := filepath.Join(t.TempDir(), "cert.pub")
	if err := os.WriteFile(f, ssh.MarshalAuthorizedKey(c), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(path, "-L", "-f", f).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
	}
	return string(out)
}

// keygenFields parses ssh-keygen -L output into field -> lines.
func keygenFields(out string) map[string][]string {
	m := map[string][]string{}
	var cur string
	for _, line := range strings.Split(out, "\n")[1:] {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			continue
		}
		if strings.HasPrefix(line, "                ") && cur != "" {
			m[cur] = append(m[cur], trimmed)
			continue
		}
		k, v, _ := strings.Cut(trimmed, ":")
		cur = k
		if v = strings.TrimSpace(v); v != "" {
			m[cur] = append(m[cur], v)
		}
	}
	return m
}

var fixedNow = time.Date(2026, 11, 21, 7, 0, 0, 0, time.UTC)
