package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opensshca/suite/internal/testbin"
)

// SIGTERM (systemctl stop) and SIGINT (Ctrl-C) end the CA cleanly: exit
// code 0 and the admin socket removed.
func TestSignalStop(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			c := testbin.StartCA(t)
			// A connection that stays idle must not hold up the stop.
			hc := c.HTTPS()
			if _, err := hc.Ping(bg(t)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c.Signal(sig)
			select {
			case <-c.Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("still running 10 s after %v", sig)
			}
			if code := c.ExitCode(); code != 0 {
				t.Errorf("exit code %d after %v (in %v); stderr:\n%s", code, sig, time.Since(start), c.Stderr)
			}
			if _, err := os.Lstat(c.AdminSocket); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("admin socket left behind after %v: %v", sig, err)
			}
			noErrorLogs(t, "teleport-ca", c.Stderr.String())
		})
	}
}

// After a crash (SIGKILL) the socket file stays; the next start replaces it.
func TestStaleSocket(t *testing.T) {
	t.Parallel()
	c := testbin.StartCA(t)
	c.Kill()
	wantMode(t, c.AdminSocket, os.ModeSocket|0o600)
	c2 := testbin.Start(t, testbin.Config{DataDir: c.DataDir, AdminSocket: c.AdminSocket})
	if c2.Pin != c.Pin {
		t.Errorf("pin %s after restart, was %s", c2.Pin, c.Pin)
	}
	if _, err := c2.HTTPS().Ping(bg(t)); err != nil {
		t.Error(err)
	}
	wantMode(t, c.AdminSocket, os.ModeSocket|0o600)
}

// A second teleport-ca on a live admin socket is refused and leaves the
// first one's socket in place.
func TestSocketInUse(t *testing.T) {
	t.Parallel()
	c := testbin.StartCA(t)
	for _, tt := range []struct {
		name    string
		dataDir string
		want    []string
	}{
		{"same data dir", c.DataDir, []string{"in use"}},
		{"other data dir", filepath.Join(t.TempDir(), "data"), []string{"in use", c.AdminSocket}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runCA(t, "--data-dir", tt.dataDir, "--admin-socket", c.AdminSocket)
			if r.code == 0 {
				t.Fatalf("second teleport-ca on %s exited 0; stderr:\n%s", c.AdminSocket, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not contain %q:\n%s", w, r.stderr)
				}
			}
			if _, err := c.Admin().AdminCA(bg(t)); err != nil {
				t.Errorf("first CA's admin socket after the refused start: %v", err)
			}
		})
	}
}

// teleport-ca speaks sd_notify: READY=1 once serving, WATCHDOG=1 every half
// WATCHDOG_USEC, STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	t.Parallel()
	path := filepath.Join(testbin.ShortTempDir(t), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	type msg struct {
		text string
		at   time.Time
	}
	msgs := make(chan msg, 1000)
	go func() {
		defer close(msgs)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- msg{string(buf[:n]), time.Now()}
		}
	}()
	next := func(d time.Duration) (msg, bool) {
		select {
		case m, ok := <-msgs:
			return m, ok
		case <-time.After(d):
			return msg{}, false
		}
	}

	c := testbin.Start(t, testbin.Config{Env: []string{"NOTIFY_SOCKET=" + path, "WATCHDOG_USEC=400000"}})
	var ready time.Time
	for ready.IsZero() {
		m, ok := next(5 * time.Second)
		switch {
		case !ok:
			t.Fatal("no READY=1 from teleport-ca")
		case m.text == "READY=1":
			ready = m.at
		case m.text != "WATCHDOG=1":
			t.Errorf("unexpected notification %q before READY=1", m.text)
		}
	}
	pings := 0
	for pings < 2 {
		m, ok := next(time.Until(ready.Add(2 * time.Second)))
		if !ok {
			t.Fatalf("%d WATCHDOG=1 within 2 s of READY=1 (WATCHDOG_USEC=400000), want at least 2", pings)
		}
		if m.text != "WATCHDOG=1" {
			t.Errorf("unexpected notification %q", m.text)
			continue
		}
		pings++
	}

	c.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for stopping := false; !stopping; {
		m, ok := next(time.Until(deadline))
		if !ok {
			t.Fatal("no STOPPING=1 within 10 s of SIGTERM")
		}
		stopping = m.text == "STOPPING=1"
		if !stopping && m.text != "WATCHDOG=1" {
			t.Errorf("unexpected notification %q", m.text)
		}
	}
	if code := c.ExitCode(); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// A file at the --admin-socket path that is not a socket (a typo such as
// --admin-socket /etc/teleport-ca/teleport-ca.toml) is refused, not
// deleted as if it were a stale socket.
func TestAdminSocketPathNotASocket(t *testing.T) {
	t.Parallel()
	path := filepath.Join(testbin.ShortTempDir(t), "teleport-ca.toml")
	const content = "# the operator's configuration\n"
	writeFile(t, path, content)
	r := runCA(t, "--data-dir", filepath.Join(t.TempDir(), "data"), "--admin-socket", path)
	if r.code == 0 {
		t.Errorf("teleport-ca started with --admin-socket naming a regular file")
	}
	if !strings.Contains(r.stderr, path) || !strings.Contains(r.stderr, "not a socket") {
		t.Errorf("stderr does not say that %s is not a socket:\n%s", path, r.stderr)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != content {
		t.Errorf("the file at --admin-socket was destroyed: %q, %v", b, err)
	}
}

// An unknown --ca-key-type is an error even when the data dir already has
// keys, like any other bad setting, instead of lying in wait for the next
// new data dir.
func TestUnknownKeyTypeOnExistingDir(t *testing.T) {
	t.Parallel()
	c := testbin.StartCA(t)
	if code := c.Stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	r := runCA(t, "--data-dir", c.DataDir, "--ca-key-type", "dsa")
	if r.code == 0 || !strings.Contains(r.stderr, "dsa") {
		t.Errorf("--ca-key-type dsa on an existing data dir: exit code %d, stderr:\n%s", r.code, r.stderr)
	}
}
