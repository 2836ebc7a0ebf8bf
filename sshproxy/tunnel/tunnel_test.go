package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestDialRoundTrip(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1")
	p := cl.startProxy("", nil, nil)
	n := cl.startNode(p, "node1", cl.nodeSigner("node1"), func(c *Client) { c.Target = startEcho(t) })
	waitFor(t, 10*time.Second, "node1 connected", func() bool { return slices.Equal(p.Connected(), []string{"node1"}) })
	contains(t, p.logs, "tunnel: node connected", "node=node1")

	ctx := context.Background()
	meta := DialRequest{SessionID: "s-1", User: "alice", ClientAddr: "192.0.2.7:5555"}

	t.Run("half-close", func(t *testing.T) {
		c, err := p.Dial(ctx, "node1", meta)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("hello tunnel")); err != nil {
			t.Fatal(err)
		}
		if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "hello tunnel" {
			t.Fatalf("read %q, %v; want the echo", got, err)
		}
		if c.RemoteAddr() == nil || c.LocalAddr() == nil {
			t.Error("nil address")
		}
		if err := c.SetDeadline(time.Now()); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("SetDeadline = %v, want ErrUnsupported", err)
		}
	})

	t.Run("bulk both ways", func(t *testing.T) {
		// More than the 2 MiB channel window, written while reading.
		data := make([]byte, 5<<19)
		rand.Read(data)
		c, err := p.Dial(ctx, "node1", meta)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		werr := make(chan error, 1)
		go func() {
			_, err := c.Write(data)
			if err == nil {
				err = c.(interface{ CloseWrite() error }).CloseWrite()
			}
			werr <- err
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("echo differs: got %d bytes, want %d", len(got), len(data))
		}
	})

	t.Run("no tunnel", func(t *testing.T) {
		if _, err := p.Dial(ctx, "node2", meta); !errors.Is(err, ErrNoTunnel) {
			t.Errorf("Dial(node2) = %v, want ErrNoTunnel", err)
		}
	})

	t.Run("bad request", func(t *testing.T) {
		_, err := p.Dial(ctx, "node1", DialRequest{User: "alice\nforged log line"})
		if !errors.Is(err, ErrBadDialRequest) {
			t.Errorf("Dial = %v, want ErrBadDialRequest", err)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := p.Dial(cctx, "node1", meta); !errors.Is(err, context.Canceled) {
			t.Errorf("Dial = %v, want context.Canceled", err)
		}
	})

	waitFor(t, 10*time.Second, "node session logs", func() bool {
		return strings.Count(n.logs.String(), "tunnel: session ended") >= 2
	})
	contains(t, n.logs, "session_id=s-1", "user=alice", "client=192.0.2.7:5555")
}

func TestDialTargetDown(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1")
	p := cl.startProxy("", nil, nil)
	down := closedAddr(t)
	n := cl.startNode(p, "node1", cl.nodeSigner("node1"), func(c *Client) { c.Target = down })
	waitFor(t, 10*time.Second, "node1 connected", func() bool { return len(p.Connected()) == 1 })
	_, err := p.Dial(context.Background(), "node1", DialRequest{SessionID: "s-2"})
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) || oce.Reason != ssh.ConnectionFailed {
		t.Fatalf("Dial = %v, want an OpenChannelError with ConnectionFailed", err)
	}
	if strings.Contains(oce.Message, down) {
		t.Errorf("rejection tells the proxy the node's address: %q", oce.Message)
	}
	contains(t, n.logs, "cannot reach target", down)
	// The tunnel survives.
	if got := p.Connected(); !slices.Equal(got, []string{"node1"}) {
		t.Errorf("Connected = %q after a failed dial", got)
	}
}

