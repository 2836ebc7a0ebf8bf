package testbin

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveAll()
	os.Exit(code)
}

// Concurrent Builds of one package compile it once and agree on the path;
// the binary and its directory are reachable by other users.
func TestBuildOnce(t *testing.T) {
	paths := make([]string, 4)
	t.Run("group", func(t *testing.T) {
		for i := range paths {
			t.Run("", func(t *testing.T) {
				t.Parallel()
				paths[i] = Build(t, TeleportCA)["teleport-ca"]
			})
		}
	})
	for _, p := range paths[1:] {
		if p != paths[0] {
			t.Fatalf("Build returned %q and %q", paths[0], p)
		}
	}
	if filepath.Base(paths[0]) != "teleport-ca" || filepath.Dir(paths[0]) != Dir() {
		t.Errorf("path %q, want teleport-ca in %q", paths[0], Dir())
	}
	for _, p := range []string{Dir(), paths[0]} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v, want 0755", p, fi.Mode().Perm())
		}
	}
}

func TestFreePort(t *testing.T) {
	addr := FreePort(t)
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Fatalf("FreePort = %q", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on the free port: %v", err)
	}
	ln.Close()
}

// StartCA gives a running CA on both its sockets, and Stop ends it with
// exit code 0.
func TestStartCA(t *testing.T) {
	c := StartCA(t)
	if !strings.HasPrefix(c.Pin, "sha256:") {
		t.Errorf("Pin = %q", c.Pin)
	}
	ctx := context.Background()
	info, err := c.Admin().AdminCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Pin != c.Pin {
		t.Errorf("admin pin %q, printed pin %q", info.Pin, c.Pin)
	}
	if _, err := c.HTTPS().Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if code := c.Stop(); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, c.Stderr)
	}
	if code := c.Stop(); code != 0 {
		t.Errorf("second Stop = %d", code)
	}
}
