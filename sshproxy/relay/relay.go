package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Channel types and request names the relay knows.
const (
	chanSession           = "session"
	chanDirectTCPIP       = "direct-tcpip"
	chanForwardedTCPIP    = "forwarded-tcpip"
	chanAgent             = "auth-agent@openssh.com"
	chanX11               = "x11"
	chanDirectStreamLocal = "direct-streamlocal@openssh.com"

	reqTCPIPForward       = "tcpip-forward"
	reqCancelTCPIPForward = "cancel-tcpip-forward"
	reqStreamLocalForward = "streamlocal-forward@openssh.com"
	reqNoMoreSessions     = "no-more-sessions@openssh.com"
	reqKeepalive          = "keepalive@openssh.com"
	reqEOW                = "eow@openssh.com"
)

// Permissions are what the user's role allows beyond a plain command or
// shell. They mirror the permit-* extensions of OpenSSH user certificates
// (PROTOCOL.certkeys); the zero value allows none of them.
type Permissions struct {
	// AgentForwarding allows auth-agent-req@openssh.com on sessions and
	// auth-agent@openssh.com channels from the node to the client.
	AgentForwarding bool
	// PortForwarding allows direct-tcpip channels from the client (ssh -L,
	// -W, -D), tcpip-forward and cancel-tcpip-forward global requests
	// (ssh -R), and forwarded-tcpip channels from the node to the client.
	PortForwarding bool
	// X11Forwarding allows x11-req on sessions and x11 channels from the
	// node to the client.
	X11Forwarding bool
	// PTY allows pty-req on sessions.
	PTY bool
}

// Config configures one [Relay].
type Config struct {
	// Permissions gate every forward and PTY request.
	Permissions Permissions
	// Observer receives session events and forward audits; nil observes
	// nothing.
	Observer Observer
	// Logger receives the relay's log, which names channels and request
	// types but never payloads (commands, environment values, X11
	// cookies). Give it per-connection attributes (user, session id,
	// node). Nil discards.
	Logger *slog.Logger
	// KeepaliveInterval is how often the relay sends keepalive@openssh.com
	// to the client, as sshd's ClientAliveInterval does; 0 sends none. The
	// client's own keepalives are answered either way.
	KeepaliveInterval time.Duration
	// KeepaliveCountMax is how many intervals a keepalive may go
	// unanswered before Relay drops the connection with
	// [ErrKeepaliveTimeout]; 0 means 3, as sshd's ClientAliveCountMax.
	KeepaliveCountMax int
}

var (
	// ErrNodeClosed is returned (wrapping the connection's error) when the
	// node's side of the connection ended first.
	ErrNodeClosed = errors.New("relay: node closed the connection")
	// ErrKeepaliveTimeout is returned when the client stopped answering
	// keepalives.
	ErrKeepaliveTimeout = errors.New("relay: client stopped answering keepalives")
)

// drainTimeout bounds how long Relay lets channels pass on what the node
// sent before it closed the connection (exit status, last output) before
// it closes the client's connection.
const drainTimeout = 5 * time.Second