// TestChannelsAndRequests checks what each end refuses: the node opens no
// channel toward the proxy and sends no global request but keepalives; the
// proxy opens no channel but dial channels with a valid request.
func TestChannelsAndRequests(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1", "node2")
	p := cl.startProxy("", nil, nil)

	conn, _, reqs, err := cl.dialRaw(p, "node1", cl.nodeSigner("node1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for _, typ := range []string{"session", "direct-tcpip", ChannelType} {
		_, _, err := conn.OpenChannel(typ, nil)
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) || oce.Reason != ssh.Prohibited {
			t.Errorf("node opening %q: %v, want Prohibited", typ, err)
		}
	}
	if ok, _, err := conn.SendRequest("tcpip-forward", true, ssh.Marshal(struct {
		Addr string
		Port uint32
	}{"0.0.0.0", 2222})); ok || err != nil {
		t.Errorf("tcpip-forward = %v, %v; want refused", ok, err)
	}
	if ok, _, err := conn.SendRequest(keepaliveRequest, true, nil); !ok || err != nil {
		t.Errorf("keepalive = %v, %v; want accepted", ok, err)
	}
	contains(t, p.logs, "node opened a channel; rejected", "type=direct-tcpip")

	// The proxy's side, toward a real Client.
	cl.startNode(p, "node2", cl.nodeSigner("node2"), func(c *Client) { c.Target = startEcho(t) })
	waitFor(t, 10*time.Second, "node2 connected", func() bool { return slices.Contains(p.Connected(), "node2") })
	p.mu.Lock()
	tc := p.tunnels["node2"].conn
	p.mu.Unlock()
	for _, tt := range []struct {
		typ    string
		data   []byte
		reason ssh.RejectionReason
	}{
		{"direct-tcpip", ssh.Marshal(struct {
			Host     string
			Port     uint32
			OrigHost string
			OrigPort uint32
		}{"169.254.169.254", 80, "127.0.0.1", 1}), ssh.UnknownChannelType},
		{"session", nil, ssh.UnknownChannelType},
		{ChannelType, []byte("garbage"), ssh.Prohibited},
		{ChannelType, nil, ssh.Prohibited},
	} {
		_, _, err := tc.OpenChannel(tt.typ, tt.data)
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) || oce.Reason != tt.reason {
			t.Errorf("proxy opening %q: %v, want %v", tt.typ, err, tt.reason)
		}
	}
}

func TestAlgorithms(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1")
	p := cl.startProxy("", nil, nil)
	signer := cl.nodeSigner("node1")

	conn, _, reqs, err := cl.dialRaw(p, "node1", signer, nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqs)
	algs := conn.(ssh.AlgorithmsConnMetadata).Algorithms()
	conn.Close()
	if algs.KeyExchange != ssh.KeyExchangeMLKEM768X25519 || algs.Read.Cipher != ssh.CipherAES128GCM || algs.HostKey != ssh.CertAlgoED25519v01 {
		t.Errorf("negotiated %+v", algs)
	}

	for name, edit := range map[string]func(*ssh.ClientConfig){
		"cbc":           func(c *ssh.ClientConfig) { c.Ciphers = []string{ssh.InsecureCipherAES128CBC} },
		"ctr":           func(c *ssh.ClientConfig) { c.Ciphers = []string{ssh.CipherAES128CTR} },
		"sha1 kex":      func(c *ssh.ClientConfig) { c.KeyExchanges = []string{ssh.InsecureKeyExchangeDH14SHA1} },
		"nist kex":      func(c *ssh.ClientConfig) { c.KeyExchanges = []string{ssh.KeyExchangeECDHP256} },
		"plain hostkey": func(c *ssh.ClientConfig) { c.HostKeyAlgorithms = []string{ssh.KeyAlgoED25519} },
	} {
		if conn, _, _, err := cl.dialRaw(p, "node1", signer, edit); err == nil {
			conn.Close()
			t.Errorf("%s: handshake succeeded", name)
		}
	}
}

