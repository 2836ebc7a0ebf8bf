// Package ca is the authority of the suite: it holds the user, host and
// session CA keys and the TLS root (DESIGN.md section 2), the users with
// their passwords and TOTP secrets, the roles that map users to logins on
// labelled nodes, join tokens and the audit log, and it issues OpenSSH
// certificates (PROTOCOL.certkeys) through one pipeline: validate → build
// → apply policy → sign → check invariants → store durably → return.
//
// The Authority type is the domain object; Server exposes it over HTTPS
// (the versioned JSON API of package ca/api) and over the root-only admin
// Unix socket that caadm uses.
package ca

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opensshca/suite/ca/store"
)

// Config configures an Authority. The zero value of every field but DataDir
// means the documented default.
type Config struct {
	// DataDir holds the CA keys and, with the default backend, the store.
	DataDir string
	// KeyType of the SSH CA keys made on first start (default ed25519).
	KeyType KeyType
	// Store is the backend; nil opens bbolt at DataDir/state.db.
	Store store.Store
	// KeyEncryptionKey, when set (KeyFileSize bytes, see ReadKeyFile),
	// keeps the CA keys in the store, sealed with it, instead of as files
	// in DataDir: for several replicas on one shared store, which all
	// sign with the keys the first of them made (see sharedkeys.go).
	KeyEncryptionKey []byte
	// RecordingsDir holds uploaded session recordings (default
	// DataDir/recordings). Replicas on one store must share it.
	RecordingsDir string

	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Rand is the randomness source; nil means crypto/rand.
	Rand io.Reader
	// Logger; nil discards.
	Logger *slog.Logger

	// LoginPattern every login must match (default DefaultLoginPattern).
	LoginPattern string
	// DefaultUserTTL of user certificates (default 1h).
	DefaultUserTTL time.Duration
	// HostTTL of host certificates (default 24h).
	HostTTL time.Duration
	// SignInTTL is how long a sign-in session lasts (default 12h).
	SignInTTL time.Duration
	// MaxFailedLogins in a row lock the account (default 5).
	MaxFailedLogins int
	// LockoutDuration of that lock (default 15m).
	LockoutDuration time.Duration
	// SignInFailuresPerAddress failed sign-ins from one client address
	// within SignInFailureWindow refuse further sign-ins from it until the
	// window ends (defaults 20 and 10m; negative disables).
	SignInFailuresPerAddress int
	SignInFailureWindow      time.Duration
	// EnrollTTL is how long an enrollment link is valid (default 24h).
	EnrollTTL time.Duration
	// Argon2 parameters for new password hashes (default DefaultArgon2).
	Argon2 Argon2Params
	// PublicURL is the base of links the CA prints (enrollment), e.g.
	// "https://ca.example.com:3080".
	PublicURL string
	// RecordingMode is "proxy" (default: nodes trust only the session CA)
	// or "off" (nodes trust the user CA).
	RecordingMode string
	// ProxyAddr is the proxy's public "host:port" that clients are told
	// (until proxies register themselves; see the proxy issue).
	ProxyAddr string
	// UIDMin and UIDMax bound the uids and gids the CA assigns to personal
	// accounts and role groups on nodes (default 70000-99999: above the
	// ids Debian gives local users and systemd's dynamic users, below the
	// subordinate ids useradd hands out from 100000).
	UIDMin, UIDMax uint32
	// TOTPIssuer names the cluster in authenticator apps (default
	// "teleport-ca").
	TOTPIssuer string
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.DefaultUserTTL, time.Hour)
	def(&c.HostTTL, 24*time.Hour)
	def(&c.SignInTTL, 12*time.Hour)
	def(&c.LockoutDuration, 15*time.Minute)
	def(&c.EnrollTTL, 24*time.Hour)
	def(&c.SignInFailureWindow, 10*time.Minute)
	if c.SignInFailuresPerAddress == 0 {
		c.SignInFailuresPerAddress = 20
	}
	if c.MaxFailedLogins == 0 {
		c.MaxFailedLogins = 5
	}
	if c.Argon2 == (Argon2Params{}) {
		c.Argon2 = DefaultArgon2
	}
	if c.RecordingMode == "" {
		c.RecordingMode = "proxy"
	}
	if c.TOTPIssuer == "" {
		c.TOTPIssuer = "teleport-ca"
	}
	if c.KeyType == "" {
		c.KeyType = KeyEd25519
	}
	if c.UIDMin == 0 && c.UIDMax == 0 {
		c.UIDMin, c.UIDMax = 70000, 99999
	}
}

