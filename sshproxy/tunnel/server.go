package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults for the Server and Client fields left zero.
const (
	DefaultHandshakeTimeout   = 10 * time.Second
	DefaultMaxUnauthenticated = 256
	DefaultKeepaliveInterval  = 30 * time.Second
	DefaultKeepaliveMisses    = 3
)

var (
	// ErrNoTunnel is returned, wrapped, by Server.Dial for a node that has
	// no live tunnel to this proxy.
	ErrNoTunnel = errors.New("no tunnel to node")
	// ErrServerClosed is returned by Server.Serve after Server.Close.
	ErrServerClosed = errors.New("tunnel: server closed")

	// errRefused is what the SSH library gets back from authentication;
	// the peer only learns that authentication failed, the log says why.
	errRefused = errors.New("tunnel: node refused")
)

// Server is the proxy's end: it accepts tunnels from nodes and opens
// channels on them. Set the fields before the first call to Serve and do not
// change them afterwards; funcs may return changing values.
type Server struct {
	// Signer is the proxy's host key, presented to nodes: a certificate
	// signer (ssh.NewCertSigner) for a host certificate from the host CA
	// whose principals include the name nodes dial. Required. It is used
	// for every handshake, so to renew the certificate without dropping
	// tunnels, pass a Signer whose PublicKey returns the current
	// certificate (renewal keeps the key, so signatures do not change).
	Signer ssh.Signer
	// HostCAs returns the current host CA keys; it is called for every
	// authentication and on every keepalive tick, so a CA rotation takes
	// effect without a restart. Required.
	HostCAs func() []ssh.PublicKey
	// IsNode reports whether name is a registered node that has not been
	// removed. It is called for every authentication and, for every
	// tunnel, on every keepalive tick (a removed node's tunnel is closed
	// within one interval), so it must be a fast local lookup. Required.
	IsNode func(name string) bool
	// Clock is used for certificate validity; nil means time.Now.
	Clock func() time.Time
	// Logger receives one line per tunnel up, down, refusal and dropped
	// keepalive; nil discards.
	Logger *slog.Logger
	// HandshakeTimeout bounds the SSH handshake, authentication included;
	// the connection is closed after it. Zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxUnauthenticated is how many handshakes may be in flight at once;
	// connections accepted above it are closed at once. Zero means
	// DefaultMaxUnauthenticated.
	MaxUnauthenticated int
	// KeepaliveInterval is how often the server probes each tunnel and
	// re-checks its node's certificate and registration. Zero means
	// DefaultKeepaliveInterval.
	KeepaliveInterval time.Duration
	// KeepaliveMisses is how many probes in a row may go unanswered before
	// the tunnel is closed. Zero means DefaultKeepaliveMisses.
	KeepaliveMisses int
	// OnChange, if set, is called when a node's tunnel comes up (also when
	// it replaces an older one) and when the node's last tunnel goes down.
	// Calls are made one at a time, in the order of the changes; they must
	// not block for long, and may call Connected and Dial.
	OnChange func(node string, up bool)
	// OnRefused, if set, is called for every node refused at
	// authentication, with the name it gave (cut to 64 bytes), its
	// address and the reason (for the log and the audit log, never for
	// the peer). It must not block for long.
	OnRefused func(node, remote, reason string)

	once    sync.Once
	config  *ssh.ServerConfig
	initErr error
	done    chan struct{}
	wg      sync.WaitGroup

	// eventMu serialises tunnel registration changes with their OnChange
	// calls. It is taken before mu.
	eventMu sync.Mutex

	mu         sync.Mutex
	closed     bool
	listeners  map[net.Listener]struct{}
	handshakes map[net.Conn]struct{}
	tunnels    map[string]*tunnel

	dropped     atomic.Int64 // connections closed over MaxUnauthenticated
	lastDropLog atomic.Int64 // unix nanoseconds
	// slotFree is poked when a handshake ends (see waitForSlot).
	slotFree chan struct{}
}

// tunnel is one node's live connection. It is kept small: the proxy holds
// one per node.
type tunnel struct {
	node  string
	conn  *ssh.ServerConn
	cert  *certInfo
	since time.Time
	probe prober
}

