package testbin

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/client"
)

// ReadyTimeout bounds how long Start waits for the admin socket to answer.
const ReadyTimeout = 10 * time.Second

// stopTimeout bounds how long Stop waits after SIGTERM before it kills.
const stopTimeout = 15 * time.Second

// CheapArgon2 are teleport-ca flags that make password hashing fast enough
// for tests. Start passes them first, so Config.Args can override them.
var CheapArgon2 = []string{"--argon2-memory", "8192", "--argon2-time", "1", "--argon2-threads", "1"}

// FreePort returns "127.0.0.1:PORT" for a port that was free a moment ago:
// it opens a loopback listener on port 0 and closes it.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testbin: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ShortTempDir returns a new directory under the system temporary directory
// (mode 0700), removed when the test ends. Unlike t.TempDir, whose path
// holds the test name, its path is short enough for a Unix socket
// (sun_path holds 108 bytes).
func ShortTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "tb-")
	if err != nil {
		t.Fatalf("testbin: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// Buffer is a bytes.Buffer safe for one writer and many readers at once,
// to collect a process's output while a test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Config says how to start a teleport-ca. Zero fields get fresh values.
type Config struct {
	// DataDir; "" is a new "data" directory under t.TempDir(), which
	// teleport-ca creates.
	DataDir string
	// Listen is the HTTPS address; "" is FreePort.
	Listen string
	// AdminSocket; "" is admin.sock in a new ShortTempDir.
	AdminSocket string
	// Args are more flags, after the ones Start sets (the last of a
	// repeated flag wins).
	Args []string
	// Env is added to the test's environment, from which Start drops the
	// TELEPORT_* variables and systemd's NOTIFY_SOCKET, WATCHDOG_* and
	// LISTEN_* so that the process sees only what the test sets.
	Env []string
}

// CA is a running teleport-ca process.
type CA struct {
	DataDir     string
	Listen      string // "127.0.0.1:PORT" of the HTTPS API
	AdminSocket string
	// Pin is the TLS root pin. On a first start (no TLS root in DataDir
	// before) it is the one printed on stdout as "CA pin: sha256:..."; on
	// later starts, the one the admin API reports.
	Pin string
	// Stdout and Stderr collect the process's output; they are complete
	// once the process has exited (Stop, Kill, Done).
	Stdout, Stderr *Buffer
	Cmd            *exec.Cmd

	t    testing.TB
	done chan struct{} // closed when the process has exited
	code int           // exit code, -1 if killed by a signal; set before done closes
}

// StartCA starts teleport-ca with a fresh data dir and admin socket, cheap
// argon2 parameters and the extra flags args. See Start.
func StartCA(t testing.TB, args ...string) *CA {
	t.Helper()
	return Start(t, Config{Args: args})
}

// Start starts teleport-ca as cfg says and waits until its admin socket
// answers (at most ReadyTimeout); the test fails with the process's stderr
// if it exits or does not answer in time. The process is stopped with
// SIGTERM when the test ends, and its stderr logged if the test failed.
func Start(t testing.TB, cfg Config) *CA {
	t.Helper()
	bin := Build(t, TeleportCA)["teleport-ca"]
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(t.TempDir(), "data")
	}
	if cfg.Listen == "" {
		cfg.Listen = FreePort(t)
	}
	if cfg.AdminSocket == "" {
		cfg.AdminSocket = filepath.Join(ShortTempDir(t), "admin.sock")
	}
	_, err := os.Stat(filepath.Join(cfg.DataDir, "tls_root.crt"))
	first := errors.Is(err, os.ErrNotExist)

	args := []string{"--data-dir", cfg.DataDir, "--listen", cfg.Listen, "--admin-socket", cfg.AdminSocket}
	args = append(append(args, CheapArgon2...), cfg.Args...)
	c := &CA{
		DataDir: cfg.DataDir, Listen: cfg.Listen, AdminSocket: cfg.AdminSocket,
		Stdout: new(Buffer), Stderr: new(Buffer),
		Cmd: exec.Command(bin, args...),
		t:   t, done: make(chan struct{}),
	}
	c.Cmd.Env = append(Environ(), cfg.Env...)
	c.Cmd.Stdout, c.Cmd.Stderr = c.Stdout, c.Stderr
	if err := c.Cmd.Start(); err != nil {
		t.Fatalf("testbin: starting teleport-ca: %v", err)
	}
	go func() {
		_ = c.Cmd.Wait()
		c.code = c.Cmd.ProcessState.ExitCode()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("teleport-ca (%s) stderr:\n%s", c.AdminSocket, c.Stderr)
		}
	})
	c.waitReady(first)
	return c
}

