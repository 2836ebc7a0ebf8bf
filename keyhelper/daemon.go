package keyhelper

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
)

// DefaultCertTTL is the certificate lifetime the daemon asks for when
// DaemonConfig.CertTTL is zero. The CA caps it by the user's roles and the
// end of the sign-in.
const DefaultCertTTL = time.Hour

// DaemonConfig says how to run the daemon (teleport-keyhelper daemon,
// DESIGN.md section 3, "User, browser"). Zero fields have the documented
// defaults.
type DaemonConfig struct {
	Home   *Home
	Server Server
	// User is the cluster user (--auth): the user of the token, and of
	// the stored identity on later starts.
	User string
	// Token is the single-use keyhelper token (--token), used only when
	// no device identity is stored.
	Token string
	// Pin is the CA's TLS root pin (--ca-pin); empty means the one stored
	// with the identity, or the profile's, or none (the system's roots).
	Pin string
	// CertTTL is the certificate lifetime asked for; zero means
	// DefaultCertTTL.
	CertTTL time.Duration
	// KeyPath names a public key (.pub) to certify, whose private key
	// stays in its file; empty means an ed25519 key made at each start
	// and kept only in memory and in the agent. CertPath is where the
	// certificate goes: by default DefaultCertPath(KeyPath), or the
	// cluster's key-cert.pub without KeyPath.
	KeyPath, CertPath string
	// Hosts are the ssh_config host patterns; nil keeps the profile's.
	Hosts []string
	// AgentSocket is $SSH_AUTH_SOCK; empty means no agent.
	AgentSocket string
	// Log receives what the daemon does; nil is slog.Default().
	Log *slog.Logger
	// Ready is called once, when the device identity is loaded (or has
	// been registered) and the daemon starts talking to the CA; Status
	// with a one-line summary whenever it changes. Nil does nothing. The
	// command sends them to systemd (READY=1, STATUS=).
	Ready  func()
	Status func(string)
	// Clock returns the time; nil is time.Now. Every decision uses it:
	// when to renew, whether a certificate or sign-in has ended.
	Clock func() time.Time
	// Sleep waits for d or until ctx ends; nil is a real timer. The
	// daemon never asks for more than a few seconds at once and reads
	// Clock again after each wait, so a suspended laptop or a clock that
	// jumps is noticed soon after. With the real clock (Clock nil) it
	// also watches the wall clock against the monotonic one, and cuts a
	// wait or a pending request short when they drift apart.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand is the source for keys; nil is crypto/rand.
	Rand io.Reader
	// Jitter returns a random number in [0, n); nil is math/rand/v2.
	Jitter func(n int64) int64
}

// Daemon keeps a registered device's user certificate current while its
// user is signed in on the CA. Make one with NewDaemon.
type Daemon struct {
	cfg     DaemonConfig
	log     *slog.Logger
	key     *identity
	profile *Profile // the cluster's state to write, with the key's paths
	dev     *device
	api     deviceAPI
	// dial makes the client that talks to the CA as dev.
	dial func(dev *device) (deviceAPI, error)
	// watchJumps enables the wall clock watch (real clock only).
	watchJumps bool

	started time.Time    // monotonic, for Healthy
	beat    atomic.Int64 // nanoseconds after started of the last turn

	st     loopState
	status string
}

// deviceAPI is what the daemon asks of the CA once registered;
// *client.Client does it over mutual TLS.
type deviceAPI interface {
	CA(ctx context.Context) (api.CAInfo, error)
	SignInState(ctx context.Context, have api.SignInState, wait time.Duration) (api.SignInState, error)
	DeviceCert(ctx context.Context, req api.DeviceCertRequest) (api.Cert, error)
	RenewDevice(ctx context.Context) (api.DeviceIdentity, error)
}

// requestTimeout bounds a request to the CA other than the sign-in poll.
const requestTimeout = 30 * time.Second

