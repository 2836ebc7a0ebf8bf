package sshproxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// startBareProxy serves the SSH listener of a proxy with only what the
// unauthenticated phase needs: a policy and a host key.
func startBareProxy(t *testing.T, cfg Config) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Clock = time.Now
	p := &Proxy{cfg: cfg, log: slog.New(slog.DiscardHandler), listener: l}
	p.events = newAuditQueue(p)
	p.pol.Store(testPolicy(t, newSigner(t).PublicKey(), newSigner(t).PublicKey()))
	hs := newSigner(t)
	p.hostSigner.Store(&hs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); l.Close(); <-done })
	return p
}

// closedWithin reports whether the server closes conn within d.
func closedWithin(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	return err == nil // EOF: closed by the server; a timeout is an error
}

func TestHandshakeTimeout(t *testing.T) {
	p := startBareProxy(t, Config{HandshakeTimeout: 300 * time.Millisecond, MaxUnauthenticated: 10})
	conn, err := net.Dial("tcp", p.listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if !closedWithin(conn, 5*time.Second) {
		t.Fatal("a silent client was not disconnected")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a silent client was disconnected after %v, want about 300ms", d)
	}
}

func TestMaxUnauthenticated(t *testing.T) {
	p := startBareProxy(t, Config{HandshakeTimeout: 10 * time.Second, MaxUnauthenticated: 2})
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", p.listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		defer c.Close()
	}
	time.Sleep(100 * time.Millisecond) // let the server count them
	extra, err := net.Dial("tcp", p.listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if !closedWithin(extra, 3*time.Second) {
		t.Fatal("a connection above the unauthenticated limit was kept")
	}
	// The held ones are still being served (they got the banner).
	buf := make([]byte, 7)
	_ = held[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(held[0], buf); err != nil || string(buf) != "SSH-2.0" {
		t.Fatalf("a connection within the limit: %q %v", buf, err)
	}
}
