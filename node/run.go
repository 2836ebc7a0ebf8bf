package node

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/internal/atomicfile"
	"github.com/opensshca/suite/internal/nodedir"
	"github.com/opensshca/suite/internal/sdnotify"
	"github.com/opensshca/suite/sshproxy/tunnel"
)

// DefaultReload makes Debian's sshd re-read its host certificate.
var DefaultReload = []string{"systemctl", "reload", "ssh"}

// RunConfig configures teleport-node run.
type RunConfig struct {
	Dir nodedir.Dir
	// Reload runs after the host certificate changed; empty runs nothing.
	Reload []string
	NSS    NSSConfig
	Log    *slog.Logger
	// PolicyWait is how long the CA may hold a policy request (default
	// 25s, the CA's cap).
	PolicyWait time.Duration
	// RenewCheck is how often the certificates' ages are checked
	// (default 1 minute).
	RenewCheck time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Proxies, when set, are the proxy tunnel addresses to hold tunnels
	// to; empty means the ones the CA lists (followed with the policy).
	Proxies []string
	// SSHDAddr is the only address the tunnels connect to: the node's own
	// sshd (default 127.0.0.1:22).
	SSHDAddr string
	// NoTunnels turns the reverse tunnels off (nodes that the proxies
	// cannot reach otherwise need them; see docs/node.md).
	NoTunnels bool
	// AuditInterval is how often teleport-authkeys' login denials are sent
	// to the CA's audit log (default 10s).
	AuditInterval time.Duration
	// Tunnel tunes the tunnels' keepalives and backoff (zero: defaults).
	TunnelKeepalive  time.Duration
	TunnelMaxBackoff time.Duration
}

// Runner is a running node agent.
type Runner struct {
	cfg  RunConfig
	node nodedir.NodeConfig
	ap   *applier

	mu sync.Mutex
	cl *client.Client // replaced when the TLS identity is renewed

	tunnels atomic.Pointer[tunnel.Pool] // nil until Run, or with NoTunnels
	metrics *nodeMetrics
}

// NewRunner loads the data directory.
func NewRunner(cfg RunConfig) (*Runner, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PolicyWait == 0 {
		cfg.PolicyWait = 25 * time.Second
	}
	if cfg.RenewCheck == 0 {
		cfg.RenewCheck = time.Minute
	}
	if cfg.AuditInterval <= 0 {
		cfg.AuditInterval = 10 * time.Second
	}
	nc, err := cfg.Dir.LoadConfig()
	if err != nil {
		return nil, err
	}
	o, err := lookupOwner(nc.AuthkeysUser)
	if err != nil {
		return nil, err
	}
	if err := makeCacheDir(cfg.Dir, o); err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, node: nc, ap: &applier{dir: cfg.Dir, group: o.gid, nss: cfg.NSS, log: cfg.Log}}
	r.metrics = newNodeMetrics(r)
	if err := r.newClient(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Runner) newClient() error {
	cl, _, err := r.cfg.Dir.Client(r.cfg.PolicyWait + 15*time.Second)
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.cl
	r.cl = cl
	r.mu.Unlock()
	if old != nil {
		old.CloseIdleConnections()
	}
	return nil
}

func (r *Runner) client() *client.Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cl
}

// Run keeps the node current until ctx ends: it renews the certificates
// and follows the policy. It reports readiness to systemd after the first
// attempt to fetch the policy, successful or not, so that a CA outage
// does not hold up boot: sshd answers from the existing cache meanwhile.
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	first := make(chan struct{})
	if !r.cfg.NoTunnels {
		pool := tunnel.NewPool(ctx, tunnel.Client{
			Node: r.node.Name, Signer: r.hostSigner, HostCAs: r.hostCAs, Target: r.cfg.SSHDAddr,
			Clock: r.cfg.Now, Logger: r.cfg.Log.With("part", "tunnel"),
			KeepaliveInterval: r.cfg.TunnelKeepalive, MaxBackoff: r.cfg.TunnelMaxBackoff,
		})
		defer pool.Close()
		r.tunnels.Store(pool)
		if len(r.cfg.Proxies) > 0 {
			pool.Set(r.cfg.Proxies)
		} else if addrs, err := r.loadProxies(); err == nil {
			pool.Set(addrs) // until the CA answers
		}
	}
	wg.Add(3)
	go func() { defer wg.Done(); r.followPolicy(ctx, first) }()
	go func() { defer wg.Done(); r.renewLoop(ctx) }()
	go func() { defer wg.Done(); r.reportDenials(ctx) }()
	select {
	case <-first:
		_ = sdnotify.Ready()
	case <-ctx.Done():
	}
	go sdnotify.Watchdog(ctx, nil, r.cfg.Log)
	wg.Wait()
	_ = sdnotify.Stopping()
	return nil
}

