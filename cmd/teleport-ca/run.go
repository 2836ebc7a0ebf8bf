package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opensshca/suite/ca"
	"github.com/opensshca/suite/internal/config"
	"github.com/opensshca/suite/internal/logging"
	"github.com/opensshca/suite/internal/metrics"
	"github.com/opensshca/suite/internal/sdnotify"
	"github.com/opensshca/suite/internal/storeflags"
)

type options struct {
	configFile    string
	dataDir       string
	listen        string
	adminSocket   string
	adminGroup    string
	tlsCert       string
	tlsKey        string
	tlsNames      string
	publicURL     string
	keyType       string
	loginPattern  string
	userTTL       time.Duration
	hostTTL       time.Duration
	signInTTL     time.Duration
	maxFailed     int
	lockout       time.Duration
	addrLimit     int
	addrWindow    time.Duration
	recordingMode string
	proxyAddr     string
	uidRange      string
	argonTime     uint
	argonMemory   uint
	argonThreads  uint
	logLevel      string
	storage       storeflags.Options
	timeouts      [4]time.Duration // read header, read, write, idle
	metricsListen string
	recordingsDir string
}

func (o *options) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.configFile, "config", "", "TOML configuration file (keys are the flag names)")
	fs.StringVar(&o.dataDir, "data-dir", "/var/lib/teleport-ca", "directory holding the CA keys and the embedded store (mode 0700)")
	fs.StringVar(&o.listen, "listen", ":3080", "HTTPS API and web address")
	fs.StringVar(&o.adminSocket, "admin-socket", "/run/teleport-ca/admin.sock", "Unix socket for caadm")
	fs.StringVar(&o.adminGroup, "admin-group", "", "group whose members may use the admin socket besides root")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "server certificate (PEM) to use instead of one from the CA's TLS root")
	fs.StringVar(&o.tlsKey, "tls-key", "", "private key for --tls-cert")
	fs.StringVar(&o.tlsNames, "tls-names", "", "comma-separated DNS names and IPs for the self-issued server certificate (default: localhost, 127.0.0.1, ::1 and the host name)")
	fs.StringVar(&o.publicURL, "public-url", "", "base URL users reach the CA at, for links it prints (default https://<host name>:<listen port>)")
	fs.StringVar(&o.keyType, "ca-key-type", "ed25519", "key type for new CA keys: ed25519, ecdsa-p256, ecdsa-p384, rsa-3072, rsa-4096")
	fs.StringVar(&o.loginPattern, "login-pattern", ca.DefaultLoginPattern, "regular expression every login must match")
	fs.DurationVar(&o.userTTL, "user-ttl", time.Hour, "default user certificate lifetime")
	fs.DurationVar(&o.hostTTL, "host-ttl", 24*time.Hour, "default host certificate lifetime")
	fs.DurationVar(&o.signInTTL, "signin-ttl", 12*time.Hour, "sign-in session lifetime")
	fs.IntVar(&o.maxFailed, "max-failed-logins", 5, "failed sign-ins in a row that lock an account")
	fs.DurationVar(&o.lockout, "lockout", 15*time.Minute, "how long that lock lasts")
	fs.IntVar(&o.addrLimit, "signin-limit", 20, "failed sign-ins from one client address within --signin-limit-window that refuse further sign-ins from it until the window ends (-1 disables)")
	fs.DurationVar(&o.addrWindow, "signin-limit-window", 10*time.Minute, "window of --signin-limit")
	fs.StringVar(&o.uidRange, "uid-range", "70000-99999", "uids and gids the CA assigns to personal accounts and role groups on nodes (MIN-MAX; ids are never reused)")
	fs.StringVar(&o.recordingMode, "recording-mode", "proxy", `"proxy": nodes trust only the session CA, so every login passes the recording proxy; "off": nodes trust the user CA`)
	fs.StringVar(&o.proxyAddr, "proxy-addr", "", "public host:port of the SSH proxy that teleport-keyhelper config points clients at")
	fs.UintVar(&o.argonTime, "argon2-time", uint(ca.DefaultArgon2.Time), "argon2id passes for new password hashes")
	fs.UintVar(&o.argonMemory, "argon2-memory", uint(ca.DefaultArgon2.MemoryKiB), "argon2id memory in KiB for new password hashes")
	fs.UintVar(&o.argonThreads, "argon2-threads", uint(ca.DefaultArgon2.Threads), "argon2id lanes for new password hashes")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	o.storage.Flags(fs)
	fs.DurationVar(&o.timeouts[0], "read-header-timeout", ca.DefaultReadHeaderTimeout, "time a client may take for the TLS handshake and a request's headers (HTTPS and admin socket); slower clients are closed")
	fs.DurationVar(&o.timeouts[1], "read-timeout", ca.DefaultReadTimeout, "time a client may take to send a whole request (recording uploads get longer)")
	fs.DurationVar(&o.timeouts[2], "write-timeout", ca.DefaultWriteTimeout, "time the CA may take to answer after a request's headers (long polls get their wait on top; recording downloads get longer)")
	fs.DurationVar(&o.timeouts[3], "idle-timeout", ca.DefaultIdleTimeout, "how long an idle keep-alive or HTTP/2 connection stays open")
	fs.StringVar(&o.recordingsDir, "recordings-dir", "", "directory for uploaded session recordings (default <data-dir>/recordings); replicas on one etcd must share it (a network file system all of them mount)")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "host:port to serve Prometheus metrics on over plain HTTP at /metrics, such as 127.0.0.1:9580 (default off)")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "gen-key-file" {
		return genKeyFile(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("teleport-ca", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: teleport-ca [flags]

Runs the certificate authority: creates or opens the CA keys in --data-dir,
serves the HTTPS API and web pages on --listen and the admin API for caadm
on --admin-socket. The first start prints the TLS pin clients need.

Example:
  teleport-ca --data-dir /var/lib/teleport-ca --listen :3080 \
      --public-url https://ca.example.com:3080

  teleport-ca gen-key-file PATH   writes a new --key-file for --storage etcd

Flags:
`)
		fs.PrintDefaults()
	}
	var o options
	o.flags(fs)
	if err := config.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "teleport-ca: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "teleport-ca: unexpected arguments %q\n", fs.Args())
		return 2
	}
	level, err := logging.ParseLevel(o.logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "teleport-ca: --log-level: %v\n", err)
		return 2
	}
	log := logging.New(stderr, level)
	if err := serve(ctx, o, log, stdout); err != nil {
		log.Error("teleport-ca stopped", "err", err)
		fmt.Fprintf(stderr, "teleport-ca: %v\n", err)
		return 1
	}
	return 0
}

func (o *options) authorityConfig(log *slog.Logger) (ca.Config, error) {
	if o.argonThreads > 255 || o.argonTime > 1<<31 || o.argonMemory > 1<<31 {
		return ca.Config{}, errors.New("argon2 parameters out of range")
	}
	var uidMin, uidMax uint32
	if _, err := fmt.Sscanf(o.uidRange, "%d-%d", &uidMin, &uidMax); err != nil || fmt.Sprintf("%d-%d", uidMin, uidMax) != o.uidRange {
		return ca.Config{}, fmt.Errorf("--uid-range %q is not MIN-MAX, such as 70000-99999", o.uidRange)
	}
	return ca.Config{
		UIDMin:                   uidMin,
		UIDMax:                   uidMax,
		DataDir:                  o.dataDir,
		RecordingsDir:            o.recordingsDir,
		KeyType:                  ca.KeyType(o.keyType),
		Logger:                   log,
		LoginPattern:             o.loginPattern,
		DefaultUserTTL:           o.userTTL,
		HostTTL:                  o.hostTTL,
		SignInTTL:                o.signInTTL,
		MaxFailedLogins:          o.maxFailed,
		LockoutDuration:          o.lockout,
		SignInFailuresPerAddress: o.addrLimit,
		SignInFailureWindow:      o.addrWindow,
		RecordingMode:            o.recordingMode,
		ProxyAddr:                o.proxyAddr,
		PublicURL:                o.publicBase(),
		Argon2:                   ca.Argon2Params{Time: uint32(o.argonTime), MemoryKiB: uint32(o.argonMemory), Threads: uint8(o.argonThreads)},
	}, nil
}

func (o *options) publicBase() string {
	if o.publicURL != "" {
		return o.publicURL
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	_, port, err := net.SplitHostPort(o.listen)
	if err != nil || port == "" {
		port = "3080"
	}
	return "https://" + net.JoinHostPort(host, port)
}

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func serve(ctx context.Context, o options, log *slog.Logger, stdout io.Writer) error {
	cfg, err := o.authorityConfig(log)
	if err != nil {
		return err
	}
	if cfg.Store, cfg.KeyEncryptionKey, err = o.storage.Open(ctx, log); err != nil {
		return err
	}
	if cfg.Store != nil {
		defer cfg.Store.Close() // after a.Close: the authority does not own it
	}
	if cfg.Store != nil && o.recordingsDir == "" {
		log.Warn("recordings are kept in this replica's data dir: other replicas on this etcd cannot serve them; set --recordings-dir to storage all replicas share", "dir", filepath.Join(o.dataDir, "recordings"))
	}
	a, err := ca.New(cfg)
	if err != nil {
		if errors.Is(err, ca.ErrWrongKeyFile) {
			err = fmt.Errorf("--key-file %s: %w", o.storage.KeyFile(), err)
		}
		return err
	}
	defer a.Close()
	switch {
	case a.Created && cfg.KeyEncryptionKey != nil:
		fmt.Fprintf(stdout, "teleport-ca: created a new authority in etcd (prefix %s), its keys encrypted with %s\nCA pin: %s\n", o.storage.Prefix(), o.storage.KeyFile(), a.Pin())
	case a.Created:
		fmt.Fprintf(stdout, "teleport-ca: created a new authority in %s\nCA pin: %s\n", o.dataDir, a.Pin())
	case cfg.KeyEncryptionKey != nil:
		// Every replica says which authority it joined.
		fmt.Fprintf(stdout, "teleport-ca: serving the authority in etcd (prefix %s)\nCA pin: %s\n", o.storage.Prefix(), a.Pin())
	}
	log.Info("authority ready", "data_dir", o.dataDir, "pin", a.Pin(), "new", a.Created)

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	adm, err := listenAdmin(o.adminSocket, o.adminGroup)
	if err != nil {
		ln.Close()
		return err
	}
	defer os.Remove(o.adminSocket)
	srv, err := ca.NewServer(a, ca.ServerConfig{
		Listener: ln, AdminListener: adm, AdminGroup: o.adminGroup,
		TLSNames: splitComma(o.tlsNames), TLSCertFile: o.tlsCert, TLSKeyFile: o.tlsKey,
		ReadHeaderTimeout: o.timeouts[0], ReadTimeout: o.timeouts[1], WriteTimeout: o.timeouts[2], IdleTimeout: o.timeouts[3],
	})
	if err != nil {
		ln.Close()
		adm.Close()
		return err
	}
	mln, err := metrics.Listen(o.metricsListen)
	if err != nil {
		ln.Close()
		adm.Close()
		return err
	}
	go func() {
		if err := metrics.Serve(ctx, mln, a.Metrics(), log); err != nil {
			log.Error("metrics stopped", "err", err)
		}
	}()
	log.Info("serving", "listen", ln.Addr().String(), "admin_socket", o.adminSocket)
	go sdnotify.Watchdog(ctx, func() error { return a.Healthy(ctx) }, log)
	go a.RunSweeper(ctx, 10*time.Minute)
	if err := sdnotify.Ready(); err != nil {
		log.Warn("sd_notify READY failed", "err", err)
	}
	// Tell systemd STOPPING=1 as soon as the signal arrives (shutdown may
	// take a while), and make sure it was sent before exiting.
	notified := make(chan struct{})
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-stop.Done()
		_ = sdnotify.Stopping()
		close(notified)
	}()
	err = srv.Serve(ctx)
	cancel()
	<-notified
	log.Info("shut down")
	return err
}

// listenAdmin opens the admin socket with mode 0600 (0660 and the admin
// group when one is set). The umask is tightened around bind so the
// socket never exists with a looser mode. A stale socket left by a crash
// is replaced; a live one means another teleport-ca runs, and is refused.
func listenAdmin(path, group string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("--admin-socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("--admin-socket %s exists and is not a socket; refusing to replace it (check the path)", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("--admin-socket %s is in use: is another teleport-ca running?", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("--admin-socket: removing stale socket: %w", err)
		}
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("--admin-socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if group != "" {
		if err := chgrpSocket(path, group); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

// genKeyFile is "teleport-ca gen-key-file PATH": a new key file for
// --key-file, never replacing an existing one.
func genKeyFile(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("teleport-ca gen-key-file", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: teleport-ca gen-key-file PATH

Writes 32 random bytes, as 64 hex digits, to the new file PATH (mode 0600,
never replacing an existing file): the key that encrypts the CA keys kept
in etcd (--storage etcd --key-file PATH). Give every replica a copy,
owned by the user teleport-ca runs as, mode 0600, and keep one offline:
without it the CA keys in etcd cannot be opened.
`)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	if err := ca.GenerateKeyFile(fs.Arg(0), rand.Reader); err != nil {
		fmt.Fprintf(stderr, "teleport-ca: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "teleport-ca: wrote a new key file %s; copy it to every replica (mode 0600) and keep a copy offline\n", fs.Arg(0))
	return 0
}