// TestRefused covers every reason the proxy refuses a node: through a raw
// connection (what the proxy does and logs) and through a Client (which
// must report it and keep retrying without spinning).
func TestRefused(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1", "node2")
	other := newKey(t)
	now := time.Now()
	rsaCA := sha1CA(t)
	tests := []struct {
		name   string
		user   string
		signer ssh.Signer
		reason string
	}{
		{"plain key", "node1", newKey(t), "not a certificate"},
		{"user cert", "node1", certSigner(t, cl.ca, newKey(t), []string{"node1"}, func(c *ssh.Certificate) { c.CertType = ssh.UserCert }), "user certificate"},
		{"other CA", "node1", certSigner(t, other, newKey(t), []string{"node1"}, nil), "not a host CA"},
		{"expired", "node1", certSigner(t, cl.ca, newKey(t), []string{"node1"}, func(c *ssh.Certificate) {
			c.ValidAfter, c.ValidBefore = uint64(now.Add(-2*time.Hour).Unix()), uint64(now.Add(-time.Hour).Unix())
		}), "expired"},
		{"not yet valid", "node1", certSigner(t, cl.ca, newKey(t), []string{"node1"}, func(c *ssh.Certificate) {
			c.ValidAfter = uint64(now.Add(time.Hour).Unix())
		}), "not yet valid"},
		{"another node's name", "node1", cl.nodeSigner("node2"), "not among the certificate's principals"},
		{"no principals", "node1", certSigner(t, cl.ca, newKey(t), nil, nil), "not among the certificate's principals"},
		{"unregistered", "ghost", cl.nodeSigner("ghost"), "not registered"},
		{"critical option", "node1", certSigner(t, cl.ca, newKey(t), []string{"node1"}, func(c *ssh.Certificate) {
			c.CriticalOptions = map[string]string{"force-command": "true"}
		}), "critical option"},
		{"sha1 signature", "node1", certSigner(t, rsaCA, newKey(t), []string{"node1"}, nil), "signed with ssh-rsa"},
	}
	p := cl.startProxy("", func(s *Server) {
		s.HostCAs = func() []ssh.PublicKey { return []ssh.PublicKey{cl.ca.PublicKey(), rsaCA.PublicKey()} }
	}, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conn, _, _, err := cl.dialRaw(p, tt.user, tt.signer, nil)
			if err == nil {
				conn.Close()
				t.Fatal("proxy accepted the node")
			}
			if !strings.Contains(err.Error(), "unable to authenticate") {
				t.Errorf("handshake error %v, want an authentication failure", err)
			}
			want := "reason=\"" // the log line of this refusal
			waitFor(t, 10*time.Second, "refusal log", func() bool {
				for _, line := range strings.Split(p.logs.String(), "\n") {
					if strings.Contains(line, "node refused") && strings.Contains(line, "node="+tt.user) &&
						strings.Contains(line, want) && strings.Contains(line, tt.reason) {
						return true
					}
				}
				return false
			})

			// A Client with the same identity reports the failure and keeps
			// retrying, but with backoff: with waits of at least 20 ms, n
			// attempts take at least (n-1)·20 ms. A spinning client would
			// make one attempt per handshake.
			start := time.Now()
			n := cl.startNode(p, tt.user, tt.signer, nil)
			waitFor(t, 10*time.Second, "three failed attempts", func() bool { return n.states.down.Load() >= 3 })
			time.Sleep(300 * time.Millisecond)
			attempts, elapsed := n.states.down.Load(), time.Since(start)
			if limit := int32(elapsed/(20*time.Millisecond)) + 1; attempts > limit {
				t.Errorf("%d attempts in %v with a 20 ms minimum backoff", attempts, elapsed)
			}
			if n.states.up.Load() != 0 {
				t.Error("Client reported a tunnel up")
			}
			// Keys the Client itself can tell are wrong never reach the proxy.
			local := tt.name == "plain key" || tt.name == "user cert"
			if err := n.states.err(); !local && !errors.Is(err, ErrNodeRefused) {
				t.Errorf("OnState error %v, want ErrNodeRefused", err)
			} else if local && (err == nil || !strings.Contains(err.Error(), "no host certificate")) {
				t.Errorf("OnState error %v, want the local check", err)
			}
		})
	}
	t.Cleanup(func() {
		if got := p.Connected(); len(got) != 0 {
			t.Errorf("Connected = %q, want none", got)
		}
	})
}

// sha1CA returns an RSA CA that signs certificates with ssh-rsa (SHA-1).
func sha1CA(t testing.TB) ssh.Signer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := ssh.NewSignerWithAlgorithms(s.(ssh.AlgorithmSigner), []string{ssh.KeyAlgoRSA})
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestNodeRefusesProxy(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1")
	other := newKey(t)
	tests := []struct {
		name    string
		signer  func() ssh.Signer
		trusted bool // the refusal comes from the certificate check
	}{
		{"other CA", func() ssh.Signer { return certSigner(t, other, newKey(t), []string{proxyHost}, nil) }, true},
		{"wrong principal", func() ssh.Signer { return certSigner(t, cl.ca, newKey(t), []string{"proxy.example.com"}, nil) }, true},
		{"no principals", func() ssh.Signer { return certSigner(t, cl.ca, newKey(t), nil, nil) }, true},
		{"user cert", func() ssh.Signer {
			return certSigner(t, cl.ca, newKey(t), []string{proxyHost}, func(c *ssh.Certificate) { c.CertType = ssh.UserCert })
		}, true},
		{"plain key", func() ssh.Signer { return newKey(t) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := cl.startProxy("", func(s *Server) { s.Signer = tt.signer() }, nil)
			n := cl.startNode(p, "node1", cl.nodeSigner("node1"), nil)
			waitFor(t, 10*time.Second, "two failed attempts", func() bool { return n.states.down.Load() >= 2 })
			if n.states.up.Load() != 0 || len(p.Connected()) != 0 {
				t.Fatal("node connected to an untrusted proxy")
			}
			if err := n.states.err(); tt.trusted && !errors.Is(err, ErrProxyNotTrusted) {
				t.Errorf("OnState error %v, want ErrProxyNotTrusted", err)
			}
		})
	}
}

