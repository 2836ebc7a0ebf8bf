package keyhelper

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseServer(t *testing.T) {
	tests := []struct {
		in      string
		want    Server
		wantErr bool
	}{
		{in: "https://ca.example.com:3080", want: Server{"ca.example.com", "3080"}},
		{in: "https://CA.Example.com:443/", want: Server{"ca.example.com", "443"}},
		{in: "https://ca.example.com", want: Server{"ca.example.com", "3080"}},
		{in: "ca.example.com:4000", want: Server{"ca.example.com", "4000"}},
		{in: "127.0.0.1", want: Server{"127.0.0.1", "3080"}},
		{in: "https://[::1]:3080", want: Server{"::1", "3080"}},
		{in: "", wantErr: true},
		{in: "http://ca.example.com:3080", wantErr: true},
		{in: "https://ca.example.com:3080/v1", wantErr: true},
		{in: "https://ca.example.com:3080?x=1", wantErr: true},
		{in: "https://alice@ca.example.com", wantErr: true},
		{in: "https://ca.example.com:0", wantErr: true},
		{in: "https://ca.example.com:99999", wantErr: true},
		{in: "https://ca_x.example.com", wantErr: true},
		{in: "https://[fe80::1%25eth0]:3080", wantErr: true},
		{in: "https://:3080", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseServer(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseServer(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	if d := (Server{"::1", "3080"}).dirName(); d != "--1_3080" {
		t.Errorf("dirName for ::1 = %q", d)
	}
}

// A state directory others can reach, or that another uid owns, is
// refused with a message that says how to fix it; a new one is made 0700
// whatever the umask.
func TestOpenHome(t *testing.T) {
	t.Run("creates 0700", func(t *testing.T) {
		old := syscall.Umask(0o022)
		defer syscall.Umask(old)
		dir := filepath.Join(t.TempDir(), "a", ".teleport")
		if _, err := OpenHome(dir, true); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("new state directory: %v, %v", fi.Mode(), err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		if _, err := OpenHome(filepath.Join(t.TempDir(), "none"), false); !errors.Is(err, ErrNotLoggedIn) {
			t.Errorf("OpenHome of a missing directory = %v, want ErrNotLoggedIn", err)
		}
	})
	for _, mode := range []os.FileMode{0o755, 0o750, 0o701, 0o707} {
		t.Run(fmt.Sprintf("mode %04o", mode), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), ".teleport")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			_, err := OpenHome(dir, true)
			var ue *UnsafeError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "chmod 700 "+dir) {
				t.Errorf("OpenHome = %v, want an *UnsafeError saying chmod 700", err)
			}
			if fi, _ := os.Stat(dir); fi.Mode().Perm() != mode {
				t.Errorf("OpenHome changed the mode to %v", fi.Mode().Perm())
			}
		})
	}
	t.Run("not a directory", func(t *testing.T) {
		t.Parallel()
		f := filepath.Join(t.TempDir(), ".teleport")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		var ue *UnsafeError
		if _, err := OpenHome(f, true); !errors.As(err, &ue) {
			t.Errorf("OpenHome of a file = %v", err)
		}
	})
	t.Run("other owner", func(t *testing.T) {
		t.Parallel()
		if os.Geteuid() != 0 {
			t.Skip("changing a directory's owner needs root")
		}
		dir := filepath.Join(t.TempDir(), ".teleport")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err := OpenHome(dir, true)
		var ue *UnsafeError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "owned by uid 65534") {
			t.Errorf("OpenHome = %v, want an *UnsafeError about the owner", err)
		}
	})
}

func TestDefaultHome(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	if got, err := DefaultHome("", env(map[string]string{"HOME": "/home/alice"})); err != nil || got != "/home/alice/.teleport" {
		t.Errorf("DefaultHome = %q, %v", got, err)
	}
	if got, err := DefaultHome("/srv/x", env(nil)); err != nil || got != "/srv/x" {
		t.Errorf("DefaultHome(/srv/x) = %q, %v", got, err)
	}
	if _, err := DefaultHome("", env(nil)); err == nil {
		t.Error("DefaultHome without HOME succeeded")
	}
}

