package keyhelper

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/testbin"
)

// These tests drive the daemon's loop against a simulated CA (world) on
// an injected clock: they check its timing (renewal at two thirds, the
// backoff, clock jumps) in simulated hours that take milliseconds. The
// world's time moves only when the daemon sleeps or waits on a poll, so a
// run is deterministic. The protocol itself is tested against the real
// teleport-ca in daemon_test.go.

// base is the simulated start: a whole second, as certificate times are.
var base = time.Date(2030, 1, 7, 9, 0, 0, 0, time.UTC)

// world is a simulated CA and clock. Only the daemon's goroutine touches
// it while the daemon runs; events run there too.
type world struct {
	t        *testing.T
	now, end time.Time
	cancel   context.CancelFunc
	events   []event

	signIn  api.SignInState
	locked  string // the lock message, while locked
	revoked bool
	down    bool // requests fail as if the CA were unreachable
	refuse  bool // certificates are refused by policy
	jitter  func(int64) int64

	userCA ssh.Signer
	hostCA ssh.PublicKey
	serial uint64

	polls []time.Time // when each poll was sent
	certs []issued
	// renew answers RenewDevice; renewals are when it was asked.
	renew    func() (api.DeviceIdentity, error)
	renewals []time.Time
}

type event struct {
	at time.Time
	fn func()
}

type issued struct {
	at   time.Time
	cert *ssh.Certificate
}

func newWorld(t *testing.T, end time.Duration) *world {
	_, caKey, _ := ed25519.GenerateKey(rand.Reader)
	userCA, err := ssh.NewSignerFromKey(caKey)
	if err != nil {
		t.Fatal(err)
	}
	hostPub, _, _ := ed25519.GenerateKey(rand.Reader)
	hostCA, _ := ssh.NewPublicKey(hostPub)
	return &world{t: t, now: base, end: base.Add(end), userCA: userCA, hostCA: hostCA,
		jitter: func(n int64) int64 { return n - 1 }}
}

// at runs fn when the clock reaches t.
func (w *world) at(t time.Time, fn func()) {
	w.events = append(w.events, event{t, fn})
	sort.SliceStable(w.events, func(i, j int) bool { return w.events[i].at.Before(w.events[j].at) })
}

// signInAt signs the user in at t for life; the sign-in ends by itself.
func (w *world) signInAt(t time.Time, life time.Duration) {
	end := t.Add(life)
	w.at(t, func() { w.signIn = api.SignInState{SignedIn: true, Expires: end} })
	w.at(end, func() {
		if w.signIn.Expires.Equal(end) {
			w.signIn = api.SignInState{}
		}
	})
}

// jumpAt moves the clock forward by d at t, as a suspended laptop sees it.
func (w *world) jumpAt(t time.Time, d time.Duration) {
	w.at(t, func() { w.now = w.now.Add(d) })
}

func (w *world) Now() time.Time { return w.now }

// advance moves the clock to `to`, running the events due on the way.
func (w *world) advance(to time.Time) {
	for len(w.events) > 0 && !w.events[0].at.After(to) {
		ev := w.events[0]
		w.events = w.events[1:]
		if ev.at.After(w.now) {
			w.now = ev.at
		}
		ev.fn()
		if w.now.After(to) {
			to = w.now // a jump
		}
	}
	if to.After(w.now) {
		w.now = to
	}
	if !w.now.Before(w.end) {
		w.cancel()
	}
}

func (w *world) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.advance(w.now.Add(d))
	return ctx.Err()
}

// refusal is the error every request gets now, if any.
func (w *world) refusal() error {
	switch {
	case w.down:
		return errors.New("client: cannot reach teleport-ca: connection refused")
	case w.revoked:
		return &api.Error{Code: api.CodeDeviceRevoked, Status: http.StatusForbidden, Message: "device identity is not valid"}
	case w.locked != "":
		return &api.Error{Code: api.CodeLocked, Status: http.StatusForbidden, Message: w.locked}
	}
	return nil
}

