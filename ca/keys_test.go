package ca

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDataDirChecks(t *testing.T) {
	// One real data dir, copied for each case.
	a, _ := newTestAuthority(t, nil)
	src := a.cfg.DataDir
	a.Close()
	pin := a.Pin()

	tests := []struct {
		name    string
		damage  func(dir string)
		wantErr string // "" = opens
	}{
		{"reopen", func(string) {}, ""},
		{"dir mode", func(d string) { os.Chmod(d, 0o750) }, "chmod 700"},
		{"key mode", func(d string) { os.Chmod(filepath.Join(d, fileHostCA), 0o640) }, "host_ca has mode 0640"},
		{"damaged ssh key", func(d string) { os.WriteFile(filepath.Join(d, fileSessionCA), []byte("garbage"), 0o600) }, "session_ca is damaged"},
		{"damaged tls key", func(d string) { os.WriteFile(filepath.Join(d, fileTLSRootKey), []byte("garbage"), 0o600) }, "tls_root.key is damaged"},
		{"mismatched root", func(d string) {
			other := t.TempDir()
			if err := createTLSRoot(other, rand.Reader); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(other, fileTLSRootCert))
			os.WriteFile(filepath.Join(d, fileTLSRootCert), b, 0o600)
		}, "does not belong to"},
		{"incomplete", func(d string) { os.Remove(filepath.Join(d, fileUserCA)) }, "incomplete"},
		{"keys lost, store kept", func(d string) {
			for _, n := range []string{fileUserCA, fileHostCA, fileSessionCA, fileTLSRootKey, fileTLSRootCert} {
				os.Remove(filepath.Join(d, n))
			}
		}, "already belongs to a CA"},
		{"key from another cluster", func(d string) {
			other := filepath.Join(t.TempDir(), "other")
			b, err := New(Config{DataDir: other, Argon2: cheapArgon2})
			if err != nil {
				t.Fatal(err)
			}
			b.Close()
			k, _ := os.ReadFile(filepath.Join(other, fileHostCA))
			os.WriteFile(filepath.Join(d, fileHostCA), k, 0o600)
		}, "mixes two clusters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			copyDir(t, src, dir)
			tt.damage(dir)
			b, err := New(Config{DataDir: dir, Argon2: cheapArgon2})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("reopen: %v", err)
				}
				defer b.Close()
				if b.Created || b.Pin() != pin {
					t.Fatalf("reopen made new keys (created=%v, pin %s, want %s)", b.Created, b.Pin(), pin)
				}
				return
			}
			if err == nil {
				b.Close()
				t.Fatalf("opened; want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestUnknownKeyTypeLeavesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	_, err := New(Config{DataDir: dir, KeyType: "dsa"})
	if err == nil || !strings.Contains(err.Error(), `unknown CA key type "dsa"`) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused start left %s behind", dir)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := e.Info()
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}
