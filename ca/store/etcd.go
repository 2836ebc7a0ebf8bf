package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var _ Store = (*Etcd)(nil)

// Defaults for the zero values of EtcdOptions fields.
const (
	defaultEtcdTimeout = 5 * time.Second
	// etcdKeepAlive is how often an idle connection is probed, so that a
	// watch on a member that vanished without closing the connection is
	// resumed on another one. The server accepts probes every 5 s or
	// more (--grpc-keepalive-min-time).
	etcdKeepAlive = 10 * time.Second
	// etcdMaxReconnectDelay caps the wait between attempts to reconnect
	// to a member that went away (gRPC's default cap is two minutes).
	etcdMaxReconnectDelay = 2 * time.Second
)

// EtcdOptions configures OpenEtcd.
type EtcdOptions struct {
	// Endpoints are the client URLs of the etcd members, such as
	// "https://etcd1.example.com:2379". At least one is required. A URL
	// without a scheme ("host:2379") uses TLS if a TLS file is set.
	Endpoints []string
	// Prefix is put before every key, so that several CA clusters, or
	// other users, share one etcd; List and Watch return keys without it.
	// It must end in "/" so that "/ca1/" never shares keys with "/ca10/".
	// "" uses the whole keyspace.
	Prefix string
	// CAFile is the PEM file of the CAs that sign the members'
	// certificates. "" with https:// endpoints trusts the system's roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and key (PEM)
	// presented to an etcd run with --client-cert-auth. Both or neither.
	CertFile, KeyFile string
	// Username and Password authenticate to an etcd with auth enabled;
	// the user needs read-write permission on Prefix. "" means no auth.
	Username, Password string
	// DialTimeout bounds OpenEtcd's first exchange with the cluster,
	// which checks that it is reachable, that TLS and the credentials are
	// accepted and that the user may read Prefix. Zero means 5 s.
	DialTimeout time.Duration
	// RequestTimeout bounds each request, and so how long a call waits
	// for a cluster without quorum. Zero means 5 s.
	RequestTimeout time.Duration
	// WatchBuffer is the channel buffer of each watcher; a watcher whose
	// buffer is full when an event arrives is dropped, as with bbolt.
	// Zero means 256.
	WatchBuffer int
}

// Etcd is a Store kept in an etcd cluster through its official v3 client.
// Every key lives under EtcdOptions.Prefix. A write is one etcd
// transaction and returns once the cluster has committed it (a quorum of
// members has it in its log); Item.Revision is the key's etcd
// ModRevision and the store revision is etcd's, shared with everything
// else in that cluster, so revisions advance by one per write but need
// not start at zero. Reads are linearizable.
type Etcd struct {
	cli      *clientv3.Client
	prefix   string
	timeout  time.Duration // of each request
	watchBuf int

	// For error messages.
	endpoints  string
	user       string
	dialWindow time.Duration

	mu        sync.RWMutex // orders calls against Close
	closed    bool
	inflight  sync.WaitGroup // calls under way
	watchCtx  context.Context
	stopWatch context.CancelFunc // cancels watchCtx, ending every watch
	watchers  sync.WaitGroup     // watch goroutines
	closeOnce sync.Once
	closeErr  error
}

// OpenEtcd connects to the etcd cluster opts names and checks, within
// opts.DialTimeout, that it answers a read of opts.Prefix: so a wrong
// endpoint, TLS setting, password or permission is reported here, by an
// error that says what to check, and not at the first write.
func OpenEtcd(ctx context.Context, opts EtcdOptions) (*Etcd, error) {
	cfg, err := opts.clientConfig()
	if err != nil {
		return nil, err
	}
	e := &Etcd{
		prefix:     opts.Prefix,
		timeout:    orDefault(opts.RequestTimeout, defaultEtcdTimeout),
		endpoints:  strings.Join(opts.Endpoints, ", "),
		user:       opts.Username,
		watchBuf:   opts.WatchBuffer,
		dialWindow: cfg.DialTimeout,
	}
	if e.watchBuf <= 0 {
		e.watchBuf = defaultWatchBuffer
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if err := e.probe(cctx, cfg); err != nil {
		return nil, e.openError(ctx, err)
	}
	// New authenticates, when a user is set, within cfg.DialTimeout.
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, e.openError(ctx, err)
	}
	_, err = cli.Get(cctx, e.rangeStart(""), clientv3.WithRange(e.rangeEnd("")), clientv3.WithLimit(1), clientv3.WithKeysOnly())
	if err != nil {
		cli.Close()
		return nil, e.openError(ctx, err)
	}
	e.cli = cli
	e.watchCtx, e.stopWatch = context.WithCancel(context.Background())
	return e, nil
}

