// Package sshproxy is teleport-proxy, the cluster's SSH jump proxy
// (DESIGN.md sections 2 and 3, Connection and Recording).
//
// Users reach nodes with stock OpenSSH: "ssh -J alice@proxy:3023
// root@node1", or in one hop "ssh -p 3023 root@node1@proxy". The proxy
// accepts only user certificates from the cluster's user CA whose user is
// in the current login policy (followed from the CA by long poll, so a
// lock, removal or revocation cuts sessions off within seconds), finds the
// node (a registered name or principal, or a label query), and reaches it
// through the reverse tunnel the node holds to the proxy (package
// tunnel), so nodes need no open port.
//
// In recording mode "proxy" (the default) the proxy terminates the user's
// inner SSH connection with a host certificate for the node's name from
// the host CA, checks the user's certificate and role again, logs in to
// the node's sshd with a one-to-five-minute session-CA certificate for the
// one login (nodes trust only that CA), and relays every channel and
// request (package relay) while it records each PTY channel as asciicast
// v2 (package recorder) and reports commands, exit codes, transfers and
// forwards as audit events. Recordings are written to the proxy's disk
// first and uploaded to the CA until it has them. In mode "off" the proxy
// passes the byte stream to the node's sshd unopened and records who
// connected where, when and how many bytes.
package sshproxy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/internal/sdnotify"
	"github.com/opensshca/suite/sshproxy/recorder"
	"github.com/opensshca/suite/sshproxy/tunnel"
)

// Config configures a proxy. Zero values mean the documented defaults.
type Config struct {
	// DataDir holds the identity, the cached policy and the recording
	// spool (default /var/lib/teleport-proxy).
	DataDir string
	// Join is used on the first start only, when DataDir holds no
	// identity.
	Join JoinOptions
	// Listen is the SSH address users connect to (default ":3023");
	// TunnelListen the address nodes dial (default ":3024"). Listener and
	// TunnelListener, when set, are used instead (tests, socket
	// activation).
	Listen, TunnelListen     string
	Listener, TunnelListener net.Listener
	// PublicAddr is the "host:port" users reach Listen at; it is
	// registered with the CA and its host is a principal of the proxy's
	// host certificate. TunnelPublicAddr is the same for nodes (default:
	// PublicAddr's host with TunnelListen's port).
	PublicAddr, TunnelPublicAddr string
	// RecordInput records what users type ("i" events); off by default,
	// since input holds passwords typed at prompts.
	RecordInput bool
	// OnRecordingFailure is "refuse" (default: no new recorded session
	// while recordings cannot be written, and a session whose recording
	// fails is closed) or "continue" (carry on unrecorded, with an audit
	// event).
	OnRecordingFailure string
	// DNSFallback lets users of a role that selects every node reach
	// hosts that are not registered, by DNS name, in recording mode off
	// only (in mode proxy the proxy must present a host certificate for
	// the target, which only registered nodes have). Off by default.
	DNSFallback bool
	// MinRecordingFree is the free space the recording directory must
	// have for a new recorded session (default 64 MiB).
	MinRecordingFree int64
	// HandshakeTimeout bounds an unauthenticated connection (default 10s);
	// MaxUnauthenticated caps how many may be in flight (default 512).
	HandshakeTimeout   time.Duration
	MaxUnauthenticated int
	// MaxUnauthenticatedPerSource caps those from one IP address (default
	// 64; negative disables), so that one source cannot take them all.
	MaxUnauthenticatedPerSource int
	// ClientKeepalive is how often idle clients are probed (default 30s;
	// three misses close the connection).
	ClientKeepalive time.Duration
	// NodeKeepalive and NodeKeepaliveMisses tune the tunnels' liveness
	// checks (default 30s and 3).
	NodeKeepalive       time.Duration
	NodeKeepaliveMisses int
	// MaxPolicyAge bounds how long after the CA last confirmed the
	// policy the proxy still signs session certificates itself while the
	// CA is unreachable (default 1h, like teleport-authkeys' --max-age on
	// the nodes, which deny after it anyway).
	MaxPolicyAge time.Duration
	// PolicyWait is how long one policy long poll is held (default 25s).
	PolicyWait time.Duration
	// ReportInterval is how often active sessions are re-reported to the
	// CA (default 10s; the CA keeps a report for six intervals).
	ReportInterval time.Duration
	Logger         *slog.Logger
	Clock          func() time.Time
}