func (w *world) SignInState(ctx context.Context, have api.SignInState, wait time.Duration) (api.SignInState, error) {
	if err := ctx.Err(); err != nil {
		return api.SignInState{}, err
	}
	w.polls = append(w.polls, w.now)
	deadline := w.now.Add(wait)
	for {
		if err := w.refusal(); err != nil {
			return api.SignInState{}, err
		}
		if w.signIn.SignedIn != have.SignedIn || !w.signIn.Expires.Equal(have.Expires) || !w.now.Before(deadline) {
			return w.signIn, nil
		}
		next := deadline
		if len(w.events) > 0 && w.events[0].at.Before(next) {
			next = w.events[0].at
		}
		w.advance(next)
		if err := ctx.Err(); err != nil {
			return api.SignInState{}, err
		}
	}
}

func (w *world) DeviceCert(ctx context.Context, req api.DeviceCertRequest) (api.Cert, error) {
	if err := w.refusal(); err != nil {
		return api.Cert{}, err
	}
	if w.refuse {
		return api.Cert{}, &api.Error{Code: api.CodeForbidden, Status: http.StatusForbidden, Message: `no role of user "alice" allows any login`}
	}
	if !w.signIn.SignedIn || !w.now.Before(w.signIn.Expires) {
		return api.Cert{}, &api.Error{Code: api.CodeSessionExpired, Status: http.StatusUnauthorized, Message: "sign-in ended"}
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(req.PublicKey))
	if err != nil {
		return api.Cert{}, &api.Error{Code: api.CodeBadRequest, Status: http.StatusBadRequest, Message: err.Error()}
	}
	ttl := min(time.Duration(req.TTL), w.signIn.Expires.Sub(w.now))
	w.serial++
	cert := &ssh.Certificate{
		Key: pub, Serial: w.serial, CertType: ssh.UserCert, KeyId: "alice", ValidPrincipals: []string{"alice"},
		ValidAfter: uint64(w.now.Add(-time.Minute).Unix()), ValidBefore: uint64(w.now.Add(ttl).Unix()),
	}
	if err := cert.SignCert(rand.Reader, w.userCA); err != nil {
		w.t.Fatal(err)
	}
	w.certs = append(w.certs, issued{w.now, cert})
	return api.Cert{Certificate: string(ssh.MarshalAuthorizedKey(cert))}, nil
}

func (w *world) CA(ctx context.Context) (api.CAInfo, error) {
	if w.down {
		return api.CAInfo{}, w.refusal()
	}
	return api.CAInfo{
		UserCA: string(ssh.MarshalAuthorizedKey(w.userCA.PublicKey())),
		HostCA: string(ssh.MarshalAuthorizedKey(w.hostCA)),
	}, nil
}

func (w *world) RenewDevice(ctx context.Context) (api.DeviceIdentity, error) {
	w.renewals = append(w.renewals, w.now)
	if w.renew == nil {
		w.t.Error("the device certificate was renewed long before it was due")
		return api.DeviceIdentity{}, errors.New("not in this world")
	}
	return w.renew()
}

// simServer is the cluster of the simulated tests.
var simServer = Server{Host: "ca.example.com", Port: "3080"}

// sim is one daemon run against a world.
type sim struct {
	w       *world
	d       *Daemon
	home    *Home
	keyring agent.Agent
}

// newSim readies a daemon for alice against w, with a device identity
// stored (valid for 30 simulated days) and an in-process agent.
func newSim(t *testing.T, w *world) *sim {
	t.Helper()
	return newSimDevice(t, w, base.Add(30*24*time.Hour))
}

