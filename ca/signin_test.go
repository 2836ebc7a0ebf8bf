package ca

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
)

func login(a *Authority, user, pw, code string) (api.LoginResponse, error) {
	return a.Login(context.Background(), api.LoginRequest{User: user, Password: pw, TOTP: code}, "192.0.2.10")
}

const pw = "correct horse battery"

func TestLoginTOTPWithOathtool(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	secret := addUser(t, a, "alice", []string{"alice"}, nil)
	now := clk.Now()

	// One step of skew either way is accepted; two are not.
	tests := []struct {
		name    string
		at      time.Duration // code computed at now+at
		wantErr error
	}{
		{"two steps early", -60 * time.Second, ErrBadCredentials},
		{"one step early", -30 * time.Second, nil},
		{"current step", 0, nil},
		{"one step ahead", 30 * time.Second, nil},
		{"two steps ahead", 60 * time.Second, ErrBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A fresh user per case: each accepted code raises the
			// replay floor.
			name := map[string]string{"two steps early": "u1", "one step early": "u2", "current step": "u3", "one step ahead": "u4", "two steps ahead": "u5"}[tt.name]
			s := addUser(t, a, name, []string{name}, nil)
			_, err := login(a, name, pw, oathtool(t, s, now.Add(tt.at)))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}

	resp, err := login(a, "alice", pw, oathtool(t, secret, now))
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if resp.Session == "" || !resp.Expires.Equal(now.Add(12*time.Hour)) {
		t.Errorf("session %+v, want a token expiring after 12h", resp)
	}
	// The same code again, and an older one, are replays.
	if _, err := login(a, "alice", pw, oathtool(t, secret, now)); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("replayed code: err = %v", err)
	}
	if _, err := login(a, "alice", pw, oathtool(t, secret, now.Add(-30*time.Second))); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("older code after newer: err = %v", err)
	}
	// The next step's code works.
	clk.Advance(30 * time.Second)
	if _, err := login(a, "alice", pw, oathtool(t, secret, clk.Now())); err != nil {
		t.Fatalf("next step: %v", err)
	}
	evs, err := a.Audit(context.Background(), AuditFilter{User: "alice", Type: "user.login"})
	if err != nil {
		t.Fatal(err)
	}
	var ok, failed int
	for _, e := range evs {
		if e.Success {
			ok++
		} else {
			failed++
			if e.Fields["reason"] != "code already used" {
				t.Errorf("failure reason %q", e.Fields["reason"])
			}
		}
	}
	if ok != 2 || failed != 2 {
		t.Errorf("audit: %d successes, %d failures; want 2 and 2", ok, failed)
	}
}

// TestConcurrentReplay: many sign-ins racing with one code; exactly one
// wins.
func TestConcurrentReplay(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	secret := addUser(t, a, "bob", []string{"bob"}, nil)
	code := oathtool(t, secret, clk.Now())
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := login(a, "bob", pw, code); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d sign-ins succeeded with one code, want 1", wins)
	}
}

func TestLockoutAfterFailures(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	secret := addUser(t, a, "carol", []string{"carol"}, nil)
	now := clk.Now()
	for i := 1; i <= 4; i++ {
		if _, err := login(a, "carol", "wrong password!", oathtool(t, secret, now)); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure %d: err = %v", i, err)
		}
	}
	var le *LockedError
	if _, err := login(a, "carol", pw, "000000"); !errors.As(err, &le) {
		t.Fatalf("fifth failure (wrong code): err = %v, want LockedError", err)
	}
	if !le.Until.Equal(now.Add(15 * time.Minute)) {
		t.Errorf("locked until %v, want %v", le.Until, now.Add(15*time.Minute))
	}
	// Right password and code are refused while locked.
	if _, err := login(a, "carol", pw, oathtool(t, secret, now)); !errors.As(err, &le) {
		t.Fatalf("while locked: err = %v", err)
	}
	clk.Advance(15*time.Minute + time.Second)
	if _, err := login(a, "carol", pw, oathtool(t, secret, clk.Now())); err != nil {
		t.Fatalf("after lockout ends: %v", err)
	}
	// A success resets the count: four more failures do not lock.
	for range 4 {
		login(a, "carol", "wrong password!", "123456")
	}
	clk.Advance(30 * time.Second)
	if _, err := login(a, "carol", pw, oathtool(t, secret, clk.Now())); err != nil {
		t.Fatalf("count not reset by success: %v", err)
	}
	locks, _ := a.Audit(context.Background(), AuditFilter{User: "carol", Type: "user.lock"})
	if len(locks) != 1 || locks[0].Actor != "ca" {
		t.Errorf("lock audit events = %+v, want one by the CA", locks)
	}
}