// followPolicy long-polls the CA for the node's policy and applies every
// answer. Errors back off from 1 s up to 30 s.
func (r *Runner) followPolicy(ctx context.Context, first chan struct{}) {
	have := ""
	backoff := time.Second
	once := sync.OnceFunc(func() { close(first) })
	for ctx.Err() == nil {
		p, err := r.client().NodePolicy(ctx, have, r.cfg.PolicyWait)
		r.checkClock()
		if err == nil {
			err = r.ap.apply(p, r.cfg.Now())
		}
		once()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.metrics.policyErrors.Inc()
			var ae *api.Error
			if errors.As(err, &ae) && ae.Code == api.CodeNodeRemoved {
				r.cfg.Log.Error("the CA refuses this node's identity; logins will be refused once the cache is older than teleport-authkeys --max-age", "err", err)
			} else {
				r.cfg.Log.Warn("fetching the login policy failed; retrying", "err", err, "in", backoff)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		r.metrics.policySuccess.Set(float64(r.cfg.Now().Unix()))
		r.metrics.policyUsers.Set(float64(len(p.Users)))
		if p.Hash != have {
			r.cfg.Log.Info("login policy updated", "users", len(p.Users), "revoked", len(p.Revoked), "hash", p.Hash)
			r.followProxies(p.Proxies)
		}
		have, backoff = p.Hash, time.Second
	}
}

// renewLoop renews the host and TLS certificates when two thirds of
// either's life has passed.
func (r *Runner) renewLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.RenewCheck)
	defer t.Stop()
	for {
		if due, why := r.renewDue(); due {
			if err := r.Renew(ctx); err != nil && ctx.Err() == nil {
				r.metrics.renewErrors.Inc()
				r.cfg.Log.Error("renewing the node certificates failed; retrying", "err", err, "because", why)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// renewDue reports whether a certificate has passed two thirds of its
// life (or cannot be read).
func (r *Runner) renewDue() (bool, string) {
	now := r.cfg.Now()
	b, err := os.ReadFile(r.cfg.Dir.Path(nodedir.HostCert))
	if err != nil {
		return true, err.Error()
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	cert, ok := pub.(*ssh.Certificate)
	if err != nil || !ok {
		return true, "host certificate unreadable"
	}
	from, to := time.Unix(int64(cert.ValidAfter), 0), time.Unix(int64(min(cert.ValidBefore, 1<<62)), 0)
	if !now.Before(api.RenewAt(from, to)) {
		return true, "host certificate at 2/3 of its life"
	}
	tb, err := os.ReadFile(r.cfg.Dir.Path(nodedir.IdentityCert))
	if err != nil {
		return true, err.Error()
	}
	blk, _ := pem.Decode(tb)
	if blk == nil {
		return true, "identity certificate unreadable"
	}
	tc, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return true, "identity certificate unreadable"
	}
	if twoThirds(tc.NotBefore, tc.NotAfter, now) {
		return true, "identity certificate at 2/3 of its life"
	}
	return false, ""
}

func twoThirds(from, to, now time.Time) bool {
	return !now.Before(from.Add(to.Sub(from) * 2 / 3))
}

// Renew gets new host and TLS certificates for the node's keys, writes
// what changed and reloads sshd when the host certificate changed.
func (r *Runner) Renew(ctx context.Context) error {
	pub, err := os.ReadFile(r.cfg.Dir.Path(nodedir.HostPub))
	if err != nil {
		return err
	}
	id, err := r.client().RenewNode(ctx, api.NodeRenewRequest{HostPublicKey: strings.TrimSpace(string(pub))})
	if err != nil {
		return err
	}
	hostPub, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		return err
	}
	if err := checkIdentity(id, hostPub, r.node.Pin); err != nil {
		return fmt.Errorf("the CA's answer does not check out: %w", err)
	}
	if err := atomicfile.WriteFile(r.cfg.Dir.Path(nodedir.IdentityCert), []byte(id.TLSCertificate), 0o644); err != nil {
		return err
	}
	if err := r.newClient(); err != nil {
		return err
	}
	certPath := r.cfg.Dir.Path(nodedir.HostCert)
	old, _ := os.ReadFile(certPath)
	data := []byte(id.HostCertificate + "\n")
	if bytes.Equal(old, data) {
		return nil
	}
	if err := atomicfile.WriteFile(certPath, data, 0o644); err != nil {
		return err
	}
	r.cfg.Log.Info("host certificate renewed", "node", id.Name)
	return r.reload(ctx)
}

func (r *Runner) reload(ctx context.Context) error {
	if len(r.cfg.Reload) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.cfg.Reload[0], r.cfg.Reload[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("reload command %q: %w: %s", strings.Join(r.cfg.Reload, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// FetchOnce fetches and applies the policy once (join does this so a
// node answers logins before run starts).
func (r *Runner) FetchOnce(ctx context.Context) error {
	p, err := r.client().NodePolicy(ctx, "", 0)
	if err != nil {
		return err
	}
	return r.ap.apply(p, r.cfg.Now())
}