func TestProxyRestart(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1")
	p := cl.startProxy("", nil, nil)
	n := cl.startNode(p, "node1", cl.nodeSigner("node1"), func(c *Client) {
		c.MinBackoff, c.MaxBackoff = 100*time.Millisecond, time.Second
	})
	waitFor(t, 10*time.Second, "node1 connected", func() bool { return len(p.Connected()) == 1 })
	p.stop()
	waitFor(t, 10*time.Second, "node1 to notice", func() bool { return n.states.down.Load() >= 1 })
	// Let a few attempts fail against the closed port first.
	time.Sleep(300 * time.Millisecond)
	p2 := cl.startProxy(p.addr, nil, nil)
	waitFor(t, 10*time.Second, "node1 back on the new proxy", func() bool {
		return slices.Equal(p2.Connected(), []string{"node1"}) && n.states.up.Load() == 2
	})
}

// TestNodeKeepalive: a proxy that stops answering is declared dead by the
// node after KeepaliveMisses, and the node reconnects.
func TestNodeKeepalive(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1")
	hl := new(holeListener)
	p := cl.startProxy("", nil, func(l net.Listener) net.Listener { hl.Listener = l; return hl })
	n := cl.startNode(p, "node1", cl.nodeSigner("node1"), func(c *Client) {
		c.KeepaliveInterval, c.KeepaliveMisses = 100*time.Millisecond, 5
	})
	waitFor(t, 10*time.Second, "node1 connected", func() bool { return n.states.up.Load() == 1 })
	// Keepalives are being answered.
	time.Sleep(300 * time.Millisecond)
	if n.states.down.Load() != 0 {
		t.Fatalf("tunnel dropped while the proxy answered: %v", n.states.err())
	}
	hl.blackhole()
	start := time.Now()
	waitFor(t, 10*time.Second, "node to declare the proxy dead", func() bool { return n.states.down.Load() >= 1 })
	if d := time.Since(start); d < 350*time.Millisecond {
		t.Errorf("declared dead after %v, before 5 keepalives could be missed", d)
	}
	if err := n.states.err(); err == nil || !strings.Contains(err.Error(), "keepalives") {
		t.Errorf("OnState error %v, want the keepalive failure", err)
	}
	waitFor(t, 10*time.Second, "node to reconnect", func() bool { return n.states.up.Load() == 2 })
	waitFor(t, 10*time.Second, "proxy to list node1", func() bool { return len(p.Connected()) == 1 })
}