// probe checks that the cluster answers a read, without credentials. It
// goes around the etcd client's error handling, which reduces a timeout
// to "context deadline exceeded", so that the error says what failed: a
// refused connection, a certificate the server or client would not
// accept. A refusal for want of credentials means the cluster answered.
func (e *Etcd) probe(ctx context.Context, cfg clientv3.Config) error {
	cfg.Username, cfg.Password = "", ""
	cli, err := clientv3.New(cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	req := &etcdserverpb.RangeRequest{Key: []byte(e.rangeStart("")), Limit: 1, KeysOnly: true}
	_, err = etcdserverpb.NewKVClient(cli.ActiveConnection()).Range(ctx, req, grpc.WaitForReady(true))
	if err == nil {
		return nil
	}
	var answer rpctypes.EtcdError
	if errors.As(rpctypes.Error(err), &answer) {
		return nil
	}
	return err
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// clientConfig checks opts and returns the client configuration.
func (opts *EtcdOptions) clientConfig() (clientv3.Config, error) {
	if len(opts.Endpoints) == 0 {
		return clientv3.Config{}, errors.New("store: etcd: no endpoints given")
	}
	if opts.Prefix != "" && !strings.HasSuffix(opts.Prefix, "/") {
		return clientv3.Config{}, fmt.Errorf("store: etcd: key prefix %q must end in \"/\"", opts.Prefix)
	}
	if (opts.Username == "") != (opts.Password == "") {
		return clientv3.Config{}, errors.New("store: etcd: a user name needs a password, and a password a user name")
	}
	if (opts.CertFile == "") != (opts.KeyFile == "") {
		return clientv3.Config{}, errors.New("store: etcd: a client certificate needs its key, and a key its certificate")
	}
	useTLS := opts.CAFile != "" || opts.CertFile != ""
	for _, ep := range opts.Endpoints {
		scheme, rest, found := strings.Cut(ep, "://")
		switch {
		case !found && ep != "" && !strings.Contains(ep, "/"):
		case found && rest != "" && (scheme == "http" || scheme == "https"):
			useTLS = useTLS || scheme == "https"
		default:
			return clientv3.Config{}, fmt.Errorf("store: etcd endpoint %q is not a client URL such as https://etcd1.example.com:2379", ep)
		}
	}
	cfg := clientv3.Config{
		Endpoints:            opts.Endpoints,
		Username:             opts.Username,
		Password:             opts.Password,
		DialTimeout:          orDefault(opts.DialTimeout, defaultEtcdTimeout),
		DialKeepAliveTime:    etcdKeepAlive,
		DialKeepAliveTimeout: orDefault(opts.RequestTimeout, defaultEtcdTimeout),
		Logger:               zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: etcdMaxReconnectDelay},
			MinConnectTimeout: orDefault(opts.DialTimeout, defaultEtcdTimeout),
		})},
	}
	if !useTLS {
		return cfg, nil
	}
	for _, ep := range opts.Endpoints {
		if strings.HasPrefix(ep, "http://") {
			return clientv3.Config{}, fmt.Errorf("store: etcd endpoint %s is plain http:// but TLS is set (a CA, client certificate or https:// endpoint): use https:// for every endpoint", ep)
		}
	}
	tc, err := opts.tlsConfig()
	if err != nil {
		return clientv3.Config{}, err
	}
	cfg.TLS = tc
	return cfg, nil
}

func (opts *EtcdOptions) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CAFile != "" {
		b, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("store: etcd CA file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("store: etcd CA file %s holds no PEM certificate", opts.CAFile)
		}
	}
	if opts.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("store: etcd client certificate %s and key %s: %w", opts.CertFile, opts.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// openError says what to check when the first exchange with the cluster
// failed.
func (e *Etcd) openError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("store: connecting to etcd at %s: %w", e.endpoints, ctx.Err())
	}
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return fmt.Errorf("store: etcd at %s refused user %q: wrong user name or password (%w)", e.endpoints, e.user, err)
	case errors.Is(err, rpctypes.ErrUserEmpty):
		return fmt.Errorf("store: etcd at %s has authentication enabled: give a user name and password (%w)", e.endpoints, err)
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return fmt.Errorf("store: etcd at %s: user %q may not read the keys under %q: grant it a role with readwrite permission on that prefix (%w)", e.endpoints, e.user, e.prefix, err)
	}
	return fmt.Errorf("store: etcd at %s did not answer within %v: check that etcd runs there, that these are its client URLs, "+
		"and that the TLS settings match the server's (https:// endpoints, CA file, client certificate and key): %w", e.endpoints, e.dialWindow, err)
}

// begin admits a call unless ctx is done or the store closed; the caller
// must call e.inflight.Done when it has finished.
func (e *Etcd) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return ErrClosed
	}
	e.inflight.Add(1)
	return nil
}

// requestError wraps an error of a request on key with what it means.
func (e *Etcd) requestError(key string, value []byte, err error) error {
	s, _ := status.FromError(err)
	switch {
	case errors.Is(err, rpctypes.ErrRequestTooLarge), s.Code() == codes.ResourceExhausted:
		return fmt.Errorf("store: %q: value of %d bytes is too large for etcd (its --max-request-bytes, 1.5 MiB by default): %w", key, len(value), err)
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return fmt.Errorf("store: %q: etcd user %q lacks permission on %q: %w", key, e.user, e.prefix, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("store: %q: %w", key, err)
	}
	return fmt.Errorf("store: %q: etcd at %s: %w", key, e.endpoints, err)
}

// Close implements Store. Calls under way finish first (each within
// RequestTimeout); later ones fail with ErrClosed. Every watcher's channel
// is closed before Close returns.
func (e *Etcd) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		e.mu.Unlock()
		e.inflight.Wait()
		e.stopWatch()
		e.watchers.Wait()
		if err := e.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			e.closeErr = fmt.Errorf("store: closing etcd client: %w", err)
		}
	})
	return e.closeErr
}
