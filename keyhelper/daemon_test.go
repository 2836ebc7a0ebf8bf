package keyhelper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/testbin"
)

// These tests run the daemon in-process against a real teleport-ca
// process and a real ssh-agent; sign-ins use codes from the real
// oathtool. cmd/teleport-keyhelper runs the built binary through the web
// sign-in form.

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.RemoveAll()
	os.Exit(code)
}

// cluster is a real teleport-ca.
type cluster struct {
	ca     *testbin.CA
	server Server
}

func startCluster(t *testing.T, cfg testbin.Config) *cluster {
	t.Helper()
	ca := testbin.Start(t, cfg)
	s, err := ParseServer(ca.URL())
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{ca: ca, server: s}
}

func testPassword(user string) string { return "pw of " + user + ", long enough" }

// addUser creates an active user who may log in as itself and returns
// the TOTP secret.
func (c *cluster) addUser(t *testing.T, name string) string {
	t.Helper()
	resp, err := c.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: name, Logins: []string{name}, Password: testPassword(name)})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.OTPAuthURI)
	if err != nil || u.Query().Get("secret") == "" {
		t.Fatalf("otpauth URI %q: %v", resp.OTPAuthURI, err)
	}
	return u.Query().Get("secret")
}

// token makes a single-use keyhelper token for user, as caadm tokens add
// --role keyhelper does.
func (c *cluster) token(t *testing.T, user string) string {
	t.Helper()
	resp, err := c.ca.Admin().AddToken(context.Background(), api.AddTokenRequest{Role: "keyhelper", User: user})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Secret
}

// signIn signs user in through the API with the code of the time at (a
// user's second sign-in within 30 s needs at+30s: a code works once).
func (c *cluster) signIn(t *testing.T, user, secret string, at time.Time) api.LoginResponse {
	t.Helper()
	resp, err := c.ca.HTTPS().Login(context.Background(), api.LoginRequest{User: user, Password: testPassword(user), TOTP: totp(t, secret, at)})
	if err != nil {
		t.Fatalf("sign-in of %s: %v", user, err)
	}
	return resp
}

// totp computes the code of the time at with the real oathtool.
func totp(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	if _, err := exec.LookPath("oathtool"); err != nil {
		t.Skip("oathtool not installed; .ci/run installs it")
	}
	out, err := exec.Command("oathtool", "--totp", "-b", "-N", "@"+strconv.FormatInt(at.Unix(), 10), secret).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// daemonRun is a daemon running in-process.
type daemonRun struct {
	home  *Home
	ready chan struct{}
	done  chan error
	log   *testbin.Buffer
	// status collects the Status lines, one per line.
	status *testbin.Buffer
	stop   context.CancelFunc
}

// startDaemon runs a daemon for user with cfg's other fields. It is
// stopped when the test ends, and its log shown if the test failed.
func (c *cluster) startDaemon(t *testing.T, home *Home, user string, cfg DaemonConfig) *daemonRun {
	t.Helper()
	r := &daemonRun{home: home, ready: make(chan struct{}), done: make(chan error, 1), log: new(testbin.Buffer), status: new(testbin.Buffer)}
	cfg.Home, cfg.Server, cfg.User = home, c.server, user
	cfg.Log = slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Ready = func() { close(r.ready) }
	cfg.Status = func(msg string) { fmt.Fprintln(r.status, msg) }
	d, err := NewDaemon(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("the daemon did not stop within 10 s of its context's end")
		}
		if t.Failed() {
			t.Logf("daemon log (%s):\n%s", user, r.log)
		}
	})
	return r
}

func newHome(t *testing.T) *Home {
	t.Helper()
	h, err := OpenHome(filepath.Join(t.TempDir(), ".teleport"), true)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// waitReady waits for the daemon to load or register its identity.
func (r *daemonRun) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-r.ready:
	case err := <-r.done:
		t.Fatalf("the daemon ended before it was ready: %v\n%s", err, r.log)
	case <-time.After(10 * time.Second):
		t.Fatalf("the daemon was not ready within 10 s:\n%s", r.log)
	}
}

// result waits for Run to return.
func (r *daemonRun) result(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(within):
		t.Fatalf("the daemon still runs after %v:\n%s", within, r.log)
		return nil
	}
}

