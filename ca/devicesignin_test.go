package ca

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// registerTestDevice registers a device for user and returns it as the
// server would see it, plus an mTLS client.
func registerTestDevice(t *testing.T, a *Authority, user string) (*device, *http.Client) {
	t.Helper()
	key, pub := newDeviceKey(t)
	id, err := a.RegisterDevice(context.Background(), api.RegisterDeviceRequest{Token: keyhelperToken(t, a, user), User: user, PublicKey: pub}, "test")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(id.Certificate))
	leaf, _ := x509.ParseCertificate(blk.Bytes)
	d, err := a.authenticateDevice(context.Background(), leaf)
	if err != nil {
		t.Fatal(err)
	}
	return d, deviceClient(t, a, key, id.Certificate)
}

func TestWaitSignIn(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	ctx := context.Background()
	secret := addUser(t, a, "eve", []string{"eve"}, nil)
	d, _ := registerTestDevice(t, a, "eve")

	// Signed out: an unchanged state waits out the wait.
	start := time.Now()
	st, err := a.WaitSignIn(ctx, d, api.SignInState{}, 300*time.Millisecond)
	if err != nil || st.SignedIn || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("unchanged state: %+v %v after %v", st, err, time.Since(start))
	}

	// A sign-in wakes the waiter at once.
	code := oathtool(t, secret, clk.Now())
	signedIn := make(chan api.LoginResponse, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		lr, err := login(a, "eve", pw, code)
		if err != nil {
			t.Error(err)
		}
		signedIn <- lr
	}()
	start = time.Now()
	st, err = a.WaitSignIn(ctx, d, api.SignInState{}, 10*time.Second)
	if err != nil || !st.SignedIn || !st.Expires.Equal(clk.Now().Add(12*time.Hour)) || time.Since(start) > 5*time.Second {
		t.Fatalf("after sign-in: %+v %v after %v", st, err, time.Since(start))
	}
	lr := <-signedIn
	// A logout wakes it again.
	go func() {
		time.Sleep(200 * time.Millisecond)
		a.Logout(ctx, lr.Session, "test")
	}()
	if st2, err := a.WaitSignIn(ctx, d, st, 10*time.Second); err != nil || st2.SignedIn {
		t.Fatalf("after logout: %+v %v", st2, err)
	}
	// A lock ends the device's access.
	go func() {
		time.Sleep(200 * time.Millisecond)
		a.LockUser(ctx, "eve", api.LockRequest{}, "test")
	}()
	var le *LockedError
	if _, err := a.WaitSignIn(ctx, d, api.SignInState{}, 10*time.Second); !errors.As(err, &le) {
		t.Fatalf("after lock: %v", err)
	}
}

// TestWaitSignInExpiry uses the real clock: the expiry of a sign-in is
// announced by no write, only by time.
func TestWaitSignInExpiry(t *testing.T) {
	a, _ := newTestAuthority(t, func(c *Config) { c.Clock, c.SignInTTL = nil, 2*time.Second })
	ctx := context.Background()
	secret := addUser(t, a, "fin", []string{"fin"}, nil)
	d, _ := registerTestDevice(t, a, "fin")
	if _, err := login(a, "fin", pw, oathtool(t, secret, time.Now())); err != nil {
		t.Fatal(err)
	}
	st, _, _ := a.SignInState(ctx, "fin")
	if !st.SignedIn {
		t.Fatal("not signed in")
	}
	start := time.Now()
	st, err := a.WaitSignIn(ctx, d, st, 10*time.Second)
	if err != nil || st.SignedIn || time.Since(start) > 6*time.Second {
		t.Fatalf("after expiry: %+v %v after %v", st, err, time.Since(start))
	}
}