// NewDaemon checks cfg and readies the key to certify. It does not
// contact the CA.
func NewDaemon(cfg DaemonConfig) (*Daemon, error) {
	if err := CheckUser(cfg.User); err != nil {
		return nil, err
	}
	if cfg.Home == nil {
		return nil, errors.New("keyhelper: no state directory")
	}
	if cfg.CertTTL <= 0 {
		cfg.CertTTL = DefaultCertTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	d := &Daemon{cfg: cfg, watchJumps: cfg.Clock == nil, started: time.Now()}
	if d.cfg.Clock == nil {
		d.cfg.Clock = time.Now
	}
	if d.cfg.Sleep == nil {
		d.cfg.Sleep = sleep
	}
	if d.cfg.Rand == nil {
		d.cfg.Rand = rand.Reader
	}
	if d.cfg.Jitter == nil {
		d.cfg.Jitter = randInt64N
	}
	if d.cfg.Ready == nil {
		d.cfg.Ready = func() {}
	}
	if d.cfg.Status == nil {
		d.cfg.Status = func(string) {}
	}
	d.log = cfg.Log.With("server", cfg.Server.Addr(), "user", cfg.User)
	d.dial = d.dialCA
	if err := d.prepareKey(); err != nil {
		return nil, err
	}
	return d, nil
}

// prepareKey loads the key of KeyPath, or makes one in memory, and sets
// the paths of the cluster's state.
func (d *Daemon) prepareKey() error {
	dir := d.cfg.Home.serverDir(d.cfg.Server)
	d.profile = &Profile{Version: profileVersion, Server: d.cfg.Server.URL(), User: d.cfg.User, dir: dir}
	if d.cfg.KeyPath == "" {
		if d.cfg.CertPath != "" {
			return errors.New("keyhelper: --cert-path needs --key-path")
		}
		id, err := newIdentity(d.cfg.Rand, AgentComment(d.cfg.Server, d.cfg.User))
		if err != nil {
			return err
		}
		id.pem = nil // never written: the key lives in memory and in the agent
		d.key = id
		// As with login --confirm: ssh_config names the public key,
		// and ssh finds its private half in the agent.
		d.profile.KeyFile = filepath.Join(dir, pubKeyFile)
		d.profile.CertFile = filepath.Join(dir, certFile)
		return nil
	}
	id, err := loadIdentity(d.cfg.KeyPath, d.cfg.CertPath)
	if err != nil {
		return err
	}
	if id.priv == nil {
		d.log.Warn("the certificate will be written but not added to ssh-agent: "+id.privNote, "cert_path", id.certFile)
	}
	d.key = id
	d.profile.PublicKeyFile, d.profile.CertFile, d.profile.KeyFile = id.pubFile, id.certFile, id.privFile
	if d.profile.KeyFile == "" {
		d.profile.KeyFile = id.pubFile
	}
	return nil
}

// Run loads the device identity, or registers the device with the token,
// and then keeps the certificate current until ctx ends, which is not an
// error. It returns a *RegistrationError when the device must be
// registered (again).
func (d *Daemon) Run(ctx context.Context) error {
	d.setStatus("starting")
	dev, err := d.identity(ctx)
	if err != nil {
		return err
	}
	d.dev = dev
	d.log = d.log.With("device", dev.info.DeviceID)
	if d.api, err = d.dial(dev); err != nil {
		return err
	}
	d.log.Info("device identity loaded", "device_cert_expires", dev.expires(), "cert_path", d.profile.CertFile,
		"key", keyDescription(d.key))
	if d.cfg.AgentSocket == "" {
		d.log.Warn("no ssh-agent ($SSH_AUTH_SOCK is not set): certificates are written to files only" + keyOnlyInAgentNote(d.key))
	}
	d.cfg.Ready()
	return d.loop(ctx)
}

// keyDescription names the key certified, for the log.
func keyDescription(id *identity) string {
	if id.pubFile == "" {
		return "ed25519 key in memory " + ssh.FingerprintSHA256(id.pub)
	}
	return id.pubFile + " " + ssh.FingerprintSHA256(id.pub)
}

func keyOnlyInAgentNote(id *identity) string {
	if id.pubFile == "" {
		return ", and they are of no use: the key made without --key-path lives only in the agent"
	}
	return ""
}

// identity loads the stored device identity, or registers one.
func (d *Daemon) identity(ctx context.Context) (*device, error) {
	dir := d.cfg.Home.deviceDir(d.cfg.Server)
	dev, err := loadDevice(dir)
	switch {
	case errors.Is(err, ErrNotRegistered):
		if d.cfg.Token == "" {
			return nil, &RegistrationError{Msg: strings.TrimPrefix(ErrNotRegistered.Error(), "keyhelper: "), Err: ErrNotRegistered}
		}
		return d.register(ctx, dir)
	case err != nil:
		return nil, err
	}
	if dev.info.User != d.cfg.User {
		return nil, &RegistrationError{Msg: fmt.Sprintf(
			"this device is registered for %s, not %s: run with --auth %s, or remove %s and register again with a token for %s",
			dev.info.User, d.cfg.User, dev.info.User, dir, d.cfg.User)}
	}
	if d.cfg.Token != "" {
		d.log.Info("this device is registered already: --token is not used", "device", dev.info.DeviceID)
	}
	if d.cfg.Pin != "" && d.cfg.Pin != dev.info.Pin {
		d.log.Warn("--ca-pin differs from the pin stored at registration; using and storing --ca-pin", "stored", dev.info.Pin, "pin", d.cfg.Pin)
		dev.info.Pin = d.cfg.Pin
		if err := dev.saveInfo(); err != nil {
			return nil, err
		}
	}
	if now := d.cfg.Clock(); !now.Before(dev.expires()) {
		return nil, expiredDevice(dev)
	}
	return dev, nil
}

func expiredDevice(dev *device) error {
	return &RegistrationError{Msg: fmt.Sprintf(
		"this device's certificate expired at %s (the daemon did not run to renew it, or this machine's clock is wrong): "+
			"check the clock, or remove %s and register again with a new token", dev.expires().Local().Format(timeLayout), dev.dir)}
}

// register exchanges the token for a device identity, retrying while the
// CA cannot be reached. A refusal is final: a token works once.
func (d *Daemon) register(ctx context.Context, dir string) (*device, error) {
	pin := d.cfg.Pin
	if pin == "" {
		if p, err := d.cfg.Home.LoadProfile(d.cfg.Server); err == nil {
			pin = p.Pin
		}
	}
	c, err := client.New(d.cfg.Server.URL(), client.Options{Pin: pin, Timeout: requestTimeout})
	if err != nil {
		return nil, err
	}
	defer c.CloseIdleConnections()
	for failures := 1; ; failures++ {
		d.setStatus("registering this device")
		dev, err := registerDevice(ctx, c, dir, d.cfg.Server, d.cfg.User, d.cfg.Token, pin, d.cfg.Rand, d.cfg.Clock())
		if err == nil {
			d.log.Info("device registered", "device", dev.info.DeviceID, "dir", dir)
			return dev, nil
		}
		var ae *api.Error
		switch {
		case errors.As(err, &ae) && ae.Code == api.CodeForbidden:
			return nil, &RegistrationError{Err: remote(d.cfg.Server, err), Msg: fmt.Sprintf(
				"the CA refused to register this device for %s: %s. A token works once and only for the user it was made for (--auth): "+
					"get a new one with caadm tokens add --role keyhelper --user %s, or with \"Add a keyhelper device\" on the web page",
				d.cfg.User, strings.TrimSuffix(serverMessage(ae.Message), "."), d.cfg.User)}
		case errors.As(err, &ae) && ae.Status < 500 && ae.Code != api.CodeTooMany,
			!retryable(err) || ctx.Err() != nil:
			return nil, remote(d.cfg.Server, err)
		}
		wait := backoff(failures, d.cfg.Jitter)
		d.log.Warn("registering the device failed; retrying", "err", Describe(remote(d.cfg.Server, err)), "retry_in", wait.Round(time.Millisecond))
		d.setStatus("CA unreachable, retrying registration")
		d.sleepUntil(ctx, d.cfg.Clock().Add(wait))
	}
}

// retryable reports whether a failed request may succeed later: not when
// the CA's TLS certificate is not the one trusted.
func retryable(err error) bool {
	var (
		pe  *client.PinMismatchError
		uae x509.UnknownAuthorityError
		he  x509.HostnameError
		ae  *api.Error
	)
	switch {
	case errors.As(err, &pe), errors.As(err, &uae), errors.As(err, &he):
		return false
	case errors.As(err, &ae):
		return ae.Status >= 500 || ae.Code == api.CodeTooMany
	}
	return true
}

// dialCA returns a client that presents dev's certificate. The sign-in
// poll holds a request open for up to maxPollWait, so the timeout leaves
// room for that.
func (d *Daemon) dialCA(dev *device) (deviceAPI, error) {
	pin := dev.info.Pin
	return dev.client(d.cfg.Server, pin, maxPollWait+pollSlack)
}

// Healthy reports whether the daemon's loop is turning: it is an error
// when the loop has been stuck for longer than any wait or request it
// makes can last. It measures real (monotonic) time, whatever the Clock,
// and is meant for the systemd watchdog.
func (d *Daemon) Healthy() error {
	since := time.Since(d.started) - time.Duration(d.beat.Load())
	if since > healthWindow {
		return fmt.Errorf("keyhelper: the daemon's loop has not turned for %v", since.Round(time.Second))
	}
	return nil
}

// alive records that the loop turns.
func (d *Daemon) alive() { d.beat.Store(int64(time.Since(d.started))) }

// setStatus reports msg through Status when it changed.
func (d *Daemon) setStatus(msg string) {
	if msg != d.status {
		d.status = msg
		d.cfg.Status(msg)
	}
}