// newSimDevice is newSim with a device certificate valid until notAfter.
func newSimDevice(t *testing.T, w *world, notAfter time.Time) *sim {
	t.Helper()
	home, err := OpenHome(filepath.Join(t.TempDir(), ".teleport"), true)
	if err != nil {
		t.Fatal(err)
	}
	storeTestDevice(t, home.deviceDir(simServer), "alice", base.Add(-time.Hour), notAfter)
	sock, keyring := memAgent(t)
	d, err := NewDaemon(DaemonConfig{
		Home: home, Server: simServer, User: "alice", CertTTL: time.Hour, AgentSocket: sock,
		Log:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Clock: w.Now, Sleep: w.Sleep, Jitter: func(n int64) int64 { return w.jitter(n) },
	})
	if err != nil {
		t.Fatal(err)
	}
	d.dial = func(*device) (deviceAPI, error) { return w, nil }
	return &sim{w: w, d: d, home: home, keyring: keyring}
}

// run runs the daemon until the world's end and returns what Run did.
func (s *sim) run(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.w.cancel = cancel
	done := make(chan error, 1)
	go func() { done <- s.d.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatalf("the simulated run did not end (simulated clock at %v)", s.w.now)
		return nil
	}
}

// agentCerts returns the serials of the certificates in the agent.
func (s *sim) agentCerts(t *testing.T) []uint64 {
	t.Helper()
	keys, err := s.keyring.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, k := range keys {
		pub, err := ssh.ParsePublicKey(k.Blob)
		if err != nil {
			t.Fatal(err)
		}
		if c, ok := pub.(*ssh.Certificate); ok {
			out = append(out, c.Serial)
		}
	}
	return out
}

// fileSerial returns the serial of the certificate file, 0 if there is
// none.
func (s *sim) fileSerial() uint64 {
	c, err := readCert(s.d.profile.CertFile)
	if err != nil {
		return 0
	}
	return c.Serial
}

// storeTestDevice writes a device identity with a self-issued
// certificate, as registration would leave it.
func storeTestDevice(t *testing.T, dir, user string, notBefore, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: user},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	d := &device{dir: dir, key: key, leaf: leaf, root: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		info: deviceInfo{Version: deviceInfoVersion, Server: simServer.URL(), User: user, DeviceID: "d0d0d0d0d0d0d0d0", Registered: notBefore}}
	keyPEM, err := d.keyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := ensurePrivateDir(dir, true); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(filepath.Join(dir, deviceKeyFile), keyPEM); err != nil {
		t.Fatal(err)
	}
	if err := d.writeCert(); err != nil {
		t.Fatal(err)
	}
	if err := d.saveInfo(); err != nil {
		t.Fatal(err)
	}
}

// memAgent serves x/crypto's in-memory agent on a Unix socket.
func memAgent(t *testing.T) (string, agent.Agent) {
	t.Helper()
	sock := filepath.Join(testbin.ShortTempDir(t), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	keyring := agent.NewKeyring()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = agent.ServeAgent(keyring, c)
			}()
		}
	}()
	return sock, keyring
}

func wantTimes(t *testing.T, what string, got []issued, want ...time.Time) {
	t.Helper()
	var at []time.Time
	for _, g := range got {
		at = append(at, g.at)
	}
	if len(at) != len(want) {
		t.Fatalf("%s at %v, want %v", what, offsets(at), offsets(want))
	}
	for i := range want {
		if !at[i].Equal(want[i]) {
			t.Fatalf("%s at %v, want %v", what, offsets(at), offsets(want))
		}
	}
}

// offsets shows times as offsets from base.
func offsets(ts []time.Time) []time.Duration {
	var out []time.Duration
	for _, t := range ts {
		out = append(out, t.Sub(base))
	}
	return out
}