// Relay joins the client's connection in (with the channel and request
// streams from ssh.NewServerConn) to the node's connection out until one
// of them closes or ctx is done, and then closes both. It returns nil when
// the client closed the connection, an error wrapping [ErrNodeClosed] when
// the node did, [ErrKeepaliveTimeout], or ctx's error.
//
// Relay claims out's "forwarded-tcpip", "auth-agent@openssh.com" and "x11"
// channel opens ([ssh.Client.HandleChannelOpen]); nothing else may handle
// them. When Relay returns, every channel is closed and no Observer call is
// running or will follow.
func Relay(ctx context.Context, in ssh.Conn, inChans <-chan ssh.NewChannel, inReqs <-chan *ssh.Request, out *ssh.Client, cfg Config) error {
	r := &relay{
		in:    in,
		out:   out,
		perms: cfg.Permissions,
		obs:   &observer{o: cfg.Observer},
		log:   cfg.Logger,
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	// Claim the node's channel types before any request reaches the node,
	// so that none is rejected by ssh.Client's default handler.
	for _, typ := range []string{chanForwardedTCPIP, chanAgent, chanX11} {
		opens := out.HandleChannelOpen(typ)
		if opens == nil {
			r.log.Warn("relay: node channel type already handled elsewhere", "type", typ)
			continue
		}
		r.wg.Add(1)
		go r.serveNodeChannels(opens)
	}
	r.wg.Add(2)
	go r.serveClientChannels(inChans)
	go r.serveGlobalRequests(inReqs)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ended := make(chan error, 3)
	go func() {
		err := in.Wait()
		r.log.Debug("relay: client connection ended", "err", err)
		ended <- nil
	}()
	go func() {
		err := out.Wait()
		ended <- fmt.Errorf("%w: %v", ErrNodeClosed, err)
	}()
	if cfg.KeepaliveInterval > 0 {
		n := cfg.KeepaliveCountMax
		if n <= 0 {
			n = 3
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			if err := r.keepalive(ctx, cfg.KeepaliveInterval, n); err != nil {
				ended <- err
			}
		}()
	}

	var err error
	select {
	case <-ctx.Done():
		err = ctx.Err()
	case err = <-ended:
	}
	if errors.Is(err, ErrNodeClosed) {
		// Let the channels pass on what the node sent before it went.
		select {
		case <-r.active.idle():
		case <-time.After(drainTimeout):
		case <-ctx.Done():
		}
	}
	r.log.Debug("relay: closing", "err", err)
	cancel()
	_ = in.Close()
	_ = out.Close()
	r.wg.Wait()
	return err
}

// relay is one joined connection.
type relay struct {
	in    ssh.Conn
	out   *ssh.Client
	perms Permissions
	obs   *observer
	log   *slog.Logger

	wg             sync.WaitGroup // every goroutine Relay waits for
	active         counter        // running channel handlers
	sessions       atomic.Int64   // session channel IDs handed out
	noMoreSessions atomic.Bool
}

// goChannel runs f as a channel handler. Callers hold a count in r.wg
// themselves, so Add never happens at zero while Relay waits.
func (r *relay) goChannel(f func()) {
	r.wg.Add(1)
	r.active.add(1)
	go func() {
		defer r.wg.Done()
		defer r.active.add(-1)
		f()
	}()
}

// serveClientChannels handles channel opens from the client.
func (r *relay) serveClientChannels(opens <-chan ssh.NewChannel) {
	defer r.wg.Done()
	for nc := range opens {
		switch nc.ChannelType() {
		case chanSession:
			r.goChannel(func() { r.handleSession(nc) })
		case chanDirectTCPIP:
			r.goChannel(func() { r.handleDirectTCPIP(nc) })
		case chanDirectStreamLocal:
			path := "(malformed)"
			if p, err := parseStreamLocalChannel(nc.ExtraData()); err == nil {
				path = p.Path
			}
			r.obs.forward(KindStreamLocal, path, false)
			r.log.Info("relay: refused unix socket forward", "type", nc.ChannelType())
			_ = nc.Reject(ssh.Prohibited, "unix socket forwarding not permitted")
		default:
			r.log.Info("relay: refused unknown channel type", "type", nc.ChannelType())
			_ = nc.Reject(ssh.UnknownChannelType, "unknown channel type")
		}
	}
}

// serveNodeChannels handles channel opens from the node.
func (r *relay) serveNodeChannels(opens <-chan ssh.NewChannel) {
	defer r.wg.Done()
	for nc := range opens {
		r.goChannel(func() { r.handleNodeChannel(nc) })
	}
}

// serveGlobalRequests answers the client's global requests, one at a time
// because replies go back in order (RFC 4254 section 4).
func (r *relay) serveGlobalRequests(reqs <-chan *ssh.Request) {
	defer r.wg.Done()
	for req := range reqs {
		r.globalRequest(req)
	}
}

func (r *relay) globalRequest(req *ssh.Request) {
	switch req.Type {
	case reqTCPIPForward, reqCancelTCPIPForward:
		r.tcpipForward(req)
	case reqNoMoreSessions:
		// Honoured here, as sshd does (serverloop.c): later session
		// channels are refused.
		r.noMoreSessions.Store(true)
		_ = req.Reply(true, nil)
	case reqStreamLocalForward:
		path := "(malformed)"
		if p, err := parseStreamLocalForward(req.Payload); err == nil {
			path = p.Path
		}
		r.obs.forward(KindStreamLocal, path, false)
		r.log.Info("relay: refused unix socket remote forward")
		_ = req.Reply(false, nil)
	default:
		// keepalive@openssh.com is answered here; unknown requests are
		// never passed to the node.
		if req.Type != reqKeepalive {
			r.log.Debug("relay: refused global request", "type", req.Type)
		}
		_ = req.Reply(false, nil)
	}
}

// tcpipForward relays a tcpip-forward or cancel-tcpip-forward request
// (ssh -R) if the role allows port forwarding. The node binds the port and
// applies its own sshd_config (AllowTcpForwarding, GatewayPorts).
func (r *relay) tcpipForward(req *ssh.Request) {
	fr, err := parseForwardRequest(req.Payload)
	if err != nil {
		r.log.Info("relay: refused malformed global request", "type", req.Type, "err", err)
		_ = req.Reply(false, nil)
		return
	}
	log := r.log.With("type", req.Type, "addr", hostPort(fr.Addr, fr.Port))
	if !r.perms.PortForwarding {
		if req.Type == reqTCPIPForward {
			r.obs.forward(KindTCPIPForward, hostPort(fr.Addr, fr.Port), false)
		}
		log.Info("relay: refused remote forward: port forwarding not permitted")
		_ = req.Reply(false, nil)
		return
	}
	ok, payload, err := r.out.SendRequest(req.Type, req.WantReply, req.Payload)
	if err != nil {
		log.Debug("relay: relaying global request", "err", err)
		ok = false
	}
	if req.Type == reqTCPIPForward {
		port := fr.Port
		if rep, err := parseForwardReply(payload); ok && port == 0 && err == nil {
			port = rep.Port
		}
		r.obs.forward(KindTCPIPForward, hostPort(fr.Addr, port), true)
	}
	log.Debug("relay: relayed global request", "ok", ok)
	_ = req.Reply(ok, payload)
}

// keepalive sends keepalive@openssh.com to the client every interval and
// fails when one goes unanswered for countMax intervals.
func (r *relay) keepalive(ctx context.Context, interval time.Duration, countMax int) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		replied := make(chan error, 1)
		go func() {
			// Any reply, success or failure, shows the client is there.
			_, _, err := r.in.SendRequest(reqKeepalive, true, nil)
			replied <- err
		}()
		timeout := time.NewTimer(time.Duration(countMax) * interval)
		select {
		case err := <-replied:
			timeout.Stop()
			if err != nil {
				return nil // the connection is gone; in.Wait reports it
			}
		case <-timeout.C:
			return ErrKeepaliveTimeout
		case <-ctx.Done():
			timeout.Stop()
			return nil
		}
	}
}

// rejectLike rejects nc the way the node rejected the matching channel, or
// with a generic reason when the node could not be asked.
func rejectLike(nc ssh.NewChannel, err error) {
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) {
		_ = nc.Reject(oce.Reason, oce.Message)
		return
	}
	_ = nc.Reject(ssh.ConnectionFailed, "node unavailable")
}

// counter counts running goroutines and tells when none are left.
type counter struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0; nil if nobody waits
}

func (c *counter) add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += d
	if c.n == 0 && c.zero != nil {
		close(c.zero)
		c.zero = nil
	}
}

// idle returns a channel closed once no goroutine is counted.
func (c *counter) idle() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.zero == nil {
		c.zero = make(chan struct{})
		if c.n == 0 {
			close(c.zero)
			ch := c.zero
			c.zero = nil
			return ch
		}
	}
	return c.zero
}
