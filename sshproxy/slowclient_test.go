package sshproxy_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca"
	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/sshproxy"
)

// TestProxySlowClients holds 200 stalled connections on the proxy's SSH
// listener — silent, half a version line, half a key exchange, key
// exchange done but authentication never finished, and logged in, then
// silent and deaf — while a well-behaved user logs in at once. The
// unauthenticated ones are closed by the handshake timeout, the logged-in
// ones by the keepalive (three unanswered probes).
func TestProxySlowClients(t *testing.T) {
	const handshake, keepalive = 2 * time.Second, 200 * time.Millisecond
	ic := newInprocCluster(t, ca.ServerConfig{}, func(c *sshproxy.Config) {
		c.HandshakeTimeout, c.ClientKeepalive = handshake, keepalive
		c.MaxUnauthenticatedPerSource = -1 // all from 127.0.0.1 here; TestProxyPerSourceLimit covers it
	})
	ic.caadm("roles", "add", "all-root", "--logins", "root", "--labels", "*=*")
	if _, err := ic.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: "alice", Roles: []string{"all-root"}, Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	signer := ic.userSigner("alice")
	hostCA, _, _, _, err := ssh.ParseAuthorizedKey([]byte(ic.hostCA))
	if err != nil {
		t.Fatal(err)
	}
	config := func(auth ssh.AuthMethod) *ssh.ClientConfig {
		cc := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool { return string(k.Marshal()) == string(hostCA.Marshal()) }}
		return &ssh.ClientConfig{User: "alice", Auth: []ssh.AuthMethod{auth}, HostKeyCallback: cc.CheckHostKey, Timeout: 10 * time.Second}
	}
	// nodes runs the proxy's own "nodes" command as a well-behaved user.
	nodes := func() (time.Duration, error) {
		start := time.Now()
		c, err := ssh.Dial("tcp", ic.proxyAddr, config(ssh.PublicKeys(signer)))
		if err != nil {
			return 0, err
		}
		defer c.Close()
		s, err := c.NewSession()
		if err != nil {
			return 0, err
		}
		out, err := s.Output("nodes")
		if err == nil && !strings.Contains(string(out), "Nodes you may log in to") {
			err = errors.New("unexpected output: " + string(out))
		}
		return time.Since(start), err
	}
	eventually(t, 10*time.Second, "the proxy to know alice", func() bool { _, err := nodes(); return err == nil })

	raw := func(then string) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			c, err := net.Dial("tcp", ic.proxyAddr)
			if err == nil && then != "" {
				_, err = io.WriteString(c, then)
			}
			return c, err
		}
	}
	// The key exchange completes; the public key callback then blocks
	// until the test ends, so authentication never finishes.
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	afterKex := func() (net.Conn, error) {
		tc, err := net.Dial("tcp", ic.proxyAddr)
		if err != nil {
			return nil, err
		}
		nc := &watchedConn{Conn: tc, closed: make(chan struct{})}
		kexDone := make(chan struct{})
		stall := ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			close(kexDone)
			<-block
			return nil, errors.New("stalled")
		})
		go func() { _, _, _, _ = ssh.NewClientConn(nc, ic.proxyAddr, config(stall)) }()
		select {
		case <-kexDone:
			return nc, nil
		case <-time.After(10 * time.Second):
			nc.Close()
			return nil, errors.New("no key exchange within 10 s")
		}
	}
	unauth := openStalledSSH(t, 40, map[string]func() (net.Conn, error){
		"silent TCP":                raw(""),
		"half a version line":       raw("SSH-2.0-Open"),
		"half a key exchange":       raw("SSH-2.0-OpenSSH_9.2\r\n\x00\x00\x04\x00\x0a\x14"),
		"authentication unfinished": afterKex,
	})
	// Logged in, then every byte either way is dropped while the TCP
	// connection stays open: a client gone behind a firewall.
	var deaf []*deafClient
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for range 40 {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			nc, err := net.Dial("tcp", ic.proxyAddr)
			if err != nil {
				t.Error(err)
				return
			}
			hc := &holedConn{Conn: nc}
			c, chans, reqs, err := ssh.NewClientConn(hc, ic.proxyAddr, config(ssh.PublicKeys(signer)))
			if err != nil {
				nc.Close()
				t.Errorf("logging in: %v", err)
				return
			}
			go ssh.DiscardRequests(reqs)
			go func() {
				for nc := range chans {
					_ = nc.Reject(ssh.Prohibited, "no")
				}
			}()
			t.Cleanup(func() { c.Close() })
			d := &deafClient{since: time.Now(), done: make(chan struct{})}
			hc.holed.Store(true)
			go func() { _ = c.Wait(); d.closedAt = time.Now(); close(d.done) }()
			mu.Lock()
			deaf = append(deaf, d)
			mu.Unlock()
		})
	}
	wg.Wait()

	for range 3 {
		took, err := nodes()
		if err != nil || took > handshake {
			t.Errorf("a well-behaved login among %d stalled connections: %v after %v", len(unauth)+len(deaf), err, took)
		}
	}
	// Generous bounds: the machine may be loaded, and without the
	// timeouts the connections would never close.
	checkClosedSSH(t, unauth, handshake+5*time.Second)
	limit := 4*keepalive + 5*time.Second
	for _, d := range deaf {
		select {
		case <-d.done:
			if took := d.closedAt.Sub(d.since); took > limit {
				t.Errorf("a logged-in, deaf client was closed after %v, want within %v", took, limit)
			}
		case <-time.After(time.Until(d.since.Add(limit + 3*time.Second))):
			t.Errorf("a logged-in, deaf client is still connected after %v", limit+3*time.Second)
		}
	}
	t.Logf("%d stalled before login, %d logged in and deaf: all closed", len(unauth), len(deaf))
}