// eventually polls cond until it holds, failing the test after within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// agentCerts returns the cluster's certificates in the agent, as the real
// ssh-add -L lists them.
func (c *cluster) agentCerts(t *testing.T, ag *testbin.Agent) []*ssh.Certificate {
	t.Helper()
	var out []*ssh.Certificate
	for _, line := range ag.Keys(t) {
		pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			t.Fatalf("ssh-add -L line %q: %v", line, err)
		}
		if cert, ok := pub.(*ssh.Certificate); ok && strings.HasPrefix(comment, AgentComment(c.server, "")) {
			out = append(out, cert)
		}
	}
	return out
}

// serials returns the serials of certs.
func serials(certs []*ssh.Certificate) []uint64 {
	var out []uint64
	for _, c := range certs {
		out = append(out, c.Serial)
	}
	return out
}

// fileCert returns the certificate at path, or nil.
func fileCert(path string) *ssh.Certificate {
	c, err := readCert(path)
	if err != nil {
		return nil
	}
	return c
}

// Registration: a token works once, for its user only; the identity is
// stored privately and later starts need no token; a stored identity is
// for its user only; without a token or identity, or a trusted CA, the
// daemon says what to do and does not retry.
func TestDaemonRegistration(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testbin.Config{})
	c.addUser(t, "alice")
	c.addUser(t, "bob")

	t.Run("token once", func(t *testing.T) {
		t.Parallel()
		tok := c.token(t, "alice")
		first := newHome(t)
		r := c.startDaemon(t, first, "alice", DaemonConfig{Token: tok, Pin: c.ca.Pin})
		r.waitReady(t)
		r.stop()
		if err := r.result(t, 10*time.Second); err != nil {
			t.Fatalf("stopped daemon: %v", err)
		}
		dir := first.deviceDir(c.server)
		for _, f := range []string{"", deviceKeyFile, deviceCertFile, deviceRootFile, deviceInfoFile} {
			fi, err := os.Stat(filepath.Join(dir, f))
			want := os.FileMode(0o600)
			if f == "" {
				want = 0o700 | os.ModeDir
			}
			if err != nil || fi.Mode() != want {
				t.Errorf("%s: %v, mode %v, want %v", filepath.Join(dir, f), err, fi.Mode(), want)
			}
		}
		dev, err := loadDevice(dir)
		if err != nil || dev.info.User != "alice" || dev.info.Pin != c.ca.Pin {
			t.Fatalf("stored identity: %+v, %v", dev, err)
		}
		devices, err := c.ca.Admin().Devices(context.Background(), "alice")
		if err != nil || !slices.ContainsFunc(devices, func(d api.Device) bool { return d.ID == dev.info.DeviceID }) {
			t.Errorf("the CA's devices of alice: %+v, %v; want %s among them", devices, err, dev.info.DeviceID)
		}

		second := c.startDaemon(t, newHome(t), "alice", DaemonConfig{Token: tok, Pin: c.ca.Pin})
		err = second.result(t, 10*time.Second)
		var re *RegistrationError
		if !errors.As(err, &re) || !strings.Contains(Describe(err), "the CA refused to register this device for alice: token is unknown, expired, already used") ||
			!strings.Contains(Describe(err), "A token works once") {
			t.Errorf("second registration with the token: %v\n%s", err, Describe(err))
		}

		// Later starts: no token, no pin (both stored).
		again := c.startDaemon(t, first, "alice", DaemonConfig{})
		again.waitReady(t)
		if strings.Contains(again.log.String(), "device registered") {
			t.Error("the device registered again instead of using its identity")
		}
		other := c.startDaemon(t, first, "bob", DaemonConfig{})
		err = other.result(t, 10*time.Second)
		if !errors.As(err, &re) || !strings.Contains(Describe(err), "this device is registered for alice, not bob: run with --auth alice") {
			t.Errorf("start as bob: %v", err)
		}
	})
	t.Run("device renewal", func(t *testing.T) {
		t.Parallel()
		home := newHome(t)
		r := c.startDaemon(t, home, "alice", DaemonConfig{Token: c.token(t, "alice"), Pin: c.ca.Pin})
		r.waitReady(t)
		r.stop()
		if err := r.result(t, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		before, err := loadDevice(home.deviceDir(c.server))
		if err != nil {
			t.Fatal(err)
		}
		// Five days on, the seven-day device certificate is due: the
		// daemon renews it with the CA, stores it, and talks to the CA
		// with the new one.
		later := c.startDaemon(t, home, "alice", DaemonConfig{Clock: func() time.Time { return time.Now().Add(5 * 24 * time.Hour) }})
		later.waitReady(t)
		eventually(t, 10*time.Second, "a poll answered after the device certificate's renewal", func() bool {
			return strings.Contains(later.status.String(), "(not signed in at start)")
		})
		after, err := loadDevice(home.deviceDir(c.server))
		if err != nil || after.leaf.SerialNumber.Cmp(before.leaf.SerialNumber) == 0 || after.expires().Before(before.expires()) ||
			after.info.DeviceID != before.info.DeviceID {
			t.Fatalf("device certificate after renewal: %v; serial %v, expires %v (before: serial %v, expires %v)",
				err, after.leaf.SerialNumber, after.expires(), before.leaf.SerialNumber, before.expires())
		}
		// Once: the renewal counts from when it arrived, not from the
		// certificate's start, which this clock puts days ago.
		if n := strings.Count(later.log.String(), "device certificate renewed"); n != 1 || strings.Contains(later.log.String(), "unreachable") {
			t.Errorf("log:\n%s", later.log)
		}
	})
	t.Run("token of another user", func(t *testing.T) {
		t.Parallel()
		r := c.startDaemon(t, newHome(t), "alice", DaemonConfig{Token: c.token(t, "bob"), Pin: c.ca.Pin})
		err := r.result(t, 10*time.Second)
		var re *RegistrationError
		if !errors.As(err, &re) || !strings.Contains(Describe(err), "the CA refused to register this device for alice") {
			t.Errorf("alice with bob's token: %v", err)
		}
		if devices, _ := c.ca.Admin().Devices(context.Background(), "bob"); len(devices) != 0 {
			t.Errorf("bob has devices %+v", devices)
		}
	})
	t.Run("no token", func(t *testing.T) {
		t.Parallel()
		err := c.startDaemon(t, newHome(t), "alice", DaemonConfig{Pin: c.ca.Pin}).result(t, 10*time.Second)
		if !errors.Is(err, ErrNotRegistered) || Describe(err) !=
			"this device is not registered: run with --token from caadm tokens add --role keyhelper --user NAME or the web page" {
			t.Errorf("without a token: %v", err)
		}
	})
	t.Run("untrusted CA", func(t *testing.T) {
		t.Parallel()
		err := c.startDaemon(t, newHome(t), "alice", DaemonConfig{Token: c.token(t, "alice")}).result(t, 10*time.Second)
		if !strings.Contains(Describe(err), "pass --ca-pin sha256:") {
			t.Errorf("without a pin: %v", err)
		}
	})
}