func (c *Config) check() error {
	if c.DataDir == "" {
		return errors.New("ca: data dir is not set (--data-dir)")
	}
	if c.KeyEncryptionKey != nil && len(c.KeyEncryptionKey) != KeyFileSize {
		return fmt.Errorf("ca: key-encryption key of %d bytes; want %d", len(c.KeyEncryptionKey), KeyFileSize)
	}
	if err := checkKeyType(c.KeyType); err != nil {
		return fmt.Errorf("ca: --ca-key-type: %w", err)
	}
	if c.RecordingMode != "proxy" && c.RecordingMode != "off" {
		return fmt.Errorf("ca: recording mode %q is not \"proxy\" or \"off\"", c.RecordingMode)
	}
	if c.DefaultUserTTL > HardMaxTTL || c.HostTTL > HardMaxTTL {
		return fmt.Errorf("ca: default certificate lifetimes must not exceed the hard cap of %v", HardMaxTTL)
	}
	if c.DefaultUserTTL < 0 || c.HostTTL < 0 || c.SignInTTL < 0 || c.LockoutDuration < 0 || c.MaxFailedLogins < 0 {
		return errors.New("ca: lifetimes and limits must not be negative")
	}
	if c.UIDMin < 1000 || c.UIDMax < c.UIDMin {
		return fmt.Errorf("ca: uid range %d-%d is not valid: it must start at 1000 or above and not be empty", c.UIDMin, c.UIDMax)
	}
	return c.Argon2.check()
}

// Authority is the certificate authority. It is safe for concurrent use.
type Authority struct {
	cfg     Config
	keys    *keySet
	store   store.Store
	ownsDB  bool
	logins  LoginValidator
	log     *slog.Logger
	rand    io.Reader
	clock   func() time.Time
	hashSem chan struct{} // bounds concurrent argon2 hashing (memory)
	// dummyHash has the configured parameters; see verifyDummy.
	dummyHash string
	// decoded caches hot records by revision; see decodeCache.
	decoded decodeCache
	// throttle limits failed sign-ins per client address.
	throttle addrThrottle
	// policyChanged wakes nodes waiting for their policy to change.
	policyChanged changeNotifier
	stopFollow    context.CancelFunc
	metrics       *caMetrics

	// Created reports whether this start made new CA keys.
	Created bool
}

// New opens (or, on an empty data dir, creates) the authority.
func New(cfg Config) (*Authority, error) {
	cfg.setDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	a := &Authority{cfg: cfg, log: cfg.Logger, rand: cfg.Rand, clock: cfg.Clock}
	a.throttle = addrThrottle{limit: max(cfg.SignInFailuresPerAddress, 0), window: cfg.SignInFailureWindow}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.rand == nil {
		a.rand = rand.Reader
	}
	if a.clock == nil {
		a.clock = time.Now
	}
	a.metrics = newCAMetrics(a)
	var err error
	if a.logins, err = NewLoginValidator(cfg.LoginPattern); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: creating data dir: %w", err)
	}
	if err := checkDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	a.store = cfg.Store
	if a.store == nil {
		b, err := store.OpenBolt(filepath.Join(cfg.DataDir, fileStore), StoreOptions())
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		a.store, a.ownsDB = b, true
	}
	if err := a.openKeys(); err != nil {
		a.Close()
		return nil, err
	}
	a.hashSem = make(chan struct{}, hashConcurrency())
	if a.dummyHash, err = hashPassword("not a password", cfg.Argon2, a.rand); err != nil {
		a.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.stopFollow = cancel
	a.followPolicyInputs(ctx)
	return a, nil
}

// StoreOptions are the bbolt options the authority opens its store with.
// Under load the writer lingers 1 ms so that more concurrent writes share
// one fsync: measured with make bench on 2 cores, the HTTPS issuance rate
// rose from about 5,000 to 7,500 certificates/s and p99 fell, while an
// idle store still commits at once (docs/BENCHMARKS.md).
//
// The watch history is kept small: the CA watches from the current
// revision (policy inputs) or from just after a List (device sign-in), so
// it needs a few events of history, and a larger one only holds memory:
// the soak test saw the CA's RSS rise for ten minutes while the default
// history (10,000 events) filled with certificates and session lists.
func StoreOptions() store.BoltOptions {
	return store.BoltOptions{Linger: time.Millisecond, WatchHistory: 1000, WatchHistoryBytes: 2 << 20}
}

// Close releases the store if the authority opened it.
func (a *Authority) Close() error {
	if a.stopFollow != nil {
		a.stopFollow()
	}
	if a.ownsDB {
		return a.store.Close()
	}
	return nil
}

// Pin is the TLS root pin clients pass as --ca-pin.
func (a *Authority) Pin() string { return a.keys.tls.Pin() }

func (a *Authority) now() time.Time { return a.clock() }

// Healthy reports whether the store answers; the systemd watchdog uses it.
func (a *Authority) Healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := a.store.Get(ctx, "meta/health")
	if errors.Is(err, store.ErrNotFound) {
		err = nil
	}
	return err
}

// PolicyError is returned when roles do not allow what was asked.
type PolicyError struct{ Reason string }

func (e *PolicyError) Error() string { return "ca: not allowed: " + e.Reason }

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func joinList(l []string) string { return strings.Join(l, ",") }