// TestProxyKeepalive: a node that stops answering is dropped by the proxy.
func TestProxyKeepalive(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1")
	hl := new(holeListener)
	var mu sync.Mutex
	var events []bool
	p := cl.startProxy("", func(s *Server) {
		s.KeepaliveInterval, s.KeepaliveMisses = 100*time.Millisecond, 5
		s.OnChange = func(node string, up bool) { mu.Lock(); events = append(events, up); mu.Unlock() }
	}, func(l net.Listener) net.Listener { hl.Listener = l; return hl })
	n := cl.startNode(p, "node1", cl.nodeSigner("node1"), nil) // node keepalive: default 30 s
	waitFor(t, 10*time.Second, "node1 connected", func() bool { return len(p.Connected()) == 1 })
	time.Sleep(300 * time.Millisecond)
	if n.states.down.Load() != 0 {
		t.Fatalf("tunnel dropped while the node answered: %v", n.states.err())
	}
	hl.blackhole()
	waitFor(t, 10*time.Second, "proxy to drop node1", func() bool {
		return strings.Contains(p.logs.String(), "node stopped answering keepalives")
	})
	// The proxy closed the TCP connection, so the node notices at once and
	// comes back.
	waitFor(t, 10*time.Second, "node to reconnect", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return n.states.up.Load() == 2 && len(events) == 3
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(events, []bool{true, false, true}) {
		t.Errorf("OnChange events %v, want up, down, up", events)
	}
}

// TestReplace: a node that connects again replaces its old tunnel.
func TestReplace(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1")
	var mu sync.Mutex
	var events []bool
	p := cl.startProxy("", func(s *Server) {
		s.OnChange = func(node string, up bool) { mu.Lock(); events = append(events, up); mu.Unlock() }
	}, nil)
	signer := cl.nodeSigner("node1")
	a, _, reqsA, err := cl.dialRaw(p, "node1", signer, nil)
	if err != nil {
		t.Fatal(err)
	}
	go ssh.DiscardRequests(reqsA)
	waitFor(t, 10*time.Second, "first connection registered", func() bool { return len(p.Connected()) == 1 })
	b, chansB, reqsB, err := cl.dialRaw(p, "node1", signer, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	go ssh.DiscardRequests(reqsB)

	waitA := make(chan error, 1)
	go func() { waitA <- a.Wait() }()
	select {
	case <-waitA:
	case <-time.After(5 * time.Second):
		t.Fatal("the first connection was not closed")
	}
	if got := p.Connected(); !slices.Equal(got, []string{"node1"}) {
		t.Fatalf("Connected = %q", got)
	}
	// Dials go to the new connection.
	go func() {
		nc := <-chansB
		if nc != nil {
			_ = nc.Reject(ssh.ConnectionFailed, "test")
		}
	}()
	_, err = p.Dial(context.Background(), "node1", DialRequest{})
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) || oce.Message != "test" {
		t.Errorf("Dial = %v, want the second connection's rejection", err)
	}
	waitFor(t, 10*time.Second, "the replacement log", func() bool {
		return strings.Contains(p.logs.String(), "closed its previous tunnel")
	})
	b.Close()
	waitFor(t, 10*time.Second, "node1 gone", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(p.Connected()) == 0 && len(events) == 3
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(events, []bool{true, true, false}) {
		t.Errorf("OnChange events %v, want up, up, down", events)
	}
}

// TestRecheck: a tunnel is closed once its node is removed, its
// certificate expires or its CA is no longer trusted.
func TestRecheck(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1", "node2", "node3")
	var mu sync.Mutex
	offset := time.Duration(0)
	cas := cl.hostCAs()
	p := cl.startProxy("", func(s *Server) {
		s.KeepaliveInterval = 20 * time.Millisecond
		s.Clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return time.Now().Add(offset) }
		s.HostCAs = func() []ssh.PublicKey { mu.Lock(); defer mu.Unlock(); return cas }
	}, nil)
	shortLived := certSigner(t, cl.ca, newKey(t), []string{"node2"}, func(c *ssh.Certificate) {
		c.ValidBefore = uint64(time.Now().Add(time.Hour).Unix())
	})
	cl.startNode(p, "node1", cl.nodeSigner("node1"), nil)
	cl.startNode(p, "node2", shortLived, nil)
	cl.startNode(p, "node3", cl.nodeSigner("node3"), nil)
	waitFor(t, 10*time.Second, "all connected", func() bool { return len(p.Connected()) == 3 })

	cl.setNode("node1", false)
	waitFor(t, 10*time.Second, "node1 dropped", func() bool { return slices.Equal(p.Connected(), []string{"node2", "node3"}) })
	contains(t, p.logs, "node no longer registered")

	mu.Lock()
	offset = 2 * time.Hour
	mu.Unlock()
	waitFor(t, 10*time.Second, "node2 dropped", func() bool { return slices.Equal(p.Connected(), []string{"node3"}) })
	contains(t, p.logs, "host certificate expired")

	mu.Lock()
	cas = []ssh.PublicKey{newKey(t).PublicKey()}
	mu.Unlock()
	waitFor(t, 10*time.Second, "node3 dropped", func() bool { return len(p.Connected()) == 0 })
	contains(t, p.logs, "certificate authority no longer trusted")
}

func TestHandshakeLimits(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1")
	silent := func(p *proxy) net.Conn {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// closedWithin reports whether the server closes c within d (it sends
	// its version line first, which is read and ignored).
	closedWithin := func(c net.Conn, d time.Duration) bool {
		_ = c.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, c)
		return err == nil
	}

	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		p := cl.startProxy("", func(s *Server) { s.HandshakeTimeout = 200 * time.Millisecond }, nil)
		start := time.Now()
		if !closedWithin(silent(p), 10*time.Second) {
			t.Fatal("a silent connection outlived the handshake timeout")
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Errorf("closed after %v, before the timeout", d)
		}
		n := cl.startNode(p, "node1", cl.nodeSigner("node1"), nil)
		waitFor(t, 10*time.Second, "node1 connected", func() bool { return n.states.up.Load() == 1 })
	})

	t.Run("limit", func(t *testing.T) {
		t.Parallel()
		p := cl.startProxy("", func(s *Server) { s.MaxUnauthenticated = 2; s.HandshakeTimeout = 3 * time.Second }, nil)
		a := silent(p)
		silent(p)
		waitFor(t, 10*time.Second, "two handshakes in flight", func() bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			return len(p.handshakes) == 2
		})
		// A third waits in the listen queue: not served while both slots
		// are taken (the server has not even sent its version line)...
		third := silent(p)
		_ = third.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if n, err := third.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a third concurrent handshake was served or closed at once: n=%d err=%v", n, err)
		}
		// ...and is served as soon as a slot frees up.
		a.Close()
		_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 8)
		if n, err := io.ReadFull(third, b); err != nil || string(b[:n]) != "SSH-2.0-" {
			t.Fatalf("the waiting connection was not served when a slot freed: %q %v", b[:n], err)
		}
		// Stalled clients holding every slot past the handshake timeout
		// do not hold off the rest for ever: they are closed, and a node
		// gets in.
		n := cl.startNode(p, "node1", cl.nodeSigner("node1"), nil)
		waitFor(t, 15*time.Second, "node1 connected", func() bool { return n.states.up.Load() == 1 })
	})
}

