package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca"
	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
)

// benchArgon2 hashes the bench users' passwords. It is cheap on purpose:
// each user signs in once, before anything is timed, so password hashing
// is not part of any row.
var benchArgon2 = ca.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}

func benchArgon2String() string { return argon2String(benchArgon2) }

func argon2String(p ca.Argon2Params) string {
	return fmt.Sprintf("argon2id t=%d m=%d KiB p=%d", p.Time, p.MemoryKiB, p.Threads)
}

const (
	benchPassword = "cabench-password"
	// userCAFile is the user CA private key in the data dir (DESIGN.md
	// section 2; package ca writes it as an OpenSSH private key).
	userCAFile = "user_ca"
)

// benchUser is a user the load signs certificates for, with the key to
// certify and an open sign-in session.
type benchUser struct {
	name    string
	pub     ssh.PublicKey
	body    []byte // JSON api.SignUserRequest for pub
	otpauth string // the TOTP enrollment URI
	session string
}

// env is the authority under test and what the phases share.
type env struct {
	opts    Options
	tmp     string // removed by close
	dataDir string
	a       *ca.Authority
	info    api.CAInfo

	userCA     ssh.Signer // the same key the authority signs user certificates with
	userCAPath string

	url        string // https://127.0.0.1:port
	tr         *http.Transport
	proto      string // what the transport negotiated, e.g. "TLS 1.3, HTTP/1.1"
	stopServer context.CancelFunc
	served     chan error

	users []benchUser
	// signIns are users that never signed in, one per request of the
	// sign-in row (a TOTP code is accepted once per user and time step).
	signIns []benchUser
	// st is the authority's store, opened here for its counters.
	st *backend
}

// newEnv makes a fresh authority in a temporary data dir, serves its API
// on a loopback port, and creates and signs in the bench users.
func newEnv(ctx context.Context, opts Options) (_ *env, err error) {
	tmp, err := os.MkdirTemp(opts.Dir, "cabench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	e := &env{opts: opts, tmp: tmp, dataDir: filepath.Join(tmp, "data")}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	// The bench opens the store itself to read its group-commit counters.
	if err := os.MkdirAll(e.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if e.st, err = openBackend(ctx, opts, tmp, e.dataDir); err != nil {
		return nil, err
	}
	if e.a, err = ca.New(ca.Config{DataDir: e.dataDir, Argon2: benchArgon2, Store: e.st.db}); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	e.info = e.a.Info()
	if err := e.loadUserCA(); err != nil {
		return nil, err
	}
	if err := e.serve(); err != nil {
		return nil, err
	}
	if e.users, err = e.addUsers(ctx, "bench", max(opts.Callers, slices.Max(opts.Clients))); err != nil {
		return nil, err
	}
	if opts.has(PhaseSignIn) {
		if e.signIns, err = e.addUsers(ctx, "signin", opts.signIns()); err != nil {
			return nil, err
		}
	}
	if opts.has(PhaseAPI) || opts.has(PhaseFloor) || opts.has(PhaseLatency) {
		if err := e.signIn(ctx); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *env) close() {
	if e.stopServer != nil {
		e.stopServer()
		<-e.served
	}
	if e.tr != nil {
		e.tr.CloseIdleConnections()
	}
	if e.a != nil {
		_ = e.a.Close()
	}
	if e.st != nil {
		e.st.close()
	}
	_ = os.RemoveAll(e.tmp)
}

// loadUserCA reads the user CA key the authority made, for phases 1 and 5,
// and checks that it is the one the authority publishes.
func (e *env) loadUserCA() error {
	e.userCAPath = filepath.Join(e.dataDir, userCAFile)
	b, err := os.ReadFile(e.userCAPath)
	if err != nil {
		return fmt.Errorf("bench: reading the user CA key: %w", err)
	}
	if e.userCA, err = ssh.ParsePrivateKey(b); err != nil {
		return fmt.Errorf("bench: %s: %w", e.userCAPath, err)
	}
	got := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(e.userCA.PublicKey())))
	if got != e.info.UserCA {
		return fmt.Errorf("bench: %s is not the authority's user CA key", e.userCAPath)
	}
	if t := e.userCA.PublicKey().Type(); t != ssh.KeyAlgoED25519 {
		return fmt.Errorf("bench: user CA key is %s, want ed25519", t)
	}
	return nil
}

// serve runs ca.Server on a loopback port and prepares the one HTTP
// transport all load clients share.
func (e *env) serve() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	srv, err := ca.NewServer(e.a, ca.ServerConfig{Listener: l, TLSNames: []string{"127.0.0.1"}})
	if err != nil {
		l.Close()
		return fmt.Errorf("bench: %w", err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	e.stopServer, e.served = cancel, make(chan error, 1)
	go func() { e.served <- srv.Serve(sctx) }()
	e.url = "https://" + l.Addr().String()

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(e.info.TLSRoot)) {
		return errors.New("bench: the authority's TLS root is not PEM")
	}
	conns := max(slices.Max(e.opts.Clients), 1)
	e.tr = &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        2 * conns,
		MaxIdleConnsPerHost: 2 * conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		Protocols:           new(http.Protocols),
	}
	// One TLS connection per client, as N separate keyhelpers would
	// have; HTTP/2 would multiplex them all over one.
	e.tr.Protocols.SetHTTP1(true)
	return e.ping()
}

