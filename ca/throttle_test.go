package ca

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
)

func TestSignInThrottlePerAddress(t *testing.T) {
	a, clk := newTestAuthority(t, func(c *Config) {
		c.SignInFailuresPerAddress, c.SignInFailureWindow = 5, 10*time.Minute
	})
	ctx := context.Background()
	secret := addUser(t, a, "ann", []string{"ann"}, nil)
	try := func(user, pass, code, remote string) error {
		_, err := a.Login(ctx, api.LoginRequest{User: user, Password: pass, TOTP: code}, remote)
		return err
	}
	// Spraying: one guess each at five different (unknown) accounts.
	for i := range 5 {
		if err := try(fmt.Sprintf("victim%d", i), "guess", "000000", "198.51.100.7"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	// Now even the right credentials are refused from that address...
	var te *ThrottledError
	if err := try("ann", pw, oathtool(t, secret, clk.Now()), "198.51.100.7"); !errors.As(err, &te) || te.RetryAfter != 10*time.Minute {
		t.Fatalf("throttled address: %v", err)
	}
	// ...but not from another one.
	if err := try("ann", pw, oathtool(t, secret, clk.Now()), "203.0.113.9"); err != nil {
		t.Fatalf("other address: %v", err)
	}
	evs, _ := a.Audit(ctx, AuditFilter{Type: "signin.throttle"})
	if len(evs) != 1 || evs[0].Remote != "198.51.100.7" {
		t.Fatalf("throttle audit = %+v, want one event for the address", evs)
	}
	// The refusals while throttled are not audited one by one.
	before, _ := a.Audit(ctx, AuditFilter{Type: "user.login"})
	for range 50 {
		try("victim0", "guess", "000000", "198.51.100.7")
	}
	after, _ := a.Audit(ctx, AuditFilter{Type: "user.login"})
	if len(after) != len(before) {
		t.Fatalf("throttled refusals wrote %d audit events", len(after)-len(before))
	}
	// The window ends.
	clk.Advance(10*time.Minute + time.Second)
	if err := try("ann", pw, oathtool(t, secret, clk.Now()), "198.51.100.7"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestSignInThrottleDisabled(t *testing.T) {
	a, _ := newTestAuthority(t, func(c *Config) { c.SignInFailuresPerAddress = -1 })
	for i := range 30 {
		_, err := a.Login(context.Background(), api.LoginRequest{User: fmt.Sprintf("u%d", i), Password: "x", TOTP: "1"}, "198.51.100.7")
		if !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("attempt %d with throttling disabled: %v", i, err)
		}
	}
}

func TestThrottleHTTP(t *testing.T) {
	a, _ := newTestAuthority(t, func(c *Config) { c.SignInFailuresPerAddress = 2 })
	c, base := startServer(t, a)
	var status int
	var e api.Error
	for range 3 {
		status, e, _ = post(t, c, base+api.PathLogin, "application/json", "", `{"user":"nobody","password":"x","totp":"123456"}`)
	}
	if status != http.StatusTooManyRequests || e.Code != api.CodeTooMany {
		t.Fatalf("third failure from one address: %d %+v", status, e)
	}
	req, _ := http.NewRequest("POST", base+api.PathLogin, strings.NewReader(`{"user":"nobody","password":"x","totp":"123456"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 601 {
		t.Fatalf("Retry-After = %q, want seconds until the window ends", resp.Header.Get("Retry-After"))
	}
}