func TestServerClose(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1")
	var downs sync.WaitGroup
	downs.Add(1)
	p := cl.startProxy("", func(s *Server) {
		s.OnChange = func(_ string, up bool) {
			if !up {
				downs.Done()
			}
		}
	}, nil)
	n := cl.startNode(p, "node1", cl.nodeSigner("node1"), nil)
	waitFor(t, 10*time.Second, "node1 connected", func() bool { return len(p.Connected()) == 1 })
	p.stop() // checks Serve's result
	downs.Wait()
	if got := p.Connected(); len(got) != 0 {
		t.Errorf("Connected after Close = %q", got)
	}
	waitFor(t, 10*time.Second, "node to notice", func() bool { return n.states.down.Load() >= 1 })
	if err := p.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close = %v", err)
	}
}

func TestRenewedCertificate(t *testing.T) {
	t.Parallel()
	// The Client asks for its signer on every attempt: a node whose first
	// certificate is refused gets in once the renewed one is there.
	cl := newCluster(t, "node1")
	p := cl.startProxy("", nil, nil)
	var mu sync.Mutex
	current := certSigner(t, cl.ca, newKey(t), []string{"node1"}, func(c *ssh.Certificate) {
		c.ValidBefore = uint64(time.Now().Add(-time.Minute).Unix())
	})
	n := cl.startNode(p, "node1", current, func(c *Client) {
		c.Signer = func() (ssh.Signer, error) { mu.Lock(); defer mu.Unlock(); return current, nil }
	})
	waitFor(t, 10*time.Second, "a refusal", func() bool { return n.states.down.Load() >= 1 })
	mu.Lock()
	current = cl.nodeSigner("node1")
	mu.Unlock()
	waitFor(t, 10*time.Second, "node1 connected", func() bool { return len(p.Connected()) == 1 })
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	c := &Client{MinBackoff: 10 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}
	for n := range 12 {
		ceil := min(20*time.Millisecond<<n, 300*time.Millisecond)
		spread := map[time.Duration]bool{}
		for range 50 {
			d := c.backoff(n)
			if d < 10*time.Millisecond || d > ceil {
				t.Fatalf("backoff(%d) = %v, want within [10ms, %v]", n, d, ceil)
			}
			spread[d] = true
		}
		// Every retry is jittered, the first too: nodes that lost the
		// same proxy must not all come back at the same instant.
		if len(spread) < 10 {
			t.Fatalf("backoff(%d) took only %d values in 50 draws", n, len(spread))
		}
	}
	d := (&Client{}).backoff(100)
	if d < DefaultMinBackoff || d > DefaultMaxBackoff {
		t.Errorf("default backoff(100) = %v", d)
	}
}

func TestClientConfigErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []*Client{
		{},
		{Node: "n"},
		{Node: "n", ProxyAddr: "p:1"},
		{Node: "n", ProxyAddr: "p:1", Signer: fixed(nil)},
	} {
		if err := c.Run(context.Background()); err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("Run(%+v) = %v, want a configuration error", c, err)
		}
	}
}