func (s *Server) init() {
	s.once.Do(func() {
		s.done = make(chan struct{})
		s.listeners = make(map[net.Listener]struct{})
		s.handshakes = make(map[net.Conn]struct{})
		s.slotFree = make(chan struct{}, 1)
		s.tunnels = make(map[string]*tunnel)
		switch {
		case s.Signer == nil:
			s.initErr = errors.New("tunnel: Server.Signer is not set")
		case s.HostCAs == nil:
			s.initErr = errors.New("tunnel: Server.HostCAs is not set")
		case s.IsNode == nil:
			s.initErr = errors.New("tunnel: Server.IsNode is not set")
		}
		if s.initErr != nil {
			return
		}
		s.config = &ssh.ServerConfig{
			Config:                  baseConfig(),
			PublicKeyAuthAlgorithms: signatureAlgorithms,
			PublicKeyCallback:       s.authenticate,
			MaxAuthTries:            3,
			ServerVersion:           "SSH-2.0-opensshca-tunnel",
		}
		s.config.AddHostKey(s.Signer)
		s.wg.Add(1)
		go s.keepalive()
	})
}

// Serve accepts tunnels on l until Close, then returns ErrServerClosed. It
// closes l when it returns. Serve may be called on several listeners.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	if s.initErr != nil {
		l.Close()
		return s.initErr
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()

	var delay time.Duration
	for {
		if !s.waitForSlot() {
			return ErrServerClosed
		}
		nc, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			// Out of file descriptors and the like: wait and retry, as
			// net/http does.
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn("tunnel: accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
				case <-s.done:
					return ErrServerClosed
				}
				continue
			}
			return fmt.Errorf("tunnel: accept: %w", err)
		}
		delay = 0
		s.startHandshake(nc)
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// waitForSlot holds off the next Accept while MaxUnauthenticated
// handshakes are in flight, for up to the handshake timeout: connections
// wait in the kernel's listen queue meanwhile, so a burst (every node of
// a fleet reconnecting after a proxy restart) is served as fast as the
// handshakes finish instead of being closed and retried later. Past the
// timeout (stalled clients hold every slot) the next connection is
// accepted and closed, as before. It reports false when the server
// closes.
func (s *Server) waitForSlot() bool {
	deadline := time.NewTimer(s.handshakeTimeout())
	defer deadline.Stop()
	for {
		s.mu.Lock()
		full := len(s.handshakes) >= s.maxUnauthenticated()
		s.mu.Unlock()
		if !full {
			return true
		}
		select {
		case <-s.slotFree:
		case <-deadline.C:
			return true
		case <-s.done:
			return false
		}
	}
}

// startHandshake runs the handshake of nc in a goroutine that then serves
// the tunnel, unless too many handshakes are in flight already.
func (s *Server) startHandshake(nc net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if len(s.handshakes) >= s.maxUnauthenticated() {
		s.mu.Unlock()
		nc.Close()
		s.logDropped(nc.RemoteAddr())
		return
	}
	s.handshakes[nc] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go s.handle(nc)
}

// logDropped logs connections refused over MaxUnauthenticated, at most
// once every 10 seconds, with the count since the last line.
func (s *Server) logDropped(remote net.Addr) {
	n := s.dropped.Add(1)
	now := time.Now().UnixNano()
	last := s.lastDropLog.Load()
	if now-last < int64(10*time.Second) || !s.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	s.dropped.Add(-n)
	s.logger().Warn("tunnel: too many handshakes in flight; closing new connections",
		"max", s.maxUnauthenticated(), "closed", n, "remote", remote.String())
}

// handle runs one connection: handshake, then the tunnel until it closes.
func (s *Server) handle(nc net.Conn) {
	defer s.wg.Done()
	_ = nc.SetDeadline(time.Now().Add(s.handshakeTimeout()))
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.config)
	if err == nil {
		err = nc.SetDeadline(time.Time{})
	}
	s.mu.Lock()
	delete(s.handshakes, nc)
	s.mu.Unlock()
	select {
	case s.slotFree <- struct{}{}:
	default:
	}
	if err != nil {
		nc.Close()
		// Refusals were logged with their reason by authenticate.
		if !wasRefused(err) {
			s.logger().Info("tunnel: handshake failed", "remote", nc.RemoteAddr().String(), "err", err)
		}
		return
	}
	info, ok := conn.Permissions.ExtraData[certInfoKey{}].(*certInfo)
	if !ok { // not reached: authenticate is the only way in
		conn.Close()
		return
	}
	t := &tunnel{node: conn.User(), conn: conn, cert: info, since: time.Now()}
	t.probe.conn = conn
	if !s.register(t) {
		conn.Close()
		return
	}
	s.serveTunnel(t, chans, reqs)
	s.unregister(t, conn.Wait())
}