// Within a three-hour sign-in, a one-hour certificate is replaced when two
// thirds of its life (40 minutes) have passed, without the user doing
// anything; the one that reaches the sign-in's end is not replaced; when
// the sign-in ends, the agent entry and the file go. The agent holds only
// the newest certificate at each moment.
func TestDaemonRenewsAtTwoThirds(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 3*time.Hour+10*time.Minute)
	s := newSim(t, w)
	in := base.Add(time.Minute)
	w.signInAt(in, 3*time.Hour)
	for i, at := range []time.Duration{time.Minute, 41 * time.Minute, 81 * time.Minute, 121 * time.Minute} {
		w.at(in.Add(at), func() {
			if got := s.agentCerts(t); len(got) != 1 || got[0] != uint64(i+1) {
				t.Errorf("at sign-in + %v the agent holds certificates %v, want only serial %d", at, got, i+1)
			}
			if got := s.fileSerial(); got != uint64(i+1) {
				t.Errorf("at sign-in + %v the file holds serial %d, want %d", at, got, i+1)
			}
		})
	}
	if err := s.run(t); err != nil {
		t.Fatal(err)
	}
	wantTimes(t, "certificates issued", w.certs, in, in.Add(40*time.Minute), in.Add(80*time.Minute), in.Add(120*time.Minute))
	if last := w.certs[3].cert; !CertEnd(last).Equal(in.Add(3 * time.Hour)) {
		t.Errorf("the last certificate ends at %v, want the sign-in's end", CertEnd(last).Sub(base))
	}
	if got := s.agentCerts(t); len(got) != 0 {
		t.Errorf("after the sign-in ended the agent holds %v", got)
	}
	if _, err := os.Stat(s.d.profile.CertFile); !os.IsNotExist(err) {
		t.Errorf("after the sign-in ended the certificate file is still there (%v)", err)
	}
	for i := 1; i < len(w.polls); i++ {
		if gap := w.polls[i].Sub(w.polls[i-1]); gap > maxPollWait {
			t.Fatalf("polls %v apart: longer than the CA holds one", gap)
		}
	}
}

// A suspended laptop: the clock jumps while a poll is pending. Past the
// renewal time, the certificate is replaced at once after the jump; past
// the sign-in's end, with the CA unreachable, the agent entry and the file
// are removed by the clock alone.
func TestDaemonClockJump(t *testing.T) {
	t.Parallel()
	t.Run("past renewal", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, 91*time.Minute)
		s := newSim(t, w)
		in := base.Add(time.Minute)
		w.signInAt(in, 2*time.Hour)
		w.jumpAt(in.Add(10*time.Minute), 35*time.Minute)
		if err := s.run(t); err != nil {
			t.Fatal(err)
		}
		// Renewal was due at +40m; the jump lands at +45m. The next
		// is due two thirds of an hour later.
		wantTimes(t, "certificates issued", w.certs, in, in.Add(45*time.Minute), in.Add(85*time.Minute))
	})
	t.Run("past the sign-in, CA unreachable", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, 3*time.Hour)
		s := newSim(t, w)
		in := base.Add(time.Minute)
		w.signInAt(in, time.Hour)
		w.at(in.Add(10*time.Minute), func() {
			if s.fileSerial() != 1 || len(s.agentCerts(t)) != 1 {
				t.Error("the certificate was not delivered")
			}
			w.down = true
			w.now = w.now.Add(2 * time.Hour)
		})
		w.at(in.Add(2*time.Hour+10*time.Minute+time.Second), func() {
			if got := s.agentCerts(t); len(got) != 0 {
				t.Errorf("a second after the jump past the sign-in's end the agent holds %v", got)
			}
			if got := s.fileSerial(); got != 0 {
				t.Errorf("a second after the jump past the sign-in's end the file holds serial %d", got)
			}
		})
		if err := s.run(t); err != nil {
			t.Fatal(err)
		}
		if len(w.certs) != 1 {
			t.Errorf("%d certificates issued, want 1", len(w.certs))
		}
	})
}