// A sign-in delivers a certificate to the agent and the file within a
// second or two; before two thirds of its six seconds have passed a new
// one replaces it in both (the real clock, the real CA); a sign-out
// removes it from both.
func TestDaemonRenewsAndSignsOut(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testbin.Config{})
	secret := c.addUser(t, "carol")
	ag := testbin.StartAgent(t)
	r := c.startDaemon(t, newHome(t), "carol", DaemonConfig{Token: c.token(t, "carol"), Pin: c.ca.Pin, CertTTL: 6 * time.Second, AgentSocket: ag.Socket})
	r.waitReady(t)
	certFile := filepath.Join(r.home.serverDir(c.server), certFile)

	login := c.signIn(t, "carol", secret, time.Now())
	var first *ssh.Certificate
	eventually(t, 5*time.Second, "the certificate in the agent and the file after sign-in", func() bool {
		certs := c.agentCerts(t, ag)
		f := fileCert(certFile)
		if len(certs) == 1 && f != nil && f.Serial == certs[0].Serial {
			first = f
			return true
		}
		return false
	})
	if first.KeyId != "carol" || time.Until(CertEnd(first)) > 6*time.Second {
		t.Errorf("certificate: key id %q, valid until %v", first.KeyId, CertEnd(first))
	}
	eventually(t, 10*time.Second, "a renewed certificate in the agent and the file", func() bool {
		certs := c.agentCerts(t, ag)
		f := fileCert(certFile)
		return len(certs) == 1 && f != nil && f.Serial == certs[0].Serial && f.Serial != first.Serial
	})
	if renewed := time.Now(); !renewed.Before(CertEnd(first)) {
		t.Errorf("renewed at %v, after the first certificate expired at %v", renewed, CertEnd(first))
	}
	if n := len(c.agentCerts(t, ag)); n != 1 {
		t.Errorf("the agent holds %d certificates of the cluster, want 1", n)
	}

	if err := c.ca.HTTPS().Logout(context.Background(), login.Session); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the certificate gone from the agent and the file after sign-out", func() bool {
		return len(c.agentCerts(t, ag)) == 0 && fileCert(certFile) == nil
	})
	// The status line comes last, after the profile's update.
	eventually(t, 5*time.Second, "the daemon done with the sign-out", func() bool {
		return strings.Contains(r.status.String(), "(signed out)")
	})
	// Status and config read what the daemon wrote.
	st, err := r.home.Status(c.server, ag.Socket)
	if err != nil || st.Profile.Device == "" || st.Profile.User != "carol" {
		t.Errorf("status: %+v, %v", st, err)
	}
	// logout removes the daemon's files but not its identity.
	if res, err := r.home.Logout(context.Background(), c.server, ag.Socket); err != nil || res.ServerErr != nil || res.SessionEnded || res.Device == "" {
		t.Errorf("logout: %+v, %v", res, err)
	}
	if _, err := loadDevice(r.home.deviceDir(c.server)); err != nil {
		t.Errorf("after logout the device identity is gone: %v", err)
	}
	if _, err := r.home.LoadProfile(c.server); !errors.Is(err, ErrNotLoggedIn) {
		t.Errorf("after logout the profile is still there: %v", err)
	}
}