// Environ returns the test's environment without TELEPORT_* and the
// variables systemd passes to services.
func Environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "TELEPORT_"),
			strings.HasPrefix(name, "WATCHDOG_"),
			strings.HasPrefix(name, "LISTEN_"),
			name == "NOTIFY_SOCKET":
			continue
		}
		env = append(env, kv)
	}
	return env
}

var pinLine = regexp.MustCompile(`(?m)^CA pin: (sha256:[0-9a-f]{64})$`)

func (c *CA) waitReady(first bool) {
	c.t.Helper()
	deadline := time.Now().Add(ReadyTimeout)
	adm := c.Admin()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := adm.AdminCA(ctx)
		cancel()
		if err == nil {
			c.Pin = info.Pin
			break
		}
		select {
		case <-c.done:
			c.t.Fatalf("testbin: teleport-ca exited with code %d before its admin socket answered; stderr:\n%s", c.code, c.Stderr)
		default:
		}
		if time.Now().After(deadline) {
			c.Kill()
			c.t.Fatalf("testbin: teleport-ca admin socket %s did not answer within %v (last error: %v); stderr:\n%s",
				c.AdminSocket, ReadyTimeout, err, c.Stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !first {
		return
	}
	// The pin line is written before the admin socket listens, but may
	// still be in the pipe.
	for {
		if m := pinLine.FindStringSubmatch(c.Stdout.String()); m != nil {
			c.Pin = m[1]
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("testbin: teleport-ca started on a new data dir but printed no \"CA pin: sha256:...\" line; stdout:\n%s", c.Stdout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Admin returns a client of the admin socket.
func (c *CA) Admin() *client.Client {
	return client.NewAdmin(c.AdminSocket)
}

// URL returns the base URL of the HTTPS API.
func (c *CA) URL() string { return "https://" + c.Listen }

// HTTPS returns a client of the HTTPS API that trusts the server through
// c.Pin.
func (c *CA) HTTPS() *client.Client {
	c.t.Helper()
	cl, err := client.New(c.URL(), client.Options{Pin: c.Pin})
	if err != nil {
		c.t.Fatalf("testbin: %v", err)
	}
	return cl
}

// Done is closed when the process has exited.
func (c *CA) Done() <-chan struct{} { return c.done }

// ExitCode returns the exit code once the process has exited: -1 if a
// signal killed it.
func (c *CA) ExitCode() int {
	<-c.done
	return c.code
}

// Signal sends sig to the process; it does nothing once the process has
// exited.
func (c *CA) Signal(sig os.Signal) {
	if err := c.Cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.t.Errorf("testbin: signalling teleport-ca: %v", err)
	}
}

// Stop sends SIGTERM, waits for the process to exit and returns its exit
// code. If it has not exited after 15 s, the test fails and it is killed.
// Stopping a stopped process returns its exit code again.
func (c *CA) Stop() int {
	select {
	case <-c.done:
		return c.code
	default:
	}
	c.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(stopTimeout):
		c.t.Errorf("testbin: teleport-ca did not exit within %v of SIGTERM; killing it", stopTimeout)
		c.Kill()
	}
	return c.code
}

// Kill sends SIGKILL and waits for the process to exit.
func (c *CA) Kill() {
	c.Signal(syscall.SIGKILL)
	<-c.done
}