// While the CA cannot be reached, the waits between attempts double from
// 1 s up to 60 s (the jitter here always picks the ceiling); an answer
// resets them.
func TestDaemonBackoff(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 30*time.Minute)
	s := newSim(t, w)
	w.down = true
	w.at(base.Add(10*time.Minute), func() { w.down = false })
	w.at(base.Add(20*time.Minute), func() { w.down = true })
	if err := s.run(t); err != nil {
		t.Fatal(err)
	}
	var gaps []time.Duration
	for i := 1; i < len(w.polls) && w.polls[i].Before(base.Add(10*time.Minute)); i++ {
		gaps = append(gaps, w.polls[i].Sub(w.polls[i-1]))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i, g := range want {
		if i >= len(gaps) || gaps[i] != g*time.Second {
			t.Fatalf("waits between failed polls %v, want %v s, then 60 s", gaps, want)
		}
	}
	// The second outage starts at +20m, failing the pending poll: the
	// waits start from 1 s again.
	var after []time.Time
	for _, p := range w.polls {
		if !p.Before(base.Add(20 * time.Minute)) {
			after = append(after, p)
		}
	}
	outage := base.Add(20 * time.Minute)
	if len(after) < 2 || !after[0].Equal(outage.Add(time.Second)) || !after[1].Equal(outage.Add(3*time.Second)) {
		t.Errorf("polls after the second outage at %v, want at +20m1s and +20m3s", offsets(after))
	}
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	ceilings := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60, 60}
	for i, c := range ceilings {
		n := i + 1
		ceiling := c * time.Second
		if got := backoff(n, func(m int64) int64 { return m - 1 }); got != ceiling {
			t.Errorf("backoff(%d) with the largest jitter = %v, want %v", n, got, ceiling)
		}
		if got := backoff(n, func(int64) int64 { return 0 }); got != minBackoff {
			t.Errorf("backoff(%d) with no jitter = %v, want %v", n, got, minBackoff)
		}
		for range 200 {
			if got := backoff(n, randInt64N); got < minBackoff || got > ceiling {
				t.Fatalf("backoff(%d) = %v, outside [%v, %v]", n, got, minBackoff, ceiling)
			}
		}
	}
	if got := backoff(1000, func(m int64) int64 { return m - 1 }); got != backoffMax {
		t.Errorf("backoff(1000) = %v, want %v", got, backoffMax)
	}
}

func TestRenewalTime(t *testing.T) {
	t.Parallel()
	cert := func(validAfter, validBefore time.Time) *ssh.Certificate {
		return &ssh.Certificate{ValidAfter: uint64(validAfter.Unix()), ValidBefore: uint64(validBefore.Unix())}
	}
	far := base.Add(12 * time.Hour)
	tests := []struct {
		name      string
		cert      *ssh.Certificate
		received  time.Time
		signInEnd time.Time
		want      time.Time
	}{
		{"one hour, backdated a minute", cert(base.Add(-time.Minute), base.Add(time.Hour)), base, far, base.Add(40 * time.Minute)},
		{"six seconds", cert(base.Add(-time.Minute), base.Add(6*time.Second)), base, far, base.Add(4 * time.Second)},
		{"received late", cert(base.Add(-time.Minute), base.Add(time.Hour)), base.Add(30 * time.Minute), far, base.Add(50 * time.Minute)},
		{"clock behind the CA", cert(base.Add(time.Minute), base.Add(61*time.Minute)), base, far, base.Add(41 * time.Minute)},
		{"one second left", cert(base.Add(-time.Minute), base.Add(time.Second)), base, far, base.Add(minRenewal)},
		{"ends with the sign-in", cert(base, base.Add(time.Hour)), base, base.Add(time.Hour + 500*time.Millisecond), time.Time{}},
		{"capped by the sign-in", cert(base, base.Add(time.Hour)), base, base.Add(time.Hour), time.Time{}},
	}
	for _, tt := range tests {
		if got := renewalTime(tt.cert, tt.received, tt.signInEnd); !got.Equal(tt.want) {
			t.Errorf("%s: renewal at %v, want %v", tt.name, got, tt.want)
		}
	}
}