// ping checks that the server answers and notes the protocol versions.
func (e *env) ping() error {
	hc := &http.Client{Transport: e.tr, Timeout: 10 * time.Second}
	resp, err := hc.Get(e.url + api.PathPing)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		return fmt.Errorf("bench: %s answered %s", api.PathPing, resp.Status)
	}
	e.proto = tls.VersionName(resp.TLS.Version) + ", " + resp.Proto
	return nil
}

// addUsers creates n users named prefix000, prefix001, ..., each with a
// personal role and its own ed25519 key to certify.
func (e *env) addUsers(ctx context.Context, prefix string, n int) ([]benchUser, error) {
	users := make([]benchUser, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			u := &users[i]
			u.name = fmt.Sprintf("%s%03d", prefix, i)
			pub, _, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				errs[i] = err
				return
			}
			if u.pub, err = ssh.NewPublicKey(pub); err != nil {
				errs[i] = err
				return
			}
			u.body, _ = json.Marshal(api.SignUserRequest{PublicKey: string(ssh.MarshalAuthorizedKey(u.pub))})
			resp, err := e.a.AddUser(ctx, api.AddUserRequest{
				Name: u.name, Logins: []string{u.name, "deploy"}, Password: benchPassword,
			}, "cabench")
			if err != nil {
				errs[i] = fmt.Errorf("adding user %s: %w", u.name, err)
				return
			}
			u.otpauth = resp.OTPAuthURI
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return users, nil
}

// signIn signs every user in once over the HTTPS API (password + TOTP,
// through package ca/client with the TLS pin), then checks one issued
// certificate end to end.
func (e *env) signIn(ctx context.Context) error {
	cl, err := client.New(e.url, client.Options{Pin: e.info.Pin})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	errs := make([]error, len(e.users))
	var wg sync.WaitGroup
	for i := range e.users {
		wg.Go(func() {
			u := &e.users[i]
			key, err := otp.NewKeyFromURL(u.otpauth)
			if err != nil {
				errs[i] = err
				return
			}
			code, err := totp.GenerateCode(key.Secret(), time.Now())
			if err != nil {
				errs[i] = err
				return
			}
			resp, err := cl.Login(ctx, api.LoginRequest{User: u.name, Password: benchPassword, TOTP: code})
			if err != nil {
				errs[i] = fmt.Errorf("signing in %s: %w", u.name, err)
				return
			}
			u.session = resp.Session
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	u := e.users[0]
	c, err := cl.SignUser(ctx, u.session, api.SignUserRequest{PublicKey: string(ssh.MarshalAuthorizedKey(u.pub))})
	if err != nil {
		return fmt.Errorf("bench: first certificate over the API: %w", err)
	}
	return e.checkCert([]byte(c.Certificate), u)
}

// checkCert checks that an issued certificate certifies u's key for u and
// is signed by the user CA.
func (e *env) checkCert(authorized []byte, u benchUser) error {
	k, _, _, _, err := ssh.ParseAuthorizedKey(authorized)
	if err != nil {
		return fmt.Errorf("bench: issued certificate does not parse: %w", err)
	}
	c, ok := k.(*ssh.Certificate)
	switch {
	case !ok:
		return errors.New("bench: the API returned a key, not a certificate")
	case c.KeyId != u.name || !slices.Contains(c.ValidPrincipals, u.name):
		return fmt.Errorf("bench: certificate for %q has key id %q and principals %v", u.name, c.KeyId, c.ValidPrincipals)
	case string(c.Key.Marshal()) != string(u.pub.Marshal()):
		return errors.New("bench: certificate certifies another key")
	case string(c.SignatureKey.Marshal()) != string(e.userCA.PublicKey().Marshal()):
		return errors.New("bench: certificate is not signed by the user CA")
	}
	return nil
}

// cpu is the CPU time this process, its waited-for children and the
// store's server process (etcd) have used.
func (e *env) cpu() time.Duration { return cpuTime() + e.st.serverCPU() }

func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.opts.Progress, "cabench: "+format+"\n", args...)
}