// register makes t its node's tunnel, replacing and closing any older one.
// It reports false if the server is closed.
func (s *Server) register(t *tunnel) bool {
	s.eventMu.Lock()
	defer s.eventMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	old := s.tunnels[t.node]
	s.tunnels[t.node] = t
	s.mu.Unlock()

	log := s.tunnelLogger(t)
	if old != nil {
		old.conn.Close()
		log.Info("tunnel: node reconnected; closed its previous tunnel",
			"previous_remote", old.conn.RemoteAddr().String())
	}
	log.Info("tunnel: node connected", "key_id", t.cert.keyID, "serial", t.cert.serial)
	if s.OnChange != nil {
		s.OnChange(t.node, true)
	}
	return true
}

// unregister removes t once its connection has ended, unless a newer
// tunnel has replaced it.
func (s *Server) unregister(t *tunnel, err error) {
	s.eventMu.Lock()
	defer s.eventMu.Unlock()
	s.mu.Lock()
	current := s.tunnels[t.node] == t
	if current {
		delete(s.tunnels, t.node)
	}
	s.mu.Unlock()
	if !current {
		return
	}
	s.tunnelLogger(t).Info("tunnel: node disconnected", "err", err,
		"up_for", time.Since(t.since).Round(time.Second).String())
	if s.OnChange != nil {
		s.OnChange(t.node, false)
	}
}

// serveTunnel answers what the node sends until the connection closes: the
// node's keepalives get a reply, other global requests a refusal, and
// channels it opens a rejection. This is the one goroutine the package adds
// per tunnel to those x/crypto runs.
func (s *Server) serveTunnel(t *tunnel, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	for chans != nil || reqs != nil {
		select {
		case nc, ok := <-chans:
			if !ok {
				chans = nil
				continue
			}
			s.tunnelLogger(t).Warn("tunnel: node opened a channel; rejected", "type", nc.ChannelType())
			_ = nc.Reject(ssh.Prohibited, "no channels toward the proxy")
		case r, ok := <-reqs:
			if !ok {
				reqs = nil
				continue
			}
			t.probe.seen()
			_ = r.Reply(r.Type == keepaliveRequest, nil)
		}
	}
}

// keepalive is the one goroutine that probes every tunnel and re-checks its
// node, once per KeepaliveInterval.
func (s *Server) keepalive() {
	defer s.wg.Done()
	tick := time.NewTicker(s.keepaliveInterval())
	defer tick.Stop()
	var ts []*tunnel
	for {
		select {
		case <-s.done:
			return
		case <-tick.C:
		}
		ts = ts[:0]
		s.mu.Lock()
		for _, t := range s.tunnels {
			ts = append(ts, t)
		}
		s.mu.Unlock()
		cas := marshalKeys(s.HostCAs())
		now := s.now()
		for _, t := range ts {
			if reason := s.recheck(t, cas, now); reason != "" {
				s.tunnelLogger(t).Warn("tunnel: closing tunnel", "reason", reason)
				t.conn.Close()
				continue
			}
			if t.probe.tick(s.keepaliveMisses()) {
				s.tunnelLogger(t).Warn("tunnel: node stopped answering keepalives; closing tunnel",
					"misses", s.keepaliveMisses(), "interval", s.keepaliveInterval().String())
				t.conn.Close()
			}
		}
		clear(ts)
	}
}

// recheck says why an established tunnel may no longer stay up: its node
// was removed, its certificate expired or its CA is no longer trusted.
func (s *Server) recheck(t *tunnel, cas [][]byte, now time.Time) string {
	switch {
	case !s.IsNode(t.node):
		return "node no longer registered"
	case !containsKey(cas, t.cert.ca):
		return "certificate authority no longer trusted"
	case t.cert.validBefore != ssh.CertTimeInfinity && uint64(now.Unix()) >= t.cert.validBefore:
		return "host certificate expired"
	}
	return ""
}