func TestLockoutConfigurable(t *testing.T) {
	a, clk := newTestAuthority(t, func(c *Config) { c.MaxFailedLogins, c.LockoutDuration = 2, time.Hour })
	addUser(t, a, "dan", []string{"dan"}, nil)
	login(a, "dan", "nope nope", "111111")
	var le *LockedError
	if _, err := login(a, "dan", "nope nope", "111111"); !errors.As(err, &le) || !le.Until.Equal(clk.Now().Add(time.Hour)) {
		t.Fatalf("err = %v, want lock for 1h after 2 failures", err)
	}
}

func TestAdminLockAndSessions(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	ctx := context.Background()
	secret := addUser(t, a, "erin", []string{"erin"}, nil)
	resp, err := login(a, "erin", pw, oathtool(t, secret, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	sign := func() error {
		_, err := a.SignWithSession(ctx, resp.Session, api.SignUserRequest{PublicKey: authorizedKey(newPub(t))})
		return err
	}
	if err := sign(); err != nil {
		t.Fatalf("sign within session: %v", err)
	}
	until := clk.Now().Add(time.Hour)
	if err := a.LockUser(ctx, "erin", api.LockRequest{Until: &until, Reason: "laptop stolen"}, "test"); err != nil {
		t.Fatal(err)
	}
	var le *LockedError
	if err := sign(); !errors.As(err, &le) || le.Reason != "laptop stolen" {
		t.Fatalf("sign while locked: %v", err)
	}
	if err := a.UnlockUser(ctx, "erin", "test"); err != nil {
		t.Fatal(err)
	}
	if err := sign(); err != nil {
		t.Fatalf("sign after unlock: %v", err)
	}
	// The session ends after SignInTTL.
	clk.Advance(12 * time.Hour)
	if err := sign(); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("sign after 12h: %v, want ErrSessionExpired", err)
	}
	if _, err := a.SignWithSession(ctx, "made-up", api.SignUserRequest{PublicKey: authorizedKey(newPub(t))}); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("unknown session: %v", err)
	}
	// Locking with an end in the past is refused.
	past := clk.Now().Add(-time.Minute)
	if err := a.LockUser(ctx, "erin", api.LockRequest{Until: &past}, "test"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("lock in the past: %v", err)
	}
}

func TestLogoutAndRemoveEndSessions(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	ctx := context.Background()
	secret := addUser(t, a, "fay", []string{"fay"}, nil)
	r1, err := login(a, "fay", pw, oathtool(t, secret, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * time.Second)
	r2, err := login(a, "fay", pw, oathtool(t, secret, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Logout(ctx, r1.Session, "test"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.sessionUser(ctx, r1.Session); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("after logout: %v", err)
	}
	if _, _, err := a.sessionUser(ctx, r2.Session); err != nil {
		t.Fatalf("other session ended by logout: %v", err)
	}
	if err := a.RemoveUser(ctx, "fay", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.Get(ctx, sessionKey(r2.Session)); !isStoreNotFound(err) {
		t.Fatalf("session record survived user removal: %v", err)
	}
}

func TestLoginRefusals(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	ctx := context.Background()
	resp, err := a.AddUser(ctx, api.AddUserRequest{Name: "pending", Logins: []string{"pending"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if resp.EnrollURL == "" || resp.OTPAuthURI != "" || !resp.EnrollExpires.Equal(clk.Now().Add(24*time.Hour)) {
		t.Errorf("pending user response %+v", resp)
	}
	tests := []struct {
		name, user, pw, code string
		wantErr              error
	}{
		{"unknown user", "ghost", pw, "123456", ErrBadCredentials},
		{"malformed user", "a\"b", pw, "123456", ErrBadCredentials},
		{"not enrolled", "pending", pw, "123456", ErrNotEnrolled},
		{"empty code", "pending", "", "", ErrNotEnrolled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := login(a, tt.user, tt.pw, tt.code); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
	evs, _ := a.Audit(ctx, AuditFilter{Type: "user.login"})
	if len(evs) != len(tests) {
		t.Fatalf("%d login audit events, want %d (every failure is audited)", len(evs), len(tests))
	}
	for _, e := range evs {
		if e.Success || e.Remote != "192.0.2.10" {
			t.Errorf("event %+v", e)
		}
	}
}