// Locking the user removes the certificate at once; removing the user
// ends the daemon, which deletes its identity: it cannot recover.
func TestDaemonLockAndRemove(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testbin.Config{})
	ctx := context.Background()
	run := func(t *testing.T, user string) (*daemonRun, *testbin.Agent) {
		secret := c.addUser(t, user)
		ag := testbin.StartAgent(t)
		r := c.startDaemon(t, newHome(t), user, DaemonConfig{Token: c.token(t, user), Pin: c.ca.Pin, AgentSocket: ag.Socket})
		r.waitReady(t)
		c.signIn(t, user, secret, time.Now())
		eventually(t, 5*time.Second, "the certificate in the agent", func() bool { return len(c.agentCerts(t, ag)) == 1 })
		return r, ag
	}
	t.Run("lock", func(t *testing.T) {
		t.Parallel()
		r, ag := run(t, "dave")
		if err := c.ca.Admin().LockUser(ctx, "dave", api.LockRequest{Reason: "on leave"}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "the certificate gone after the lock", func() bool { return len(c.agentCerts(t, ag)) == 0 })
		if fileCert(filepath.Join(r.home.serverDir(c.server), certFile)) != nil {
			t.Error("the certificate file is still there after the lock")
		}
		if !strings.Contains(r.log.String(), "on leave") {
			t.Errorf("the log does not say why:\n%s", r.log)
		}
	})
	t.Run("remove", func(t *testing.T) {
		t.Parallel()
		r, ag := run(t, "erin")
		if err := c.ca.Admin().RemoveUser(ctx, "erin"); err != nil {
			t.Fatal(err)
		}
		err := r.result(t, 10*time.Second)
		var re *RegistrationError
		if !errors.As(err, &re) || !strings.Contains(Describe(err), "re-register with a new token") {
			t.Errorf("after the user's removal: %v", err)
		}
		if n := len(c.agentCerts(t, ag)); n != 0 {
			t.Errorf("the agent still holds %d certificates", n)
		}
		if _, err := os.Stat(r.home.deviceDir(c.server)); !os.IsNotExist(err) {
			t.Errorf("the identity is still stored (%v)", err)
		}
	})
}