func testProfile(t *testing.T) (*Home, Server, *Profile) {
	t.Helper()
	h, err := OpenHome(filepath.Join(t.TempDir(), ".teleport"), true)
	if err != nil {
		t.Fatal(err)
	}
	s := Server{Host: "ca.example.com", Port: "3080"}
	p, err := h.newProfile(s)
	if err != nil {
		t.Fatal(err)
	}
	p.User, p.Pin, p.ProxyAddr = "alice", "sha256:"+strings.Repeat("ab", 32), "proxy.example.com:3023"
	p.Hosts = []string{"*.prod.example.com"}
	p.Session, p.SessionExpires = "tok-secret-value", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	p.KeyFile, p.CertFile = filepath.Join(p.dir, keyFile), filepath.Join(p.dir, certFile)
	return h, s, p
}

// A saved profile loads back equal, from a private file in a private
// directory.
func TestProfileRoundTrip(t *testing.T) {
	t.Parallel()
	h, s, p := testProfile(t)
	if err := p.Save(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(p.dir, profileFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("profile.json: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if fi, err := os.Stat(p.dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cluster directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
	got, err := h.LoadProfile(s)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Errorf("loaded %+v\nsaved  %+v", got, p)
	}
	if got.Session != "tok-secret-value" {
		t.Errorf("session did not survive the round trip")
	}
	list, err := h.Servers()
	if err != nil || len(list) != 1 || list[0] != s {
		t.Errorf("Servers = %v, %v", list, err)
	}
	if _, err := h.LoadProfile(Server{Host: "other.example.com", Port: "3080"}); !errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("LoadProfile of another cluster = %v, want ErrNotLoggedIn", err)
	}
}

func TestProfileRefused(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, p *Profile)
		wantErr string
	}{
		{"readable profile", func(t *testing.T, p *Profile) { chmod(t, filepath.Join(p.dir, profileFile), 0o644) }, "chmod 600"},
		{"open directory", func(t *testing.T, p *Profile) { chmod(t, p.dir, 0o755) }, "chmod 700"},
		{"damaged", func(t *testing.T, p *Profile) { write(t, filepath.Join(p.dir, profileFile), "{") }, "damaged"},
		{"newer version", func(t *testing.T, p *Profile) {
			write(t, filepath.Join(p.dir, profileFile), `{"version": 2, "server": "https://ca.example.com:3080"}`)
		}, "version 2"},
		{"another server's", func(t *testing.T, p *Profile) {
			write(t, filepath.Join(p.dir, profileFile), `{"version": 1, "server": "https://evil.example.com:3080"}`)
		}, "evil.example.com"},
		{"symlink", func(t *testing.T, p *Profile) {
			f := filepath.Join(p.dir, profileFile)
			other := filepath.Join(t.TempDir(), "p.json")
			if err := os.Rename(f, other); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(other, f); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, s, p := testProfile(t)
			if err := p.Save(); err != nil {
				t.Fatal(err)
			}
			tt.damage(t, p)
			if _, err := h.LoadProfile(s); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("LoadProfile = %v, want an error with %q", err, tt.wantErr)
			}
			// Still listed, so that status and logout report it.
			if list, err := h.Servers(); err != nil || len(list) != 1 || list[0] != s {
				t.Errorf("Servers = %v, %v; want the damaged cluster listed", list, err)
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The session token never shows through fmt or log/slog.
func TestSecretHidden(t *testing.T) {
	_, _, p := testProfile(t)
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "profile", p, "session", p.Session)
	for _, s := range []string{fmt.Sprint(p.Session), fmt.Sprintf("%v %+v %#v %s", p, p, p, p.Session), logged.String()} {
		if strings.Contains(s, "tok-secret-value") {
			t.Errorf("the session token shows: %s", s)
		}
	}
}
