package sshproxy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSessionSignerFile(t *testing.T) {
	dir := t.TempDir()
	s1, err := loadOrCreateSessionSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fileSessionSigner)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("session signer file: %v %v, want mode 0600", fi.Mode(), err)
	}
	s2, err := loadOrCreateSessionSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	if authorizedKey(s1.PublicKey()) != authorizedKey(s2.PublicKey()) {
		t.Fatal("a restart made a new session signer; nodes trust the registered one")
	}
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateSessionSigner(dir); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("a damaged session signer: %v; want an error, not a new key", err)
	}
}

// The proxy signs for itself only on a policy the CA confirmed within
// MaxPolicyAge; a restart keeps the confirmation time.
func TestLocalSigningNeedsAFreshPolicy(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	p := &Proxy{cfg: Config{DataDir: dir, MaxPolicyAge: time.Hour, Clock: func() time.Time { return now }}}
	for _, confirmed := range []int64{0, now.Add(-61 * time.Minute).Unix()} {
		p.polContact.Store(confirmed)
		_, err := p.localSessionSigner(nil, nodeInfo{}, "alice", "root", "s1", nil)
		var se *staleError
		if !errors.As(err, &se) || !strings.Contains(se.msg, "the CA is unreachable") {
			t.Fatalf("confirmed at %d: %v; want a staleError", confirmed, err)
		}
	}
	p.polContact.Store(0)
	p.confirmPolicy()
	if got := loadConfirmed(dir); got != now.Unix() {
		t.Fatalf("loadConfirmed after confirmPolicy = %d, want %d", got, now.Unix())
	}
	if err := os.WriteFile(filepath.Join(dir, filePolicyConfirmed), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := loadConfirmed(dir); got != 0 {
		t.Fatalf("a damaged confirmation file reads as %d, want 0 (unknown age)", got)
	}
}
