package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/internal/testbin"
)

// totpCode returns the current TOTP code of the otpauth URI's secret,
// computed by the real oathtool.
func totpCode(t *testing.T, oathtool, otpauthURI string) string {
	t.Helper()
	u, err := url.Parse(otpauthURI)
	if err != nil {
		t.Fatalf("otpauth URI %q: %v", otpauthURI, err)
	}
	secret := u.Query().Get("secret")
	if u.Scheme != "otpauth" || u.Host != "totp" || secret == "" {
		t.Fatalf("otpauth URI %q has no TOTP secret", otpauthURI)
	}
	out, err := exec.Command(oathtool, "--totp", "-b", secret).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// signIn adds user with a password through the admin API and signs in
// over HTTPS with password and TOTP code. A code works once per 30 s step,
// so call it once per user.
func signIn(t *testing.T, c *testbin.CA, user string) (*client.Client, string) {
	t.Helper()
	oathtool, err := exec.LookPath("oathtool")
	if err != nil {
		t.Skip("needs oathtool (package oathtool) to compute TOTP codes")
	}
	ctx := bg(t)
	const password = "correct horse battery staple"
	added, err := c.Admin().AddUser(ctx, api.AddUserRequest{Name: user, Logins: []string{user}, Password: password})
	if err != nil {
		t.Fatalf("AddUser: %v", err)
	}
	hc := c.HTTPS()
	login, err := hc.Login(ctx, api.LoginRequest{User: user, Password: password, TOTP: totpCode(t, oathtool, added.OTPAuthURI)})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	return hc, login.Session
}

func publicKeys(t *testing.T, n int) []string {
	t.Helper()
	keys := make([]string, n)
	for i := range keys {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sp, err := ssh.NewPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
	}
	return keys
}

// kill -9 teleport-ca while a client is issuing certificates as fast as it
// can; after restart the store opens cleanly and every certificate the
// client received is in the issuance log.
func TestCrashSafety(t *testing.T) {
	t.Parallel()
	const (
		workers  = 8
		minCerts = 50
		runFor   = 1500 * time.Millisecond
	)
	c := testbin.StartCA(t)
	hc, session := signIn(t, c, "alice")
	keys := publicKeys(t, 16)

	var (
		mu       sync.Mutex
		received = map[string]int{} // serial → times received
		count    atomic.Int64
		killed   atomic.Bool
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for w := range workers {
		wg.Go(func() {
			for n := w; ctx.Err() == nil; n += workers {
				cert, err := hc.SignUser(ctx, session, api.SignUserRequest{PublicKey: keys[n%len(keys)]})
				if err != nil {
					if !killed.Load() {
						t.Errorf("SignUser before the kill: %v", err)
					}
					return
				}
				if cert.Serial == "" || cert.Serial == "0" || cert.KeyID != "alice" {
					t.Errorf("SignUser returned %+v", cert)
				}
				mu.Lock()
				received[cert.Serial]++
				mu.Unlock()
				count.Add(1)
			}
		})
	}

	start := time.Now()
	for time.Since(start) < runFor || count.Load() < minCerts {
		if time.Since(start) > 15*time.Second || t.Failed() {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	killed.Store(true)
	elapsed := time.Since(start)
	c.Kill()
	cancel()
	wg.Wait()
	if n := count.Load(); n < minCerts {
		t.Fatalf("only %d certificates in %v before the kill, want at least %d", n, elapsed, minCerts)
	}
	noErrorLogs(t, "teleport-ca before the kill", c.Stderr.String())

	c2 := testbin.Start(t, testbin.Config{DataDir: c.DataDir, AdminSocket: c.AdminSocket})
	adm := c2.Admin()
	actx := bg(t)
	logged, err := adm.Certs(actx, client.CertFilter{})
	if err != nil {
		t.Fatalf("listing issued certificates after restart: %v", err)
	}
	inLog := make(map[string]api.IssuedCert, len(logged))
	for _, ic := range logged {
		inLog[ic.Serial] = ic
	}
	var missing []string
	for serial, n := range received {
		if n > 1 {
			t.Errorf("serial %s was issued %d times", serial, n)
		}
		ic, ok := inLog[serial]
		if !ok {
			missing = append(missing, serial)
			continue
		}
		if ic.Type != "user" || ic.KeyID != "alice" {
			t.Errorf("log record of serial %s = %+v, want a user certificate of alice", serial, ic)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d certificates the client received are not in the issuance log after kill -9: %v",
			len(missing), len(received), missing)
	}
	t.Logf("client received %d certificates in %v; issuance log holds %d", len(received), elapsed.Round(time.Millisecond), len(logged))

	// The per-serial lookup finds them too.
	for serial := range received {
		got, err := adm.Certs(actx, client.CertFilter{Serial: serial})
		if err != nil || len(got) != 1 || got[0].Serial != serial {
			t.Errorf("Certs(serial %s) = %+v, %v", serial, got, err)
		}
		break
	}

	// And the restarted CA still issues.
	if _, err := c2.HTTPS().SignUser(actx, session, api.SignUserRequest{PublicKey: keys[0]}); err != nil {
		t.Errorf("SignUser after restart with the old session: %v", err)
	}
	noErrorLogs(t, "teleport-ca after the restart", c2.Stderr.String())
}