func (c *Config) setDefaults() error {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Listen == "" {
		c.Listen = ":3023"
	}
	if c.TunnelListen == "" {
		c.TunnelListen = ":3024"
	}
	if c.PublicAddr == "" {
		return errors.New("--public-addr is required: the host:port users reach this proxy at (its host goes into the proxy's host certificate)")
	}
	host, _, err := net.SplitHostPort(c.PublicAddr)
	if err != nil {
		return fmt.Errorf("--public-addr %q is not host:port", c.PublicAddr)
	}
	if c.TunnelPublicAddr == "" {
		_, port, err := net.SplitHostPort(c.TunnelListen)
		if c.TunnelListener != nil {
			_, port, err = net.SplitHostPort(c.TunnelListener.Addr().String())
		}
		if err != nil {
			return fmt.Errorf("--tunnel-listen %q is not host:port", c.TunnelListen)
		}
		c.TunnelPublicAddr = net.JoinHostPort(host, port)
	}
	switch c.OnRecordingFailure {
	case "":
		c.OnRecordingFailure = "refuse"
	case "refuse", "continue":
	default:
		return fmt.Errorf("--on-recording-failure %q is not refuse or continue", c.OnRecordingFailure)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HandshakeTimeout, 10*time.Second)
	def(&c.ClientKeepalive, 30*time.Second)
	def(&c.NodeKeepalive, 30*time.Second)
	def(&c.PolicyWait, 25*time.Second)
	def(&c.MaxPolicyAge, time.Hour)
	def(&c.ReportInterval, 10*time.Second)
	if c.MaxUnauthenticated <= 0 {
		c.MaxUnauthenticated = 512
	}
	if c.MaxUnauthenticatedPerSource == 0 {
		c.MaxUnauthenticatedPerSource = 64
	}
	if c.NodeKeepaliveMisses <= 0 {
		c.NodeKeepaliveMisses = 3
	}
	if c.MinRecordingFree <= 0 {
		c.MinRecordingFree = 64 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return nil
}

// Proxy is a running teleport-proxy.
type Proxy struct {
	cfg Config
	log *slog.Logger
	id  *identity

	cl         atomic.Pointer[client.Client]
	pol        atomic.Pointer[policy]
	hostSigner atomic.Pointer[ssh.Signer]
	polReady   chan struct{}
	polOnce    sync.Once

	tunnels    *tunnel.Server
	targets    *targetCache
	sessionKey ssh.Signer // signs in to nodes with session certificates
	// sessionSigning signs session certificates while the CA is
	// unreachable (sessionsign.go); caFailed is when the CA last failed
	// to answer for one (Unix ns; 0 once it answers again).
	sessionSigning ssh.Signer
	caFailed       atomic.Int64
	spool          *recorder.Spool
	events         *auditQueue
	sessions       *registry
	metrics        *proxyMetrics
	// polContact is when the CA last answered a policy poll (Unix s).
	polContact atomic.Int64

	listener, tunnelListener net.Listener
}

// New loads (or, on first start, joins) the proxy's identity and opens
// its listeners. Run serves.
func New(ctx context.Context, cfg Config) (*Proxy, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger, polReady: make(chan struct{})}
	p.metrics = newProxyMetrics(p) // its gauges read p's parts at scrape time, after New
	id, err := loadOrJoin(ctx, cfg.DataDir, cfg.Join, cfg.PublicAddr, cfg.TunnelPublicAddr)
	if err != nil {
		return nil, err
	}
	p.id = id
	if err := p.newClient(); err != nil {
		return nil, err
	}
	signer, err := id.hostSigner()
	if err != nil {
		return nil, err
	}
	p.hostSigner.Store(&signer)
	_, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if p.sessionKey, err = ssh.NewSignerFromKey(sk); err != nil {
		return nil, err
	}
	if p.sessionSigning, err = loadOrCreateSessionSigner(cfg.DataDir); err != nil {
		return nil, err
	}
	if p.targets, err = newTargetCache(p); err != nil {
		return nil, err
	}
	recDir := filepath.Join(cfg.DataDir, dirRecordings)
	if err := os.MkdirAll(recDir, 0o700); err != nil {
		return nil, err
	}
	p.spool = &recorder.Spool{
		Dir: recDir, Logger: p.log.With("part", "recordings"), Clock: cfg.Clock,
		Upload: func(ctx context.Context, id string, r io.Reader, size int64) error {
			return p.cl.Load().UploadRecording(ctx, id, r, size)
		},
	}
	if err := p.spool.Recover(); err != nil {
		p.log.Error("recovering recordings left by a crash", "err", err)
	}
	p.events = newAuditQueue(p)
	p.sessions = newRegistry(p)
	p.tunnels = &tunnel.Server{
		Signer:            renewingSigner{p},
		HostCAs:           p.hostCAs,
		IsNode:            p.isNode,
		Clock:             cfg.Clock,
		Logger:            p.log.With("part", "tunnels"),
		HandshakeTimeout:  cfg.HandshakeTimeout,
		KeepaliveInterval: cfg.NodeKeepalive,
		KeepaliveMisses:   cfg.NodeKeepaliveMisses,
		OnChange: func(node string, up bool) {
			p.log.Info("tunnel", "node", node, "up", up)
		},
		OnRefused: p.refusedTunnel,
	}
	if p.listener = cfg.Listener; p.listener == nil {
		if p.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listening for users: %w", err)
		}
	}
	if p.tunnelListener = cfg.TunnelListener; p.tunnelListener == nil {
		if p.tunnelListener, err = net.Listen("tcp", cfg.TunnelListen); err != nil {
			p.listener.Close()
			return nil, fmt.Errorf("listening for node tunnels: %w", err)
		}
	}
	return p, nil
}

