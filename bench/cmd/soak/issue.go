package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
)

const issuePassword = "soak-issue-password"

// issuer is the steady issuance load: users that sign in over the HTTPS
// API (password + TOTP) and ask for user certificates (POST
// /v1/certs/user with the bearer session) at a fixed rate, open loop, as
// keyhelpers do. Each user signs in again every resignEvery.
type issuer struct {
	cl          *client.Client
	rate        float64
	resignEvery time.Duration
	users       []*issueUser

	ok, failed, signIns, signInFails atomic.Int64
	inflight                         atomic.Int64

	mu        sync.Mutex
	latencies []time.Duration
	errs      []string // the first few
	start     time.Time
	elapsed   time.Duration
}

type issueUser struct {
	name, otpauth string
	body          api.SignUserRequest
	pub           ssh.PublicKey

	mu       sync.Mutex
	session  string
	signedIn time.Time
}

// maxInflight caps outstanding issuance requests; a tick that finds it
// reached counts as a failure (the CA fell behind the offered load).
const maxInflight = 256

func newIssuer(ctx context.Context, c *cluster, users int, rate float64) (*issuer, error) {
	cl, err := client.New(c.caURL(), client.Options{Pin: c.info.Pin})
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	is := &issuer{cl: cl, rate: rate, resignEvery: time.Minute}
	for i := range users {
		name := fmt.Sprintf("issue%02d", i)
		resp, err := c.admin.AddUser(ctx, api.AddUserRequest{Name: name, Logins: []string{name}, Password: issuePassword})
		if err != nil {
			return nil, fmt.Errorf("soak: adding %s: %w", name, err)
		}
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		sp, err := ssh.NewPublicKey(pub)
		if err != nil {
			return nil, err
		}
		u := &issueUser{name: name, otpauth: resp.OTPAuthURI, pub: sp,
			body: api.SignUserRequest{PublicKey: string(ssh.MarshalAuthorizedKey(sp))}}
		if err := is.signIn(ctx, u); err != nil {
			return nil, fmt.Errorf("soak: first sign-in: %w", err)
		}
		is.users = append(is.users, u)
	}
	return is, nil
}

// signIn signs u in with its password and the current TOTP code.
func (is *issuer) signIn(ctx context.Context, u *issueUser) error {
	is.signIns.Add(1)
	key, err := otp.NewKeyFromURL(u.otpauth)
	if err == nil {
		var code string
		if code, err = totp.GenerateCode(key.Secret(), time.Now()); err == nil {
			var resp api.LoginResponse
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			resp, err = is.cl.Login(cctx, api.LoginRequest{User: u.name, Password: issuePassword, TOTP: code})
			cancel()
			if err == nil {
				u.mu.Lock()
				u.session, u.signedIn = resp.Session, time.Now()
				u.mu.Unlock()
			}
		}
	}
	if err != nil {
		is.signInFails.Add(1)
		is.note(fmt.Sprintf("sign-in %s: %v", u.name, err))
	}
	return err
}

// run offers the load until ctx ends, then waits for outstanding
// requests.
func (is *issuer) run(ctx context.Context) {
	var wg sync.WaitGroup
	is.start = time.Now()
	tick := time.NewTicker(time.Duration(float64(time.Second) / is.rate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			is.elapsed = time.Since(is.start)
			wg.Wait()
			return
		case <-tick.C:
		}
		u := is.users[i%len(is.users)]
		if is.inflight.Load() >= maxInflight {
			is.failed.Add(1)
			is.note("backlog: the CA fell behind the offered rate")
			continue
		}
		is.inflight.Add(1)
		wg.Go(func() {
			defer is.inflight.Add(-1)
			u.mu.Lock()
			stale := time.Since(u.signedIn) > is.resignEvery
			if stale {
				u.signedIn = time.Now() // one sign-in at a time per user
			}
			u.mu.Unlock()
			if stale {
				_ = is.signIn(context.WithoutCancel(ctx), u)
			}
			is.issue(context.WithoutCancel(ctx), u)
		})
	}
}

func (is *issuer) issue(ctx context.Context, u *issueUser) {
	u.mu.Lock()
	sess := u.session
	u.mu.Unlock()
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := is.cl.SignUser(cctx, sess, u.body)
	took := time.Since(start)
	if err == nil {
		err = checkIssued(c, u)
	}
	if err != nil {
		is.failed.Add(1)
		is.note(fmt.Sprintf("certificate for %s: %v", u.name, err))
		return
	}
	is.ok.Add(1)
	is.mu.Lock()
	is.latencies = append(is.latencies, took)
	is.mu.Unlock()
}

// checkIssued checks that the answer certifies u's key for u.
func checkIssued(c api.Cert, u *issueUser) error {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.Certificate))
	if err != nil {
		return fmt.Errorf("the certificate does not parse: %w", err)
	}
	cert, ok := k.(*ssh.Certificate)
	switch {
	case !ok:
		return fmt.Errorf("a plain key, not a certificate")
	case cert.CertType != ssh.UserCert || cert.KeyId != u.name || !slices.Contains(cert.ValidPrincipals, u.name):
		return fmt.Errorf("type %d, key id %q, principals %v", cert.CertType, cert.KeyId, cert.ValidPrincipals)
	case string(cert.Key.Marshal()) != string(u.pub.Marshal()):
		return fmt.Errorf("it certifies another key")
	}
	return nil
}

func (is *issuer) note(msg string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if len(is.errs) < 10 {
		is.errs = append(is.errs, time.Now().UTC().Format("15:04:05 ")+msg)
	}
}

// issueStats are the load's figures.
type issueStats struct {
	ok, failed, signIns, signInFails int64
	rate                             float64 // achieved certificates/s
	p50, p99, max                    time.Duration
	errs                             []string
}

func (is *issuer) stats() issueStats {
	is.mu.Lock()
	defer is.mu.Unlock()
	st := issueStats{ok: is.ok.Load(), failed: is.failed.Load(), signIns: is.signIns.Load(),
		signInFails: is.signInFails.Load(), errs: is.errs}
	if is.elapsed > 0 {
		st.rate = float64(st.ok) / is.elapsed.Seconds()
	}
	if l := slices.Clone(is.latencies); len(l) > 0 {
		slices.Sort(l)
		st.p50, st.p99, st.max = l[len(l)/2], l[len(l)*99/100], l[len(l)-1]
	}
	return st
}