// Dial opens a channel on node's tunnel and returns it as a net.Conn
// connected to the node's sshd. meta is sent to the node for its log. It
// returns an error wrapping ErrNoTunnel if the node has no tunnel here, and
// one wrapping *ssh.OpenChannelError if the node refused (Reason
// ssh.ConnectionFailed: its sshd could not be reached).
//
// The connection has CloseWrite (send EOF, keep reading); its deadline
// methods return an error matching errors.ErrUnsupported. Cancelling ctx
// abandons the open; a channel that opens afterwards is closed.
func (s *Server) Dial(ctx context.Context, node string, meta DialRequest) (net.Conn, error) {
	payload, err := encodeDialRequest(meta)
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial %q: %w", node, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tunnel: dial %q: %w", node, err)
	}
	s.init()
	s.mu.Lock()
	t := s.tunnels[node]
	s.mu.Unlock()
	if t == nil {
		return nil, fmt.Errorf("tunnel: dial %q: %w", node, ErrNoTunnel)
	}

	type result struct {
		ch  ssh.Channel
		err error
	}
	// OpenChannel takes no context, so it runs aside; the result is handed
	// over only while Dial still waits for it.
	res := make(chan result)
	go func() {
		ch, reqs, err := t.conn.OpenChannel(ChannelType, payload)
		if err == nil {
			// The node sends no channel requests; they must still be read.
			go ssh.DiscardRequests(reqs)
		}
		select {
		case res <- result{ch, err}:
		case <-ctx.Done():
			if err == nil {
				ch.Close()
			}
		}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return nil, fmt.Errorf("tunnel: dial %q: %w", node, r.err)
		}
		return &channelConn{Channel: r.ch, local: t.conn.LocalAddr(), remote: t.conn.RemoteAddr()}, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("tunnel: dial %q: %w", node, ctx.Err())
	}
}

// Connected returns the sorted names of the nodes with a live tunnel.
func (s *Server) Connected() []string {
	s.init()
	s.mu.Lock()
	names := make([]string, 0, len(s.tunnels))
	for name := range s.tunnels {
		names = append(names, name)
	}
	s.mu.Unlock()
	slices.Sort(names)
	return names
}

// Close stops every Serve, closes every tunnel and connection in handshake,
// and waits for the server's goroutines to end. OnChange is called for
// each node whose tunnel closes.
func (s *Server) Close() error {
	s.init()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	close(s.done)
	var closers []interface{ Close() error }
	for l := range s.listeners {
		closers = append(closers, l)
	}
	for nc := range s.handshakes {
		closers = append(closers, nc)
	}
	for _, t := range s.tunnels {
		closers = append(closers, t.conn)
	}
	s.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
	s.wg.Wait()
	return nil
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return discard
	}
	return s.Logger
}

func (s *Server) tunnelLogger(t *tunnel) *slog.Logger {
	return s.logger().With("node", t.node, "remote", t.conn.RemoteAddr().String())
}

func (s *Server) now() time.Time {
	if s.Clock == nil {
		return time.Now()
	}
	return s.Clock()
}

func (s *Server) handshakeTimeout() time.Duration {
	return orDefault(s.HandshakeTimeout, DefaultHandshakeTimeout)
}

func (s *Server) maxUnauthenticated() int {
	return orDefault(s.MaxUnauthenticated, DefaultMaxUnauthenticated)
}

func (s *Server) keepaliveInterval() time.Duration {
	return orDefault(s.KeepaliveInterval, DefaultKeepaliveInterval)
}

func (s *Server) keepaliveMisses() int {
	return orDefault(s.KeepaliveMisses, DefaultKeepaliveMisses)
}

// orDefault returns v, or def if v is not positive.
func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

var discard = slog.New(slog.DiscardHandler)

// wasRefused reports whether a handshake error comes from authenticate
// refusing the node, which has logged why.
func wasRefused(err error) bool {
	var ae *ssh.ServerAuthError
	return errors.As(err, &ae) && slices.ContainsFunc(ae.Errors, func(e error) bool {
		return errors.Is(e, errRefused)
	})
}