// Name is the proxy's cluster name.
func (p *Proxy) Name() string { return p.id.cfg.Name }

// Addr is the address the SSH listener is bound to.
func (p *Proxy) Addr() net.Addr { return p.listener.Addr() }

// TunnelAddr is the address the tunnel listener is bound to.
func (p *Proxy) TunnelAddr() net.Addr { return p.tunnelListener.Addr() }

func (p *Proxy) newClient() error {
	c, err := client.New(p.id.cfg.Server, client.Options{Pin: p.id.cfg.Pin, ClientCert: p.id.tls, Timeout: p.cfg.PolicyWait + 15*time.Second})
	if err != nil {
		return err
	}
	p.cl.Store(c)
	return nil
}

func (p *Proxy) currentHostSigner() ssh.Signer { return *p.hostSigner.Load() }

func (p *Proxy) hostCAs() []ssh.PublicKey {
	if pol := p.pol.Load(); pol != nil {
		return []ssh.PublicKey{pol.hostCA}
	}
	return nil
}

func (p *Proxy) isNode(name string) bool {
	pol := p.pol.Load()
	return pol != nil && pol.known(name)
}

// Run serves until ctx ends. It re-registers the proxy's addresses with
// the CA (renewing its certificates), follows the policy, accepts users
// and node tunnels, uploads recordings and reports sessions.
func (p *Proxy) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := p.renew(ctx); err != nil {
		p.log.Warn("renewing the proxy's certificates at start failed; using the ones on disk", "err", err)
	}
	if pol, err := loadPolicy(filepath.Join(p.cfg.DataDir, filePolicy)); err == nil {
		p.polContact.Store(loadConfirmed(p.cfg.DataDir))
		p.setPolicy(pol)
		p.log.Info("loaded the cached policy; following the CA for changes", "generated", pol.raw.Generated)
	}
	var wg sync.WaitGroup
	goRun := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	goRun(func() { p.followPolicy(ctx) })
	goRun(func() { p.renewLoop(ctx) })
	goRun(func() { _ = p.spool.Run(ctx) })
	goRun(func() { p.events.run(ctx) })
	goRun(func() { p.sessions.run(ctx) })
	select {
	case <-p.polReady:
	case <-ctx.Done():
		wg.Wait()
		return ctx.Err()
	}
	goRun(func() {
		if err := p.tunnels.Serve(p.tunnelListener); err != nil && ctx.Err() == nil {
			p.log.Error("tunnel listener stopped", "err", err)
			cancel()
		}
	})
	goRun(func() {
		if err := p.serve(ctx); err != nil && ctx.Err() == nil {
			p.log.Error("ssh listener stopped", "err", err)
			cancel()
		}
	})
	_ = sdnotify.Ready()
	go sdnotify.Watchdog(ctx, func() error { return nil }, p.log)
	p.log.Info("teleport-proxy serving", "name", p.Name(), "listen", p.listener.Addr().String(), "tunnels", p.tunnelListener.Addr().String(), "public", p.cfg.PublicAddr)
	<-ctx.Done()
	_ = sdnotify.Stopping()
	p.listener.Close()
	p.tunnels.Close()
	p.sessions.closeAll()
	wg.Wait()
	return nil
}

func (p *Proxy) setPolicy(pol *policy) {
	p.pol.Store(pol)
	p.polOnce.Do(func() { close(p.polReady) })
}

