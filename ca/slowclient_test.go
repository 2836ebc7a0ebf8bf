package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
)

// stalled is a client that opened a connection and stopped: the test
// measures when the server closes it.
type stalled struct {
	kind   string
	conn   net.Conn  // read until the server closes it
	since  time.Time // when the server's timer started
	closed chan time.Duration
}

// watch reads (and drops) whatever the server sends until it closes the
// connection, then reports how long after since that was. A connection
// still open after limit reports -1.
func (s *stalled) watch(limit time.Duration) {
	s.closed = make(chan time.Duration, 1)
	go func() {
		_ = s.conn.SetReadDeadline(time.Now().Add(limit))
		_, err := io.Copy(io.Discard, s.conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.closed <- -1
			return
		}
		s.closed <- time.Since(s.since)
	}()
}

// openStalled opens n connections of each kind, eight at a time (so that
// the TLS handshakes of the stalling clients themselves do not run into
// the server's handshake timeout on a loaded test machine).
func openStalled(t *testing.T, n int, kinds map[string]func() (net.Conn, error)) []*stalled {
	t.Helper()
	var mu sync.Mutex
	var out []*stalled
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for kind, open := range kinds {
		for range n {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				c, err := open()
				if err != nil {
					t.Errorf("opening a %s connection: %v", kind, err)
					return
				}
				t.Cleanup(func() { c.Close() })
				mu.Lock()
				out = append(out, &stalled{kind: kind, conn: c, since: time.Now()})
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return out
}

// checkClosed waits for every stalled connection and fails for those the
// server did not close within limit of their stall.
func checkClosed(t *testing.T, conns []*stalled, limit time.Duration) {
	t.Helper()
	for _, s := range conns {
		s.watch(limit + 3*time.Second)
	}
	worst := map[string]time.Duration{}
	for _, s := range conns {
		d := <-s.closed
		switch {
		case d < 0:
			t.Errorf("a %s connection is still open %v after it stalled", s.kind, limit+3*time.Second)
		case d > limit:
			t.Errorf("a %s connection was closed after %v, want within %v", s.kind, d, limit)
		}
		worst[s.kind] = max(worst[s.kind], d)
	}
	t.Logf("%d stalled connections; the slowest closed per kind: %v", len(conns), worst)
}

// TestSlowClients holds 200 stalled connections on the HTTPS listener
// and 40 on the admin socket — silent, half a TLS ClientHello, TLS done
// and silent, half an HTTP header, HTTP/2 preface and silent — while
// well-behaved clients are served at once; every stalled connection is
// closed by ReadHeaderTimeout (or IdleTimeout for HTTP/2). The other
// timeouts are set long, so removing the one under test fails it.
func TestSlowClients(t *testing.T) {
	const headerTimeout = 2 * time.Second
	a, _ := newTestAuthority(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(shortDir(t), "admin.sock")
	adm, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, a, ServerConfig{Listener: ln, AdminListener: adm,
		ReadHeaderTimeout: headerTimeout, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: headerTimeout})
	addr := ln.Addr().String()
	pool := x509.NewCertPool()
	pool.AddCert(a.keys.tls.cert)
	tlsConn := func(proto string, then []byte) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{proto}})
			if err != nil {
				return nil, err
			}
			if _, err := c.Write(then); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
	}
	raw := func(network, addr string, then []byte) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			c, err := net.Dial(network, addr)
			if err == nil && len(then) > 0 {
				_, err = c.Write(then)
			}
			return c, err
		}
	}
	https := openStalled(t, 40, map[string]func() (net.Conn, error){
		"silent TCP":               raw("tcp", addr, nil),
		"half a TLS ClientHello":   raw("tcp", addr, []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}),
		"TLS, then silent":         tlsConn("http/1.1", nil),
		"TLS, half an HTTP header": tlsConn("http/1.1", []byte("GET /v1/ping HTTP/1.1\r\nHost: ca\r\nX-Slow: ")),
		"HTTP/2 preface, silent":   tlsConn("h2", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")),
	})
	admin := openStalled(t, 20, map[string]func() (net.Conn, error){
		"admin: silent":              raw("unix", sock, nil),
		"admin: half an HTTP header": raw("unix", sock, []byte("GET /v1/admin/ca HTTP/1.1\r\nHost: admin\r\n")),
	})

	// Well-behaved clients, over HTTP/1.1 and HTTP/2, on new connections.
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2, DisableKeepAlives: true}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		start := time.Now()
		resp, err := hc.Get("https://" + addr + api.PathPing)
		if err != nil {
			t.Fatalf("a well-behaved client (HTTP/2 %v) among the stalled ones: %v", h2, err)
		}
		resp.Body.Close()
		if took := time.Since(start); resp.StatusCode != 200 || took > headerTimeout || resp.ProtoAtLeast(2, 0) != h2 {
			t.Errorf("a well-behaved client (HTTP/2 %v): %s %s after %v", h2, resp.Proto, resp.Status, took)
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.NewAdmin(sock).AdminCA(ctx); err != nil || time.Since(start) > headerTimeout {
		t.Errorf("caadm's request among the stalled ones: %v after %v", err, time.Since(start))
	}

	// Generous: the machine may be loaded, and without the timeout they
	// would never close.
	checkClosed(t, append(https, admin...), headerTimeout+4*time.Second)
}

// TestLongPollOutlivesWriteTimeout: the policy long poll holds its
// request longer than WriteTimeout and still answers; the answer carries
// a Date header that puts the CA's clock where it is.
func TestLongPollOutlivesWriteTimeout(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, a, ServerConfig{Listener: ln, WriteTimeout: 500 * time.Millisecond})
	tlsPub, key := tlsPubPEM(t)
	id, err := a.JoinNode(context.Background(), api.NodeJoinRequest{
		Token: nodeToken(t, a, TokenNode, nil), Name: "web1",
		HostPublicKey: authorizedKey(newPub(t)), TLSPublicKey: tlsPub,
	}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(id.TLSCertificate))
	cl, err := client.New("https://"+ln.Addr().String(), client.Options{
		Pin: a.Pin(), ClientCert: &tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: key}, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := cl.NodePolicy(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := cl.NodePolicy(ctx, first.Hash, 1500*time.Millisecond); err != nil {
		t.Fatalf("a 1.5 s long poll with a 0.5 s WriteTimeout: %v", err)
	}
	if took := time.Since(start); took < 1400*time.Millisecond {
		t.Fatalf("the poll answered after %v, before its wait", took)
	}
	if skew, ok := cl.ClockSkew(time.Now()); !ok || skew.Abs() > 2*time.Second {
		t.Errorf("ClockSkew from the CA's Date header = %v, %v; want about 0", skew, ok)
	}
}

func serve(t *testing.T, a *Authority, cfg ServerConfig) {
	t.Helper()
	s, err := NewServer(a, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// shortDir is a directory short enough for a Unix socket path.
func shortDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "ca-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestNegativeTimeoutRefused: a negative timeout would turn it off
// (net/http treats it as none); the server refuses it.
func TestNegativeTimeoutRefused(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	if _, err := NewServer(a, ServerConfig{ReadHeaderTimeout: -time.Second}); err == nil {
		t.Fatal("a negative ReadHeaderTimeout was accepted")
	}
}