// userSigner returns a new key with a user certificate from the CA.
func (ic *inprocCluster) userSigner(name string) ssh.Signer {
	t := ic.t
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ssh.NewSignerFromKey(priv)
	c, err := ic.ca.Admin().Sign(context.Background(), api.AdminSignRequest{Name: name, PublicKey: string(ssh.MarshalAuthorizedKey(key.PublicKey()))})
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewCertSigner(pub.(*ssh.Certificate), key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// deafClient is a logged-in client whose traffic is dropped since since;
// closedAt is set before done is closed.
type deafClient struct {
	since    time.Time
	done     chan struct{}
	closedAt time.Time
}

// holedConn drops every byte either way once holed, but still reports
// the peer's close (EOF, errors), like a peer behind a firewall that
// drops its traffic.
type holedConn struct {
	net.Conn
	holed atomic.Bool
}

func (c *holedConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err != nil || !c.holed.Load() {
			return n, err
		}
	}
}

func (c *holedConn) Write(p []byte) (int, error) {
	if c.holed.Load() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// watchedConn is a connection an SSH client goroutine reads (its
// transport reads all the time): closed is closed when a read fails, so
// the test learns of the server's close without reading itself.
type watchedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(func() { close(c.closed) })
	}
	return n, err
}

// stalledSSH is a stalled connection, when it stalled, and when the
// server closed it (closedAt is set before done is closed).
type stalledSSH struct {
	kind     string
	conn     net.Conn
	since    time.Time
	done     chan struct{}
	closedAt time.Time
}

// watch notes when the server closes the connection, from now on (a
// check that starts late must not read through an expired deadline).
func (s *stalledSSH) watch() {
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		if w, ok := s.conn.(*watchedConn); ok {
			select {
			case <-w.closed:
				s.closedAt = time.Now()
			case <-time.After(30 * time.Second):
			}
			return
		}
		_ = s.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.Copy(io.Discard, s.conn)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			s.closedAt = time.Now()
		}
	}()
}

// openStalledSSH opens n connections of each kind, eight at a time.
func openStalledSSH(t *testing.T, n int, kinds map[string]func() (net.Conn, error)) []*stalledSSH {
	t.Helper()
	var mu sync.Mutex
	var out []*stalledSSH
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
				s := &stalledSSH{kind: kind, conn: c, since: time.Now()}
				s.watch()
				mu.Lock()
				out = append(out, s)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return out
}

// checkClosedSSH fails for every connection the server did not close
// within limit of its stall.
func checkClosedSSH(t *testing.T, conns []*stalledSSH, limit time.Duration) {
	t.Helper()
	worst := map[string]time.Duration{}
	for _, s := range conns {
		var closedAt time.Time
		select {
		case <-s.done:
			closedAt = s.closedAt
		case <-time.After(time.Until(s.since.Add(limit + 3*time.Second))):
		}
		d := closedAt.Sub(s.since)
		switch {
		case closedAt.IsZero():
			t.Errorf("a %s connection is still open %v after it stalled", s.kind, time.Since(s.since).Round(time.Millisecond))
		case d > limit:
			t.Errorf("a %s connection was closed %v after it stalled, want within %v", s.kind, d, limit)
		}
		worst[s.kind] = max(worst[s.kind], d)
	}
	t.Logf("the slowest close per kind: %v", worst)
}

// One address that opens connections and stalls takes at most
// MaxUnauthenticatedPerSource of the handshake slots; a user from
// another address still logs in at once.
func TestProxyPerSourceLimit(t *testing.T) {
	ic := newInprocCluster(t, ca.ServerConfig{}, func(c *sshproxy.Config) {
		c.HandshakeTimeout = 30 * time.Second // only the cap can close them
		c.MaxUnauthenticated, c.MaxUnauthenticatedPerSource = 8, 5
	})
	ic.caadm("roles", "add", "all-root", "--logins", "root", "--labels", "*=*")
	if _, err := ic.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: "alice", Roles: []string{"all-root"}, Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	signer := ic.userSigner("alice")
	from := func(ip string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
		return d.Dial("tcp", ic.proxyAddr)
	}
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for range 5 {
		c, err := from("127.0.0.2")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	time.Sleep(300 * time.Millisecond) // the proxy has accepted them
	extra, err := from("127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a sixth stalled connection from one address was not closed at once: %v", err)
	}
	// The five are still held (no version line sent yet: the proxy sends
	// its own first, so each holds a greeting, not a close).
	for i, c := range held {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 64)
		if n, err := c.Read(b); err != nil || !strings.HasPrefix(string(b[:n]), "SSH-2.0-") {
			t.Fatalf("held connection %d: %q %v", i, b[:n], err)
		}
	}
	eventually(t, 10*time.Second, "alice logs in from another address", func() bool {
		hostCA, _, _, _, err := ssh.ParseAuthorizedKey([]byte(ic.hostCA))
		if err != nil {
			t.Fatal(err)
		}
		cc := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool { return string(k.Marshal()) == string(hostCA.Marshal()) }}
		c, err := ssh.Dial("tcp", ic.proxyAddr, &ssh.ClientConfig{User: "alice", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: cc.CheckHostKey, Timeout: 5 * time.Second})
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}
