package ca

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
)

func TestUpdateUser(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	all := map[string][]string{"*": {"*"}}
	for _, r := range []api.Role{{Name: "dev", Logins: []string{"dev"}, NodeLabels: all}, {Name: "ops", Logins: []string{"root"}, NodeLabels: all}} {
		if _, err := a.AddRole(ctx, r, "test"); err != nil {
			t.Fatal(err)
		}
	}
	addUser(t, a, "lee", []string{"lee"}, []string{"dev"})
	logins := func() []string {
		t.Helper()
		c, err := a.IssueUserCert(ctx, UserCertRequest{User: "lee", PublicKey: newPub(t)})
		if err != nil {
			var pe *PolicyError
			if errors.As(err, &pe) {
				return nil
			}
			t.Fatal(err)
		}
		return c.ValidPrincipals
	}
	ptr := func(s ...string) *[]string { return &s }

	steps := []struct {
		name       string
		req        api.UpdateUserRequest
		wantLogins []string
		wantErr    error
	}{
		{"swap granted role", api.UpdateUserRequest{Roles: ptr("ops")}, []string{"lee", "root"}, nil},
		{"change personal logins", api.UpdateUserRequest{Logins: ptr("lee", "www")}, []string{"lee", "root", "www"}, nil},
		{"drop personal role", api.UpdateUserRequest{Logins: ptr()}, []string{"root"}, nil},
		{"no roles at all", api.UpdateUserRequest{Roles: ptr()}, nil, nil},
		{"personal role back", api.UpdateUserRequest{Logins: ptr("lee")}, []string{"lee"}, nil},
		{"unknown role", api.UpdateUserRequest{Roles: ptr("nope")}, []string{"lee"}, ErrNotFound},
		{"personal role as granted role", api.UpdateUserRequest{Roles: ptr("user:lee")}, []string{"lee"}, ErrInvalid},
		{"bad login", api.UpdateUserRequest{Logins: ptr("a b")}, []string{"lee"}, ErrInvalid},
		{"nothing", api.UpdateUserRequest{}, []string{"lee"}, ErrInvalid},
	}
	for _, st := range steps {
		_, err := a.UpdateUser(ctx, "lee", st.req, "test")
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("%s: err = %v, want %v", st.name, err, st.wantErr)
		}
		if got := logins(); !slices.Equal(got, st.wantLogins) {
			t.Fatalf("%s: logins %v, want %v", st.name, got, st.wantLogins)
		}
	}
	if _, err := a.UpdateUser(ctx, "ghost", api.UpdateUserRequest{Roles: ptr("dev")}, "test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if evs, _ := a.Audit(ctx, AuditFilter{Type: "user.update"}); len(evs) != 5 {
		t.Errorf("%d user.update events, want 5 (one per successful update)", len(evs))
	}
}

func TestResetUser(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	ctx := context.Background()
	old := addUser(t, a, "max", []string{"max"}, nil)
	sess, err := login(a, "max", pw, oathtool(t, old, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}

	resp, err := a.ResetUser(ctx, "max", api.ResetUserRequest{Password: "a new password"}, "test")
	if err != nil || resp.OTPAuthURI == "" || resp.User.Status != "active" {
		t.Fatalf("reset: %+v, %v", resp, err)
	}
	if _, _, err := a.sessionUser(ctx, sess.Session); !errors.Is(err, ErrSessionExpired) {
		t.Fatalf("session survived the reset: %v", err)
	}
	clk.Advance(30 * time.Second)
	// The old password and the old authenticator no longer work.
	if _, err := login(a, "max", pw, oathtool(t, old, clk.Now())); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old credentials after reset: %v", err)
	}
	if _, err := login(a, "max", "a new password", oathtool(t, old, clk.Now())); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old authenticator after reset: %v", err)
	}
	secret := secretOf(t, resp.OTPAuthURI)
	if _, err := login(a, "max", "a new password", oathtool(t, secret, clk.Now())); err != nil {
		t.Fatalf("new credentials: %v", err)
	}

	// Without a password: pending again, with a new enrollment link.
	resp, err = a.ResetUser(ctx, "max", api.ResetUserRequest{}, "test")
	if err != nil || resp.EnrollURL == "" || resp.User.Status != "pending" {
		t.Fatalf("reset to pending: %+v, %v", resp, err)
	}
	first := resp.EnrollURL[strings.LastIndex(resp.EnrollURL, "/")+1:]
	// A second reset cancels the first link (it may have leaked).
	if _, err := a.ResetUser(ctx, "max", api.ResetUserRequest{}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Enrollment(ctx, first); !errors.Is(err, ErrBadEnrollment) {
		t.Fatalf("the first link still works after another reset: %v", err)
	}
	clk.Advance(30 * time.Second)
	if _, err := login(a, "max", "a new password", oathtool(t, secret, clk.Now())); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("after reset to pending: %v", err)
	}
	if _, err := a.ResetUser(ctx, "max", api.ResetUserRequest{Password: "short"}, "test"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short password: %v", err)
	}
	if evs, _ := a.Audit(ctx, AuditFilter{Type: "user.reset"}); len(evs) != 3 {
		t.Errorf("%d user.reset events, want 3", len(evs))
	}
}

// A link of a removed user does not enroll a later user of the same name.
func TestRemoveUserCancelsEnrollment(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	resp, err := a.AddUser(ctx, api.AddUserRequest{Name: "ned", Logins: []string{"ned"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	link := resp.EnrollURL[strings.LastIndex(resp.EnrollURL, "/")+1:]
	if err := a.RemoveUser(ctx, "ned", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddUser(ctx, api.AddUserRequest{Name: "ned", Logins: []string{"root"}}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Enrollment(ctx, link); !errors.Is(err, ErrBadEnrollment) {
		t.Fatalf("the removed user's link opens the new account: %v", err)
	}
}
