// Package testbin helps integration tests run the suite's real programs as
// processes: it builds main packages once per test process, finds free
// loopback ports, and starts a teleport-ca on a fresh data dir with its
// HTTPS API on 127.0.0.1 and its admin socket in a temporary directory,
// a real ssh-agent (StartAgent) and a real sshd on a loopback port
// (StartSSHD).
//
// Nothing here is mocked: the tests that use it exercise the same binaries,
// sockets, file modes and signals an operator's systemd unit does, so they
// check the trust model of DESIGN.md section 2 (keys 0600 in a 0700 data
// dir, a root-only admin socket, a pinned TLS root) from the outside.
//
// Binaries go into one directory per test process, made with
// [os.MkdirTemp] and opened to mode 0755 so that tests can run them as
// another user (nobody) with setpriv. Call [RemoveAll] from TestMain after
// m.Run to delete it.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
)

// Import paths of the suite's commands.
const (
	TeleportCA = "github.com/opensshca/suite/cmd/teleport-ca"
	Caadm      = "github.com/opensshca/suite/cmd/caadm"
	Node       = "github.com/opensshca/suite/cmd/teleport-node"
	Authkeys   = "github.com/opensshca/suite/cmd/teleport-authkeys"
	Proxy      = "github.com/opensshca/suite/cmd/teleport-proxy"
)

// build is one main package, compiled at most once.
type build struct {
	once sync.Once
	path string
	err  error
}

var (
	mu     sync.Mutex
	dir    string // where binaries go; "" until the first build
	builds = map[string]*build{}
)

// Build compiles each main package in pkgs (import paths such as
// [TeleportCA]) with "go build", at most once per test process however many
// tests ask and from however many goroutines, and returns the binaries'
// paths keyed by the last element of the import path ("teleport-ca"). It
// fails the test if a package does not build.
func Build(t testing.TB, pkgs ...string) map[string]string {
	t.Helper()
	out := make(map[string]string, len(pkgs))
	for _, pkg := range pkgs {
		b := entry(pkg)
		b.once.Do(func() { b.path, b.err = compile(pkg) })
		if b.err != nil {
			t.Fatalf("testbin: %v", b.err)
		}
		out[path.Base(pkg)] = b.path
	}
	return out
}

func entry(pkg string) *build {
	mu.Lock()
	defer mu.Unlock()
	b, ok := builds[pkg]
	if !ok {
		b = &build{}
		builds[pkg] = b
	}
	return b
}

// binDir returns the directory binaries go into, making it on first use.
func binDir() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		return dir, nil
	}
	d, err := os.MkdirTemp("", "testbin-")
	if err != nil {
		return "", err
	}
	// MkdirTemp makes the directory 0700; other users must be able to
	// reach the binaries.
	if err := os.Chmod(d, 0o755); err != nil {
		os.RemoveAll(d)
		return "", err
	}
	dir = d
	return dir, nil
}

func compile(pkg string) (string, error) {
	d, err := binDir()
	if err != nil {
		return "", fmt.Errorf("making the binary directory: %w", err)
	}
	bin := filepath.Join(d, path.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		return "", err
	}
	return bin, nil
}

// Dir returns the directory holding the built binaries, or "" if nothing
// has been built yet.
func Dir() string {
	mu.Lock()
	defer mu.Unlock()
	return dir
}

// RemoveAll deletes the built binaries. Call it from TestMain after m.Run,
// when no test can call Build any more.
func RemoveAll() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
}
