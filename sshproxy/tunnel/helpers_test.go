package tunnel

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// proxyHost is the host part of every test proxy address, and so the
// principal of the proxies' host certificates.
const proxyHost = "127.0.0.1"

func newKey(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// certSigner certifies key with ca as a host certificate for principals,
// valid from an hour ago for a day; edit changes the certificate before
// signing.
func certSigner(t testing.TB, ca, key ssh.Signer, principals []string, edit func(*ssh.Certificate)) ssh.Signer {
	t.Helper()
	now := time.Now()
	cert := &ssh.Certificate{
		Key:             key.PublicKey(),
		Serial:          1,
		CertType:        ssh.HostCert,
		KeyId:           "test",
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-time.Hour).Unix()),
		ValidBefore:     uint64(now.Add(24 * time.Hour).Unix()),
	}
	if edit != nil {
		edit(cert)
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fixed(s ssh.Signer) func() (ssh.Signer, error) {
	return func() (ssh.Signer, error) { return s, nil }
}

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cluster is a host CA, a set of registered node names and the proxies
// started for them.
type cluster struct {
	t     testing.TB
	ca    ssh.Signer
	mu    sync.Mutex
	nodes map[string]bool
}

func newCluster(t testing.TB, nodes ...string) *cluster {
	c := &cluster{t: t, ca: newKey(t), nodes: make(map[string]bool)}
	for _, n := range nodes {
		c.nodes[n] = true
	}
	return c
}

func (c *cluster) hostCAs() []ssh.PublicKey { return []ssh.PublicKey{c.ca.PublicKey()} }

func (c *cluster) isNode(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name]
}

func (c *cluster) setNode(name string, registered bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[name] = registered
}

// nodeSigner returns a fresh key certified for name.
func (c *cluster) nodeSigner(name string) ssh.Signer {
	return certSigner(c.t, c.ca, newKey(c.t), []string{name, name + ".example.com", "192.0.2.1"}, nil)
}

// proxy is a running Server.
type proxy struct {
	*Server
	t      testing.TB
	addr   string
	logs   *logBuffer
	served chan error
	once   sync.Once
}

// startProxy starts a Server on addr ("" for a new loopback port), edited
// by edit, wrapping its listener with wrap if set. It is closed at the end
// of the test.
func (c *cluster) startProxy(addr string, edit func(*Server), wrap func(net.Listener) net.Listener) *proxy {
	c.t.Helper()
	if addr == "" {
		addr = proxyHost + ":0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		c.t.Fatal(err)
	}
	p := &proxy{t: c.t, addr: l.Addr().String(), logs: new(logBuffer), served: make(chan error, 1)}
	p.Server = &Server{
		Signer:            certSigner(c.t, c.ca, newKey(c.t), []string{proxyHost, "proxy.example.com"}, nil),
		HostCAs:           c.hostCAs,
		IsNode:            c.isNode,
		Logger:            p.logs.logger(),
		KeepaliveInterval: time.Hour,
	}
	if edit != nil {
		edit(p.Server)
	}
	if wrap != nil {
		l = wrap(l)
	}
	// Initialize before Serve runs in its goroutine, so that tests may
	// look at the server's maps (under its mutex) at once.
	p.init()
	go func() { p.served <- p.Serve(l) }()
	c.t.Cleanup(func() { p.stop() })
	return p
}

// stop closes the server and checks that Serve returned ErrServerClosed.
func (p *proxy) stop() {
	p.once.Do(func() {
		p.Close()
		if err := <-p.served; !errors.Is(err, ErrServerClosed) {
			p.t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
}

// states records a Client's OnState calls.
type states struct {
	up, down atomic.Int32
	mu       sync.Mutex
	lastErr  error
}

func (s *states) record(up bool, err error) {
	if up {
		s.up.Add(1)
		return
	}
	s.down.Add(1)
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

func (s *states) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// node is a running Client.
type node struct {
	*Client
	states *states
	logs   *logBuffer
}

// startNode runs a Client for name against p, edited by edit, until the end
// of the test.
func (c *cluster) startNode(p *proxy, name string, signer ssh.Signer, edit func(*Client)) *node {
	c.t.Helper()
	n := &node{states: new(states), logs: new(logBuffer)}
	n.Client = &Client{
		Node:       name,
		ProxyAddr:  p.addr,
		Signer:     fixed(signer),
		HostCAs:    c.hostCAs,
		Logger:     n.logs.logger(),
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond,
		OnState:    n.states.record,
	}
	if edit != nil {
		edit(n.Client)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	c.t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			c.t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	return n
}

// dialRaw connects to p as node user with signer, checking p's host key as
// a Client would, and leaves requests and channels to the caller.
func (c *cluster) dialRaw(p *proxy, user string, signer ssh.Signer, edit func(*ssh.ClientConfig)) (ssh.Conn, <-chan ssh.NewChannel, <-chan *ssh.Request, error) {
	nc, err := net.Dial("tcp", p.addr)
	if err != nil {
		return nil, nil, nil, err
	}
	checker := &Client{HostCAs: c.hostCAs}
	cfg := &ssh.ClientConfig{
		Config:            baseConfig(),
		User:              user,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   checker.checkProxy,
		HostKeyAlgorithms: hostCertAlgorithms,
	}
	if edit != nil {
		edit(cfg)
	}
	conn, chans, reqs, err := ssh.NewClientConn(nc, p.addr, cfg)
	if err != nil {
		nc.Close()
		return nil, nil, nil, err
	}
	return conn, chans, reqs, nil
}

// startEcho starts a TCP server that echoes what it reads and half-closes
// after EOF: a stand-in for the node's sshd.
func startEcho(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := io.Copy(c, c); err != nil {
					return
				}
				_ = c.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return l.Addr().String()
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// holeListener hands out connections that can be made to drop all traffic
// in both directions while staying open, like a peer that has vanished
// behind a firewall. Connections accepted later are unaffected.
type holeListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*holeConn
}

func (l *holeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	hc := &holeConn{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, hc)
	l.mu.Unlock()
	return hc, nil
}

// blackhole makes every connection accepted so far drop its traffic.
func (l *holeListener) blackhole() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.holed.Store(true)
	}
	l.conns = nil
}

type holeConn struct {
	net.Conn
	holed atomic.Bool
}

// Read discards what arrives once holed, but still returns EOF and errors,
// so that the connection ends when the peer closes it.
func (c *holeConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err != nil || !c.holed.Load() {
			return n, err
		}
	}
}

func (c *holeConn) Write(p []byte) (int, error) {
	if c.holed.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// contains waits until the log holds every one of want.
func contains(t testing.TB, logs *logBuffer, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := logs.String()
		missing := slices.IndexFunc(want, func(w string) bool { return !strings.Contains(s, w) })
		if missing < 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("log lacks %q:\n%s", want[missing], s)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
