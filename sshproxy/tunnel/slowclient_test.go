package tunnel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestSlowClients holds 200 stalled connections on the tunnel listener —
// silent, half a version line, half a key exchange, key exchange done but
// authentication never finished, and 40 established tunnels whose nodes
// went deaf — while a well-behaved node connects at once. The first four
// kinds are closed by HandshakeTimeout, the tunnels by the keepalive
// (KeepaliveMisses unanswered probes).
func TestSlowClients(t *testing.T) {
	t.Parallel()
	const handshake, keepalive, misses = 2 * time.Second, 200 * time.Millisecond, 3
	cl := newCluster(t, "good")
	var deafNames []string
	for i := range 40 {
		name := fmt.Sprintf("deaf%d", i)
		cl.setNode(name, true)
		deafNames = append(deafNames, name)
	}
	hl := new(holeListener)
	var mu sync.Mutex
	downAt := map[string]time.Time{}
	p := cl.startProxy("", func(s *Server) {
		s.HandshakeTimeout, s.KeepaliveInterval, s.KeepaliveMisses = handshake, keepalive, misses
		s.OnChange = func(node string, up bool) {
			if !up {
				mu.Lock()
				if _, ok := downAt[node]; !ok {
					downAt[node] = time.Now()
				}
				mu.Unlock()
			}
		}
	}, func(l net.Listener) net.Listener { hl.Listener = l; return hl })

	// Established tunnels, then every byte either way is dropped while
	// their TCP connections stay open.
	for _, name := range deafNames {
		cl.startNode(p, name, cl.nodeSigner(name), nil)
	}
	waitFor(t, 20*time.Second, "40 tunnels up", func() bool { return len(p.Connected()) == 40 })
	deafSince := time.Now()
	hl.blackhole()

	raw := func(then string) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			c, err := net.Dial("tcp", p.addr)
			if err == nil && then != "" {
				_, err = io.WriteString(c, then)
			}
			return c, err
		}
	}
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	afterKex := func() (net.Conn, error) {
		tc, err := net.Dial("tcp", p.addr)
		if err != nil {
			return nil, err
		}
		nc := &readWatch{Conn: tc, closed: make(chan struct{})}
		kexDone := make(chan struct{})
		checker := &Client{HostCAs: cl.hostCAs}
		cfg := &ssh.ClientConfig{
			Config: baseConfig(), User: "good", HostKeyCallback: checker.checkProxy, HostKeyAlgorithms: hostCertAlgorithms,
			Auth: []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
				close(kexDone)
				<-block
				return nil, errors.New("stalled")
			})},
		}
		go func() { _, _, _, _ = ssh.NewClientConn(nc, p.addr, cfg) }()
		select {
		case <-kexDone:
			return nc, nil
		case <-time.After(10 * time.Second):
			tc.Close()
			return nil, errors.New("no key exchange within 10 s")
		}
	}
	// Each stalled connection is watched from the moment it is open:
	// closedAt is set before done is closed.
	type stall struct {
		kind     string
		conn     net.Conn
		since    time.Time
		done     chan struct{}
		closedAt time.Time
	}
	watch := func(s *stall) {
		defer close(s.done)
		if w, ok := s.conn.(*readWatch); ok {
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
	}
	var stalls []*stall
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for kind, open := range map[string]func() (net.Conn, error){
		"silent TCP":                raw(""),
		"half a version line":       raw("SSH-2.0-Open"),
		"half a key exchange":       raw("SSH-2.0-OpenSSH_9.2\r\n\x00\x00\x04\x00\x0a\x14"),
		"authentication unfinished": afterKex,
	} {
		for range 40 {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				c, err := open()
				if err != nil {
					t.Errorf("opening a %s connection: %v", kind, err)
					return
				}
				t.Cleanup(func() { c.Close() })
				st := &stall{kind: kind, conn: c, since: time.Now(), done: make(chan struct{})}
				go watch(st)
				mu.Lock()
				stalls = append(stalls, st)
				mu.Unlock()
			})
		}
	}
	wg.Wait()

	start := time.Now()
	good := cl.startNode(p, "good", cl.nodeSigner("good"), nil)
	waitFor(t, 10*time.Second, "the well-behaved node's tunnel", func() bool { return good.states.up.Load() == 1 })
	if took := time.Since(start); took > handshake {
		t.Errorf("a well-behaved node among %d stalled connections took %v to connect", len(stalls)+len(deafNames), took)
	}

	// Generous: the machine may be loaded, and without the timeout they
	// would never close.
	limit := handshake + 5*time.Second
	for _, s := range stalls {
		var closedAt time.Time
		select {
		case <-s.done:
			closedAt = s.closedAt
		case <-time.After(time.Until(s.since.Add(limit + 3*time.Second))):
		}
		switch d := closedAt.Sub(s.since); {
		case closedAt.IsZero():
			t.Errorf("a %s connection is still open %v after it stalled", s.kind, time.Since(s.since).Round(time.Millisecond))
		case d > limit:
			t.Errorf("a %s connection was closed %v after it stalled, want within %v", s.kind, d, limit)
		}
	}
	deafLimit := (misses+1)*keepalive + 5*time.Second
	waitFor(t, deafLimit+3*time.Second, "every deaf tunnel closed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(downAt) >= len(deafNames)
	})
	mu.Lock()
	defer mu.Unlock()
	for _, name := range deafNames {
		if d := downAt[name].Sub(deafSince); d > deafLimit {
			t.Errorf("the deaf tunnel of %s was closed after %v, want within %v", name, d, deafLimit)
		}
	}
	if _, ok := downAt["good"]; ok {
		t.Error("the well-behaved node's tunnel went down")
	}
}

// readWatch is a connection an SSH client's transport reads all the time:
// closed is closed when a read fails, so the test learns of the server's
// close without reading itself.
type readWatch struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *readWatch) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.once.Do(func() { close(c.closed) })
	}
	return n, err
}
