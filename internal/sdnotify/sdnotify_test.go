package sdnotify_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opensshca/suite/internal/sdnotify"
)

// listen creates a notification socket like systemd's, points NOTIFY_SOCKET
// at it, and enables the watchdog with a 200ms interval for this process.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	return conn
}

// recv returns the next datagram on conn, or "" if none arrives within d.
func recv(t *testing.T, conn *net.UnixConn, d time.Duration) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// startWatchdog runs Watchdog in a goroutine and returns a function that
// stops it and returns what it logged.
func startWatchdog(t *testing.T, healthy func() error) (stop func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	done := make(chan struct{})
	go func() {
		defer close(done)
		sdnotify.Watchdog(ctx, healthy, log)
	}()
	return func() string {
		cancel()
		<-done
		return buf.String()
	}
}

func TestNotify(t *testing.T) {
	tests := []struct {
		name   string
		notify func() error
		want   string
	}{
		{"ready", sdnotify.Ready, "READY=1"},
		{"stopping", sdnotify.Stopping, "STOPPING=1"},
		{"status", func() error { return sdnotify.Status("signing certificates") }, "STATUS=signing certificates"},
		{"status newline", func() error { return sdnotify.Status("a\nREADY=1") }, "STATUS=a READY=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := listen(t)
			if err := tt.notify(); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, conn, 5*time.Second); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if os.Getenv("NOTIFY_SOCKET") == "" {
				t.Error("NOTIFY_SOCKET was unset")
			}
		})
	}
}

func TestNotifyNoSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	for _, notify := range []func() error{sdnotify.Ready, sdnotify.Stopping, func() error { return sdnotify.Status("x") }} {
		if err := notify(); err != nil {
			t.Errorf("without NOTIFY_SOCKET: %v", err)
		}
	}
}

func TestNotifyDeadSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone"))
	if err := sdnotify.Ready(); err == nil {
		t.Error("Ready succeeded with a missing socket, want error")
	}
}

func TestWatchdog(t *testing.T) {
	conn := listen(t)
	stop := startWatchdog(t, func() error { return nil })
	defer stop()
	for range 2 {
		if got := recv(t, conn, 5*time.Second); got != "WATCHDOG=1" {
			t.Fatalf("got %q, want WATCHDOG=1", got)
		}
	}
	if os.Getenv("WATCHDOG_USEC") == "" || os.Getenv("NOTIFY_SOCKET") == "" {
		t.Error("watchdog environment was unset")
	}
}

func TestWatchdogNilHealthy(t *testing.T) {
	conn := listen(t)
	stop := startWatchdog(t, nil)
	defer stop()
	if got := recv(t, conn, 5*time.Second); got != "WATCHDOG=1" {
		t.Fatalf("got %q, want WATCHDOG=1", got)
	}
}

func TestWatchdogUnhealthy(t *testing.T) {
	conn := listen(t)
	var ok atomic.Bool
	stop := startWatchdog(t, func() error {
		if !ok.Load() {
			return errors.New("database wedged")
		}
		return nil
	})

	// Several pings are due in 350ms; none may arrive.
	if got := recv(t, conn, 350*time.Millisecond); got != "" {
		t.Errorf("got %q while unhealthy, want nothing", got)
	}
	ok.Store(true)
	if got := recv(t, conn, 5*time.Second); got != "WATCHDOG=1" {
		t.Errorf("got %q after recovery, want WATCHDOG=1", got)
	}

	logged := stop()
	for _, want := range []string{"level=ERROR", "database wedged"} {
		if !strings.Contains(logged, want) {
			t.Errorf("log %q does not contain %q", logged, want)
		}
	}
}

func TestWatchdogDisabled(t *testing.T) {
	tests := []struct {
		name    string
		usec    string
		pid     string
		wantLog string
	}{
		{name: "unset"},
		{name: "other process", usec: "200000", pid: strconv.Itoa(os.Getpid() + 1)},
		{name: "malformed", usec: "soon", wantLog: "level=ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := listen(t)
			t.Setenv("WATCHDOG_USEC", tt.usec)
			t.Setenv("WATCHDOG_PID", tt.pid)
			var buf bytes.Buffer
			done := make(chan struct{})
			go func() {
				defer close(done)
				sdnotify.Watchdog(context.Background(), nil, slog.New(slog.NewTextHandler(&buf, nil)))
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Watchdog did not return")
			}
			if got := recv(t, conn, 10*time.Millisecond); got != "" {
				t.Errorf("got %q, want nothing", got)
			}
			if !strings.Contains(buf.String(), tt.wantLog) {
				t.Errorf("log %q does not contain %q", buf.String(), tt.wantLog)
			}
		})
	}
}