// followPolicy keeps the policy current with the CA's long poll, caches
// it on disk, and cuts off sessions the new policy no longer allows.
func (p *Proxy) followPolicy(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		have := ""
		if cur := p.pol.Load(); cur != nil {
			have = cur.raw.Hash
		}
		raw, err := p.cl.Load().ProxyPolicy(ctx, have, p.cfg.PolicyWait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Warn("following the CA's policy failed; keeping the current one", "err", err, "retry_in", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		backoff = time.Second
		p.confirmPolicy()
		p.caFailed.Store(0)
		if raw.Hash == have {
			continue
		}
		pol, err := newPolicy(raw)
		if err != nil {
			p.log.Error("the CA sent a policy the proxy cannot use; keeping the current one", "err", err)
			sleep(ctx, 5*time.Second)
			continue
		}
		p.setPolicy(pol)
		if err := pol.save(filepath.Join(p.cfg.DataDir, filePolicy)); err != nil {
			p.log.Warn("caching the policy", "err", err)
		}
		p.sessions.enforce(pol)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// renew renews the proxy's certificates and re-registers its addresses.
func (p *Proxy) renew(ctx context.Context) error {
	if err := p.id.renew(ctx, p.cl.Load(), p.cfg.DataDir, p.cfg.PublicAddr, p.cfg.TunnelPublicAddr, authorizedKey(p.sessionSigning.PublicKey())); err != nil {
		return err
	}
	id, err := loadIdentity(p.cfg.DataDir)
	if err != nil {
		return err
	}
	p.id = id
	signer, err := id.hostSigner()
	if err != nil {
		return err
	}
	p.hostSigner.Store(&signer)
	return p.newClient()
}

// renewLoop renews at two thirds of the host certificate's life.
func (p *Proxy) renewLoop(ctx context.Context) {
	for ctx.Err() == nil {
		c := p.id.hostCert
		after, before := time.Unix(int64(c.ValidAfter), 0), time.Unix(int64(c.ValidBefore), 0)
		due := api.RenewAt(after, before)
		wait := max(due.Sub(p.cfg.Clock()), 30*time.Second)
		sleep(ctx, wait)
		if ctx.Err() != nil {
			return
		}
		if err := p.renew(ctx); err != nil {
			p.log.Warn("renewing the proxy's certificates failed; retrying", "err", err)
			continue
		}
		p.log.Info("renewed the proxy's certificates")
	}
}

// policyNow returns the current policy; the proxy serves only once it
// has one.
func (p *Proxy) policyNow() *policy { return p.pol.Load() }

// userCertChecker checks user certificates against the current policy.
func (p *Proxy) userCertChecker(pol *policy) *ssh.CertChecker {
	return &ssh.CertChecker{
		IsUserAuthority: func(k ssh.PublicKey) bool { return keysEqual(k, pol.userCA) },
		IsRevoked:       func(c *ssh.Certificate) bool { return pol.isRevoked("user", c.Serial) },
		Clock:           p.cfg.Clock,
	}
}

func keysEqual(a, b ssh.PublicKey) bool {
	return a != nil && b != nil && string(a.Marshal()) == string(b.Marshal())
}

// nodeHostKeyCallback verifies a node's sshd: a host certificate from the
// host CA naming the node, not revoked.
func (p *Proxy) nodeHostKeyCallback(pol *policy, node api.ProxyNode) ssh.HostKeyCallback {
	cc := &ssh.CertChecker{
		IsHostAuthority: func(k ssh.PublicKey, _ string) bool { return keysEqual(k, pol.hostCA) },
		IsRevoked:       func(c *ssh.Certificate) bool { return pol.isRevoked("host", c.Serial) },
		Clock:           p.cfg.Clock,
	}
	return func(_ string, remote net.Addr, key ssh.PublicKey) error {
		return cc.CheckHostKey(net.JoinHostPort(node.Name, "22"), remote, key)
	}
}

// renewingSigner presents the proxy's current host certificate: renewal
// replaces the certificate, not the key, so one long-lived server (the
// tunnel listener) shows nodes the renewed certificate at once.
type renewingSigner struct{ p *Proxy }

func (s renewingSigner) cur() ssh.Signer { return s.p.currentHostSigner() }

func (s renewingSigner) PublicKey() ssh.PublicKey { return s.cur().PublicKey() }

func (s renewingSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	return s.cur().Sign(rand, data)
}

func (s renewingSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	if as, ok := s.cur().(ssh.AlgorithmSigner); ok {
		return as.SignWithAlgorithm(rand, data, algorithm)
	}
	return nil, fmt.Errorf("sshproxy: host key cannot sign with %s", algorithm)
}

func (s renewingSigner) Algorithms() []string {
	if ms, ok := s.cur().(ssh.MultiAlgorithmSigner); ok {
		return ms.Algorithms()
	}
	return []string{s.cur().PublicKey().Type()}
}