// A lock removes the certificate at once; the daemon then asks every
// 30-60 s, and gets a certificate again soon after the unlock while the
// sign-in lasts.
func TestDaemonLocked(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 15*time.Minute)
	w.jitter = func(n int64) int64 { return n / 2 }
	s := newSim(t, w)
	in := base.Add(time.Minute)
	w.signInAt(in, 12*time.Hour)
	lockAt, unlockAt := in.Add(5*time.Minute), in.Add(10*time.Minute)
	w.at(lockAt, func() { w.locked = "account is locked (on leave); ask an administrator to unlock it" })
	w.at(lockAt.Add(time.Second), func() {
		if got := s.agentCerts(t); len(got) != 0 || s.fileSerial() != 0 {
			t.Errorf("a second after the lock the agent holds %v and the file serial %d", got, s.fileSerial())
		}
	})
	w.at(unlockAt, func() { w.locked = "" })
	if err := s.run(t); err != nil {
		t.Fatal(err)
	}
	if len(w.certs) != 2 || !w.certs[1].at.After(unlockAt) || w.certs[1].at.After(unlockAt.Add(slowPoll)) {
		var at []time.Time
		for _, c := range w.certs {
			at = append(at, c.at)
		}
		t.Fatalf("certificates issued at %v, want one at sign-in and one within %v of the unlock at %v", offsets(at), slowPoll, unlockAt.Sub(base))
	}
	var locked []time.Time
	for _, p := range w.polls {
		if p.After(lockAt) && p.Before(unlockAt) {
			locked = append(locked, p)
		}
	}
	for i := 1; i < len(locked); i++ {
		if gap := locked[i].Sub(locked[i-1]); gap < slowPoll/2 || gap > slowPoll {
			t.Errorf("polls while locked %v apart, want 30-60 s", gap)
		}
	}
	if got := s.agentCerts(t); len(got) != 1 || got[0] != 2 {
		t.Errorf("after the unlock the agent holds %v, want serial 2", got)
	}
}

// A revoked device (or removed user) ends the daemon with a
// RegistrationError after removing the certificate and the identity.
func TestDaemonRevoked(t *testing.T) {
	t.Parallel()
	w := newWorld(t, time.Hour)
	s := newSim(t, w)
	w.signInAt(base.Add(time.Minute), 12*time.Hour)
	w.at(base.Add(5*time.Minute), func() { w.revoked = true })
	err := s.run(t)
	var re *RegistrationError
	if !errors.As(err, &re) {
		t.Fatalf("Run: %v, want a RegistrationError", err)
	}
	if d := Describe(err); !regexp.MustCompile(`^the CA no longer accepts this device .*re-register with a new token from caadm tokens add --role keyhelper --user alice`).MatchString(d) {
		t.Errorf("Describe: %q", d)
	}
	if w.now.After(base.Add(5*time.Minute + time.Second)) {
		t.Errorf("the daemon ran until %v after the revocation", w.now.Sub(base))
	}
	if got := s.agentCerts(t); len(got) != 0 || s.fileSerial() != 0 {
		t.Errorf("after the revocation the agent holds %v and the file serial %d", got, s.fileSerial())
	}
	if _, err := os.Stat(s.home.deviceDir(simServer)); !os.IsNotExist(err) {
		t.Errorf("the revoked identity is still stored (%v)", err)
	}
}

// A certificate the CA refuses by policy is not asked for again until the
// sign-in changes: no loop of refused requests.
func TestDaemonPolicyRefusal(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 2*time.Hour)
	w.refuse = true
	s := newSim(t, w)
	refused := 0
	w.signInAt(base.Add(time.Minute), 12*time.Hour)
	w.at(base.Add(time.Hour), func() {
		refused = len(w.polls)
		w.refuse = false
	})
	w.signInAt(base.Add(90*time.Minute), 12*time.Hour) // a new sign-in: later end
	if err := s.run(t); err != nil {
		t.Fatal(err)
	}
	if len(w.certs) != 1 || !w.certs[0].at.Equal(base.Add(90*time.Minute)) {
		t.Errorf("%d certificates issued, want one, at the new sign-in", len(w.certs))
	}
	// Polls go on at the long-poll pace, not faster.
	if refused > int(time.Hour/maxPollWait)+3 {
		t.Errorf("%d polls in the hour after the refusal", refused)
	}
}