// The daemon keeps running while teleport-ca restarts: the certificate it
// has stays in the agent, it reconnects with backoff, and a new sign-in
// after the restart reaches it.
func TestDaemonSurvivesCARestart(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testbin.Config{})
	secret := c.addUser(t, "frank")
	ag := testbin.StartAgent(t)
	r := c.startDaemon(t, newHome(t), "frank", DaemonConfig{Token: c.token(t, "frank"), Pin: c.ca.Pin, AgentSocket: ag.Socket})
	r.waitReady(t)
	now := time.Now()
	c.signIn(t, "frank", secret, now)
	var first uint64
	eventually(t, 5*time.Second, "the certificate in the agent", func() bool {
		certs := c.agentCerts(t, ag)
		if len(certs) == 1 {
			first = certs[0].Serial
		}
		return first != 0
	})

	cfg := testbin.Config{DataDir: c.ca.DataDir, Listen: c.ca.Listen, AdminSocket: c.ca.AdminSocket}
	// Stop waits up to 10 s when the daemon's poll is pending: the CA's
	// graceful shutdown waits for it.
	if code := c.ca.Stop(); code != 0 {
		t.Fatalf("teleport-ca exit %d", code)
	}
	eventually(t, 10*time.Second, "the daemon noticing the CA is gone", func() bool {
		return strings.Contains(r.log.String(), "CA unreachable")
	})
	if got := serials(c.agentCerts(t, ag)); len(got) != 1 || got[0] != first {
		t.Errorf("while the CA is down the agent holds %v, want the certificate %d", got, first)
	}
	c.ca = testbin.Start(t, cfg)
	c.signIn(t, "frank", secret, now.Add(30*time.Second))
	eventually(t, 20*time.Second, "a new certificate after the CA's restart", func() bool {
		got := serials(c.agentCerts(t, ag))
		return len(got) == 1 && got[0] != first
	})
	// Stop the daemon before the new CA's cleanup stops the CA, which
	// would wait for the daemon's pending poll.
	r.stop()
	if err := r.result(t, 10*time.Second); err != nil {
		t.Errorf("stopped daemon: %v", err)
	}
}

// With --key-path the user's own key is certified: the certificate goes
// next to it (-cert.pub) and, when the private key needs no passphrase,
// into the agent; a passphrase-protected key gets the file only. A
// sign-out removes the certificate, never the key.
func TestDaemonKeyPath(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	c := startCluster(t, testbin.Config{})
	for _, tt := range []struct {
		user, passphrase string
		inAgent          bool
	}{{"gina", "", true}, {"hank", "a passphrase", false}} {
		t.Run(tt.user, func(t *testing.T) {
			t.Parallel()
			secret := c.addUser(t, tt.user)
			dir := t.TempDir()
			key := filepath.Join(dir, "id_ed25519")
			if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", tt.passphrase, "-f", key).CombinedOutput(); err != nil {
				t.Fatalf("ssh-keygen: %v\n%s", err, out)
			}
			ag := testbin.StartAgent(t)
			r := c.startDaemon(t, newHome(t), tt.user, DaemonConfig{Token: c.token(t, tt.user), Pin: c.ca.Pin,
				KeyPath: key + ".pub", AgentSocket: ag.Socket})
			r.waitReady(t)
			login := c.signIn(t, tt.user, secret, time.Now())
			certPath := key + "-cert.pub"
			eventually(t, 5*time.Second, "the certificate next to the key", func() bool { return fileCert(certPath) != nil })
			pub, _, _, _, _ := ssh.ParseAuthorizedKey(must(os.ReadFile(key + ".pub")))
			if cert := fileCert(certPath); string(cert.Key.Marshal()) != string(pub.Marshal()) || cert.KeyId != tt.user {
				t.Errorf("certificate for key %s, key id %q", ssh.FingerprintSHA256(cert.Key), cert.KeyId)
			}
			if got := len(c.agentCerts(t, ag)); (got == 1) != tt.inAgent {
				t.Errorf("the agent holds %d certificates, want it to hold one: %v", got, tt.inAgent)
			}
			if err := c.ca.HTTPS().Logout(context.Background(), login.Session); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "the certificate removed after sign-out", func() bool {
				return fileCert(certPath) == nil && len(c.agentCerts(t, ag)) == 0
			})
			for _, f := range []string{key, key + ".pub"} {
				if _, err := os.Stat(f); err != nil {
					t.Errorf("the user's key file: %v", err)
				}
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
