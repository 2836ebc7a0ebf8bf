package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults for the Client fields left zero (and see DefaultKeepaliveInterval
// and DefaultKeepaliveMisses).
const (
	DefaultTarget     = "127.0.0.1:22"
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = time.Minute
)

// ErrNodeRefused is returned, wrapped, to OnState when the proxy refused the
// node's login; the proxy's log says why.
var ErrNodeRefused = errors.New("tunnel: proxy refused the node's host certificate (is the node registered under this name, and is its certificate current and signed by the host CA?)")

const (
	// connectTimeout bounds the TCP connect to the proxy, and separately
	// the SSH handshake with it.
	connectTimeout = 10 * time.Second
	// targetDialTimeout bounds the node's connect to its own sshd.
	targetDialTimeout = 10 * time.Second
	// stableAfter is how long a connection must have lived for the backoff
	// to start again from MinBackoff.
	stableAfter = time.Minute
)

// Client is the node's end: it keeps one tunnel to one proxy up and, for
// every channel the proxy opens on it, connects to Target. Set the fields
// before Run and do not change them afterwards.
type Client struct {
	// Node is the node's registered name, sent as the SSH user name; it
	// must be a principal of the node's host certificate. Required.
	Node string
	// ProxyAddr is the host:port of the proxy's tunnel listener. Its host
	// part must be a principal of the proxy's host certificate. Required.
	ProxyAddr string
	// Signer returns the node's host key with its host certificate
	// (ssh.NewCertSigner). It is called for every connection attempt, so a
	// renewed certificate is used from the next connection on. Required.
	Signer func() (ssh.Signer, error)
	// HostCAs returns the current host CA keys, which must have signed the
	// proxy's host certificate. Required.
	HostCAs func() []ssh.PublicKey
	// Target is the only address the node connects to for the proxy:
	// its own sshd. Empty means DefaultTarget.
	Target string
	// Clock is used for certificate validity; nil means time.Now.
	Clock func() time.Time
	// Logger receives one line per connection, loss, refusal and session;
	// nil discards.
	Logger *slog.Logger
	// KeepaliveInterval is how often the node sends keepalive@openssh.com
	// with want-reply. Zero means DefaultKeepaliveInterval.
	KeepaliveInterval time.Duration
	// KeepaliveMisses is how many keepalives in a row may go unanswered
	// before the connection is declared dead and closed. Zero means
	// DefaultKeepaliveMisses.
	KeepaliveMisses int
	// MinBackoff and MaxBackoff bound the wait before reconnecting. The
	// n-th wait in a row is drawn uniformly from [MinBackoff,
	// min(MaxBackoff, MinBackoff·2ⁿ)] (full jitter, floored at MinBackoff
	// so that a node never spins); the count restarts after a connection
	// that lived a minute. Zero means DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// OnState, if set, is called with (true, nil) when a tunnel is up and
	// with (false, err) when an attempt fails or a tunnel is lost; Run
	// makes the calls one at a time.
	OnState func(connected bool, err error)
}

// Run keeps the tunnel up, reconnecting with backoff, until ctx is done; it
// then closes the tunnel and returns ctx.Err(). It returns at once if a
// required field is not set.
func (c *Client) Run(ctx context.Context) error {
	if err := c.validate(); err != nil {
		return err
	}
	log := c.logger().With("proxy", c.ProxyAddr, "node", c.Node)
	failures := 0
	for {
		upSince, err := c.connect(ctx, log)
		if ctx.Err() != nil {
			if !upSince.IsZero() {
				c.onState(false, ctx.Err())
			}
			return ctx.Err()
		}
		if !upSince.IsZero() && time.Since(upSince) >= stableAfter {
			failures = 0
		}
		wait := c.backoff(failures)
		failures++
		msg := "tunnel: cannot connect to proxy"
		if !upSince.IsZero() {
			msg = "tunnel: lost tunnel to proxy"
		}
		log.Warn(msg, "err", err, "retry_in", wait.Round(time.Millisecond).String())
		c.onState(false, err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Client) validate() error {
	switch {
	case c.Node == "":
		return errors.New("tunnel: Client.Node is not set")
	case c.ProxyAddr == "":
		return errors.New("tunnel: Client.ProxyAddr is not set")
	case c.Signer == nil:
		return errors.New("tunnel: Client.Signer is not set")
	case c.HostCAs == nil:
		return errors.New("tunnel: Client.HostCAs is not set")
	}
	return nil
}

// connect makes one connection to the proxy and serves it until it ends.
// It returns when the tunnel came up, or the zero time if it did not.
func (c *Client) connect(ctx context.Context, log *slog.Logger) (upSince time.Time, err error) {
	signer, err := c.Signer()
	if err != nil {
		return time.Time{}, fmt.Errorf("tunnel: host key: %w", err)
	}
	if signer == nil {
		return time.Time{}, errors.New("tunnel: no host key")
	}
	if cert, ok := signer.PublicKey().(*ssh.Certificate); !ok || cert.CertType != ssh.HostCert {
		return time.Time{}, errors.New("tunnel: host key has no host certificate")
	}
	d := net.Dialer{Timeout: connectTimeout}
	nc, err := d.DialContext(ctx, "tcp", c.ProxyAddr)
	if err != nil {
		return time.Time{}, fmt.Errorf("tunnel: connect to proxy: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	_ = nc.SetDeadline(time.Now().Add(connectTimeout))
	conn, chans, reqs, err := ssh.NewClientConn(nc, c.ProxyAddr, &ssh.ClientConfig{
		Config:            baseConfig(),
		User:              c.Node,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   c.checkProxy,
		HostKeyAlgorithms: hostCertAlgorithms,
		ClientVersion:     "SSH-2.0-opensshca-tunnel",
	})
	if err != nil {
		nc.Close()
		// x/crypto has no typed error for this; its message is stable.
		if strings.Contains(err.Error(), "unable to authenticate") {
			return time.Time{}, fmt.Errorf("%w as %q: %v", ErrNodeRefused, c.Node, err)
		}
		return time.Time{}, fmt.Errorf("tunnel: handshake with proxy: %w", err)
	}
	_ = nc.SetDeadline(time.Time{})
	upSince = time.Now()
	log.Info("tunnel: connected to proxy")
	c.onState(true, nil)
	return upSince, c.serve(ctx, conn, chans, reqs, log)
}

// serve answers the proxy on one connection until it ends: keepalives both
// ways, and a connection to Target for every dial channel.
func (c *Client) serve(ctx context.Context, conn ssh.Conn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, log *slog.Logger) error {
	connCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &prober{conn: conn}
	done := make(chan struct{})
	keepaliveErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for r := range reqs {
			p.seen()
			_ = r.Reply(r.Type == keepaliveRequest, nil)
		}
	}()
	go func() {
		defer wg.Done()
		keepaliveErr <- c.keepalive(conn, p, done)
	}()
	for nc := range chans {
		if nc.ChannelType() != ChannelType {
			log.Warn("tunnel: proxy opened an unsupported channel; rejected", "type", nc.ChannelType())
			_ = nc.Reject(ssh.UnknownChannelType, "unsupported channel type")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.handleDial(connCtx, nc, log)
		}()
	}
	err := conn.Wait()
	close(done)
	cancel() // ends the sessions still spliced over this connection
	wg.Wait()
	if kerr := <-keepaliveErr; kerr != nil {
		err = kerr
	}
	return fmt.Errorf("tunnel: connection to proxy lost: %w", err)
}

// keepalive probes the proxy every KeepaliveInterval until done, and closes
// conn after KeepaliveMisses unanswered probes in a row.
func (c *Client) keepalive(conn ssh.Conn, p *prober, done <-chan struct{}) error {
	interval, misses := orDefault(c.KeepaliveInterval, DefaultKeepaliveInterval), orDefault(c.KeepaliveMisses, DefaultKeepaliveMisses)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-t.C:
			if p.tick(misses) {
				conn.Close()
				return fmt.Errorf("tunnel: proxy did not answer %d keepalives %v apart", misses, interval)
			}
		}
	}
}

// handleDial serves one dial channel: it connects to Target and splices the
// two, or rejects the channel if Target cannot be reached.
func (c *Client) handleDial(ctx context.Context, nc ssh.NewChannel, log *slog.Logger) {
	req, err := decodeDialRequest(nc.ExtraData())
	if err != nil {
		log.Warn("tunnel: bad dial request; rejected", "err", err)
		_ = nc.Reject(ssh.Prohibited, "bad dial request")
		return
	}
	target := c.Target
	if target == "" {
		target = DefaultTarget
	}
	log = log.With("session_id", req.SessionID, "user", req.User, "client", req.ClientAddr, "target", target)
	d := net.Dialer{Timeout: targetDialTimeout}
	tc, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		log.Warn("tunnel: cannot reach target; dial rejected", "err", err)
		_ = nc.Reject(ssh.ConnectionFailed, "cannot connect to sshd")
		return
	}
	ch, chReqs, err := nc.Accept()
	if err != nil {
		tc.Close()
		log.Warn("tunnel: accepting dial channel", "err", err)
		return
	}
	go ssh.DiscardRequests(chReqs)
	log.Info("tunnel: session started")
	splice(ctx, ch, tc)
	log.Info("tunnel: session ended")
}

// splice copies between a channel and a connection both ways. EOF on one
// side is passed on as a half-close of the other; an error, or ctx ending,
// closes both.
func splice(ctx context.Context, ch ssh.Channel, tc net.Conn) {
	abort := func() {
		ch.Close()
		tc.Close()
	}
	stop := context.AfterFunc(ctx, abort)
	defer stop()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if _, err := io.Copy(ch, tc); err != nil {
			abort()
			return
		}
		_ = ch.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		if _, err := io.Copy(tc, ch); err != nil {
			abort()
			return
		}
		if hc, ok := tc.(interface{ CloseWrite() error }); ok {
			_ = hc.CloseWrite()
		} else {
			abort()
		}
	}()
	wg.Wait()
	abort()
}

// backoff returns the wait before reconnecting after n failures in a row.
func (c *Client) backoff(n int) time.Duration {
	lo := orDefault(c.MinBackoff, DefaultMinBackoff)
	hi := max(orDefault(c.MaxBackoff, DefaultMaxBackoff), lo)
	// The first retry is spread too (lo to 2*lo): after a proxy restart
	// every node retries at once otherwise, and thousands of handshakes
	// arriving together overrun the proxy's cap on them (proxybench row
	// 7r saw 2,850 failed attempts from 2,000 nodes).
	ceil := min(2*lo, hi)
	for i := 0; i < n && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	return lo + rand.N(ceil-lo+1)
}

func (c *Client) onState(connected bool, err error) {
	if c.OnState != nil {
		c.OnState(connected, err)
	}
}

func (c *Client) logger() *slog.Logger {
	if c.Logger == nil {
		return discard
	}
	return c.Logger
}