// The wall clock watch ends a wait when the clock jumps, and not when it
// does not.
func TestWatchClock(t *testing.T) {
	t.Parallel()
	var offset time.Duration
	jump := make(chan struct{})
	now := func() time.Time {
		select {
		case <-jump:
			offset = time.Hour
		default:
		}
		return time.Now().Add(offset)
	}
	ctx, cancel := watchClock(context.Background(), 5*time.Millisecond, time.Second, now)
	defer cancel()
	select {
	case <-ctx.Done():
		t.Fatal("ended without a jump")
	case <-time.After(50 * time.Millisecond):
	}
	close(jump)
	select {
	case <-ctx.Done():
		if !jumped(ctx) {
			t.Errorf("cause %v, want errClockJump", context.Cause(ctx))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a jump of an hour went unnoticed")
	}
	ctx2, cancel2 := watchClock(context.Background(), time.Hour, time.Second, time.Now)
	cancel2()
	<-ctx2.Done()
	if jumped(ctx2) {
		t.Error("a cancelled watch reports a jump")
	}
}

// The device certificate is renewed when two thirds of its life have
// passed; a failed renewal is retried after a backoff without holding up
// the sign-in flow, and the renewed certificate is stored and used.
func TestDaemonRenewsDevice(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 2*time.Hour)
	s := newSimDevice(t, w, base.Add(2*time.Hour)) // valid from base-1h: due at base+1h
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: base.Add(-24 * time.Hour), NotAfter: base.Add(365 * 24 * time.Hour)}
	rootDER, _ := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	root, _ := x509.ParseCertificate(rootDER)
	failures := 1
	w.renew = func() (api.DeviceIdentity, error) {
		if failures > 0 {
			failures--
			return api.DeviceIdentity{}, errors.New("client: cannot reach teleport-ca: connection reset")
		}
		leaf := &x509.Certificate{SerialNumber: big.NewInt(8), Subject: pkix.Name{CommonName: "alice"},
			NotBefore: w.now.Add(-5 * time.Minute), NotAfter: w.now.Add(7 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		der, err := x509.CreateCertificate(rand.Reader, leaf, root, &s.d.dev.key.PublicKey, rootKey)
		if err != nil {
			t.Fatal(err)
		}
		return api.DeviceIdentity{DeviceID: "d0d0d0d0d0d0d0d0", User: "alice",
			Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
			TLSRoot:     string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}))}, nil
	}
	dials := 0
	s.d.dial = func(*device) (deviceAPI, error) { dials++; return w, nil }
	w.signInAt(base.Add(time.Hour+500*time.Millisecond), 12*time.Hour) // between the two attempts
	if err := s.run(t); err != nil {
		t.Fatal(err)
	}
	due := base.Add(time.Hour)
	if len(w.renewals) != 2 || !w.renewals[0].Equal(due) || !w.renewals[1].Equal(due.Add(time.Second)) {
		t.Fatalf("renewals at %v, want at +1h and, after the failure, +1h1s", offsets(w.renewals))
	}
	if len(w.certs) == 0 || !w.certs[0].at.Equal(base.Add(time.Hour+500*time.Millisecond)) {
		t.Errorf("%d certificates issued, want the first at the sign-in, between the renewal attempts", len(w.certs))
	}
	if dials != 2 {
		t.Errorf("%d clients made, want 2 (at start and after the renewal)", dials)
	}
	dev, err := loadDevice(s.home.deviceDir(simServer))
	if err != nil || !dev.expires().Equal(due.Add(time.Second+7*24*time.Hour)) {
		t.Errorf("stored device certificate: %v, %v", dev, err)
	}
}