func TestDeviceCertOverMTLS(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	secret := addUser(t, a, "gus", []string{"gus", "web"}, nil)
	_, base := startServer(t, a)
	_, c := registerTestDevice(t, a, "gus")
	ask := func(ttl string) (int, api.Cert, api.Error) {
		body := `{"public_key":"` + authorizedKey(newPub(t)) + `","ttl":"` + ttl + `"}`
		resp, err := c.Post(base+api.PathDeviceCert, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var cert api.Cert
		var e api.Error
		json.Unmarshal(b, &cert)
		json.Unmarshal(b, &e)
		return resp.StatusCode, cert, e
	}
	// Not signed in: refused, saying to sign in.
	if status, _, e := ask("1h"); status != 401 || e.Code != api.CodeSessionExpired {
		t.Fatalf("without a sign-in: %d %+v", status, e)
	}
	if _, err := login(a, "gus", pw, oathtool(t, secret, clk.Now())); err != nil {
		t.Fatal(err)
	}
	status, cert, e := ask("1h")
	if status != 200 || cert.KeyID != "gus" || cert.ValidBefore.Sub(clk.Now()) != time.Hour {
		t.Fatalf("signed in: %d %+v %+v", status, cert, e)
	}
	// Never beyond the sign-in (12h): a 20h request is cut to it.
	if status, cert, _ := ask("20h"); status != 200 || !cert.ValidBefore.Equal(clk.Now().Add(12*time.Hour)) {
		t.Fatalf("20h asked: %d valid before %v, want the sign-in's end %v", status, cert.ValidBefore, clk.Now().Add(12*time.Hour))
	}
	// The long poll over HTTP answers at once when the state differs.
	resp, err := c.Get(base + api.PathDeviceSignIn + "?signed_in=false&wait=5s")
	if err != nil {
		t.Fatal(err)
	}
	var st api.SignInState
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if resp.StatusCode != 200 || !st.SignedIn {
		t.Fatalf("signin poll: %d %+v", resp.StatusCode, st)
	}
	evs, _ := a.Audit(context.Background(), AuditFilter{Type: "cert.issue", User: "gus"})
	if len(evs) != 2 || !strings.HasPrefix(evs[0].Actor, "device:") {
		t.Fatalf("issuance records = %+v, want two by the device", evs)
	}
}

func TestSessionCapsCertificate(t *testing.T) {
	a, clk := newTestAuthority(t, func(c *Config) { c.SignInTTL = 2 * time.Hour })
	secret := addUser(t, a, "hub", []string{"hub"}, nil)
	lr, err := login(a, "hub", pw, oathtool(t, secret, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := a.SignWithSession(context.Background(), lr.Session, api.SignUserRequest{PublicKey: authorizedKey(newPub(t)), TTL: api.Duration(8 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Unix(int64(c.ValidBefore), 0); !got.Equal(clk.Now().Add(2 * time.Hour)) {
		t.Fatalf("certificate valid until %v, want the sign-in's end %v", got, clk.Now().Add(2*time.Hour))
	}
}

// A revocation wakes a pending poll at once.
func TestWaitSignInRevoked(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	addUser(t, a, "ivo", []string{"ivo"}, nil)
	d, _ := registerTestDevice(t, a, "ivo")
	go func() {
		time.Sleep(200 * time.Millisecond)
		a.RevokeDevice(ctx, "ivo", d.rec.ID, "test")
	}()
	start := time.Now()
	if _, err := a.WaitSignIn(ctx, d, api.SignInState{}, 10*time.Second); !errors.Is(err, ErrBadDevice) || time.Since(start) > 5*time.Second {
		t.Fatalf("revoked while waiting: %v after %v", err, time.Since(start))
	}
}

// Shutdown answers pending polls at once (503) instead of waiting them
// out, while the store is still open.
func TestShutdownEndsPolls(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	addUser(t, a, "jan", []string{"jan"}, nil)
	_, c := registerTestDevice(t, a, "jan")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(a, ServerConfig{Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx) }()
	base := "https://" + ln.Addr().String()

	type answer struct {
		status int
		e      api.Error
	}
	polled := make(chan answer, 1)
	go func() {
		resp, err := c.Get(base + api.PathDeviceSignIn + "?signed_in=false&wait=20s")
		if err != nil {
			polled <- answer{}
			return
		}
		defer resp.Body.Close()
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		polled <- answer{resp.StatusCode, e}
	}()
	time.Sleep(300 * time.Millisecond) // the poll is waiting
	start := time.Now()
	cancel()
	got := <-polled
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if got.status != http.StatusServiceUnavailable || got.e.Code != api.CodeUnavailable {
		t.Errorf("pending poll at shutdown: %d %+v, want 503 unavailable", got.status, got.e)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %v with a poll pending; want it at once", d)
	}
}
