package ca

import (
	"context"
	"errors"
	"path"
	"sync"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// addPending creates a user without a password and returns the secret of
// its enrollment link.
func addPending(t testing.TB, a *Authority, name string) string {
	t.Helper()
	resp, err := a.AddUser(context.Background(), api.AddUserRequest{Name: name, Logins: []string{name}}, "test")
	if err != nil {
		t.Fatalf("AddUser(%s): %v", name, err)
	}
	if resp.EnrollURL == "" || resp.User.Status != "pending" {
		t.Fatalf("AddUser(%s) without password: %+v", name, resp)
	}
	return path.Base(resp.EnrollURL)
}

func TestEnrollFlow(t *testing.T) {
	ctx := context.Background()
	a, clk := newTestAuthority(t, nil)
	tok := addPending(t, a, "erin")

	e, err := a.Enrollment(ctx, tok)
	if err != nil || e.User != "erin" || !e.Expires.Equal(clk.Now().Add(24*time.Hour)) || e.Secret != "" {
		t.Fatalf("Enrollment = %+v, %v", e, err)
	}
	// A code before a password, and a bad password, are refused.
	if _, err := a.EnrollConfirm(ctx, tok, "123456", "192.0.2.7"); !errors.Is(err, ErrEnrollPasswordFirst) {
		t.Fatalf("code before password: %v", err)
	}
	if _, err := a.EnrollPassword(ctx, tok, "short"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short password: %v", err)
	}

	// A first password and secret, replaced by a second: the first
	// secret's codes are then wrong.
	first, err := a.EnrollPassword(ctx, tok, "first password here")
	if err != nil {
		t.Fatal(err)
	}
	e, err = a.EnrollPassword(ctx, tok, pw)
	if err != nil {
		t.Fatal(err)
	}
	if e.Secret == "" || e.Secret == first.Secret || secretOf(t, e.OTPAuthURI) != e.Secret {
		t.Fatalf("EnrollPassword = %+v (first secret %s)", e, first.Secret)
	}
	if _, err := a.EnrollConfirm(ctx, tok, oathtool(t, first.Secret, clk.Now()), "192.0.2.7"); !errors.Is(err, ErrEnrollCode) {
		t.Fatalf("code of a replaced secret: %v", err)
	}

	// Password set, code not yet confirmed: the account cannot sign in
	// even with the right password and code.
	if _, err := login(a, "erin", pw, oathtool(t, e.Secret, clk.Now())); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("sign-in before confirmation: %v", err)
	}

	// A wrong code keeps the same secret, and the page can show it again.
	again, err := a.EnrollConfirm(ctx, tok, oathtool(t, e.Secret, clk.Now().Add(5*time.Minute)), "192.0.2.7")
	if !errors.Is(err, ErrEnrollCode) || again.Secret != e.Secret || again.OTPAuthURI == "" || secretOf(t, again.OTPAuthURI) != e.Secret {
		t.Fatalf("wrong code: %+v, %v", again, err)
	}

	// The right code (from oathtool, an independent implementation)
	// activates the account.
	code := oathtool(t, e.Secret, clk.Now())
	done, err := a.EnrollConfirm(ctx, tok, code, "192.0.2.7")
	if err != nil || done.User != "erin" || done.Secret != "" {
		t.Fatalf("confirm: %+v, %v", done, err)
	}
	u, _, err := a.getUser(ctx, "erin")
	if err != nil {
		t.Fatal(err)
	}
	if u.Pending || u.LastTOTPCounter != uint64(clk.Now().Unix())/totpPeriod {
		t.Fatalf("after enrollment: pending=%v counter=%d", u.Pending, u.LastTOTPCounter)
	}

	// The code that confirmed cannot sign in (replay); the next one can.
	if _, err := login(a, "erin", pw, code); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("enrollment code replayed to sign in: %v", err)
	}
	clk.Advance(30 * time.Second)
	if _, err := login(a, "erin", pw, oathtool(t, e.Secret, clk.Now())); err != nil {
		t.Fatalf("sign-in with the next code: %v", err)
	}

	// The link is single-use.
	if _, err := a.Enrollment(ctx, tok); !errors.Is(err, ErrBadEnrollment) {
		t.Fatalf("used link: %v", err)
	}
	if _, err := a.EnrollPassword(ctx, tok, "another password"); !errors.Is(err, ErrBadEnrollment) {
		t.Fatalf("used link, password: %v", err)
	}
	if _, err := a.EnrollConfirm(ctx, tok, oathtool(t, e.Secret, clk.Now()), ""); !errors.Is(err, ErrBadEnrollment) {
		t.Fatalf("used link, code: %v", err)
	}

	evs, err := a.Audit(ctx, AuditFilter{User: "erin", Type: "user.enroll"})
	if err != nil {
		t.Fatal(err)
	}
	var ok, failed int
	for _, ev := range evs {
		if ev.Success {
			ok++
		} else if ev.Fields["reason"] == "wrong code" {
			failed++
		}
		if ev.Remote != "192.0.2.7" {
			t.Errorf("event %+v: remote %q", ev, ev.Remote)
		}
	}
	if ok != 1 || failed != 2 {
		t.Errorf("user.enroll events: %d ok, %d wrong code; want 1 and 2: %+v", ok, failed, evs)
	}
	reasons := map[string]int{}
	logins, _ := a.Audit(ctx, AuditFilter{User: "erin", Type: "user.login"})
	for _, ev := range logins {
		reasons[ev.Fields["reason"]]++
	}
	if reasons["code already used"] != 1 {
		t.Errorf("sign-in failures by reason %v: want one \"code already used\"", reasons)
	}
}

func TestEnrollRefusedLinks(t *testing.T) {
	ctx := context.Background()
	a, clk := newTestAuthority(t, nil)
	expired := addPending(t, a, "old")
	clk.Advance(24*time.Hour - time.Second)
	removed := addPending(t, a, "gone")
	locked := addPending(t, a, "held")
	fresh := addPending(t, a, "new")
	if err := a.RemoveUser(ctx, "gone", "test"); err != nil {
		t.Fatal(err)
	}
	if err := a.LockUser(ctx, "held", api.LockRequest{Reason: "left the team"}, "test"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second) // "old"'s link ends now

	var le *LockedError
	tests := []struct {
		name    string
		token   string
		wantErr error
		wantAs  any
	}{
		{"unknown", "nosuchtoken0000000000000000000000000000000", ErrBadEnrollment, nil},
		{"empty", "", ErrBadEnrollment, nil},
		{"overlong", string(make([]byte, 200)), ErrBadEnrollment, nil},
		{"expired", expired, ErrBadEnrollment, nil},
		{"user removed", removed, ErrBadEnrollment, nil},
		{"user locked", locked, nil, &le},
		{"valid", fresh, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Enrollment(ctx, tt.token)
			_, err2 := a.EnrollPassword(ctx, tt.token, pw)
			for _, err := range []error{err, err2} {
				switch {
				case tt.wantAs != nil:
					if !errors.As(err, tt.wantAs) {
						t.Fatalf("err = %v, want %T", err, tt.wantAs)
					}
				case !errors.Is(err, tt.wantErr):
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			}
		})
	}
}

// TestEnrollConcurrentConfirm: ten confirmations racing with one right
// code activate the account once; the others find the link used.
func TestEnrollConcurrentConfirm(t *testing.T) {
	ctx := context.Background()
	a, clk := newTestAuthority(t, nil)
	tok := addPending(t, a, "race")
	e, err := a.EnrollPassword(ctx, tok, pw)
	if err != nil {
		t.Fatal(err)
	}
	code := oathtool(t, e.Secret, clk.Now())
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := a.EnrollConfirm(ctx, tok, code, "192.0.2.8")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	var ok int
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrBadEnrollment):
			t.Errorf("loser: %v, want ErrBadEnrollment", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d confirmations succeeded, want 1", ok)
	}
	evs, _ := a.Audit(ctx, AuditFilter{User: "race", Type: "user.enroll"})
	if len(evs) != 1 || !evs[0].Success {
		t.Fatalf("user.enroll events %+v, want one success", evs)
	}
}

// TestEnrollAfterReset: caadm users reset without a password makes the
// user pending again with a new link; enrolling with it deletes every
// link of the user.
func TestEnrollAfterReset(t *testing.T) {
	ctx := context.Background()
	a, clk := newTestAuthority(t, nil)
	addUser(t, a, "rita", []string{"rita"}, nil)
	resp, err := a.ResetUser(ctx, "rita", api.ResetUserRequest{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	second, err := a.ResetUser(ctx, "rita", api.ResetUserRequest{}, "test")
	if err != nil {
		t.Fatal(err)
	}
	tok := path.Base(second.EnrollURL)
	e, err := a.EnrollPassword(ctx, tok, pw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.EnrollConfirm(ctx, tok, oathtool(t, e.Secret, clk.Now()), ""); err != nil {
		t.Fatal(err)
	}
	items, _, err := a.store.List(ctx, "enroll/")
	if err != nil || len(items) != 0 {
		t.Fatalf("enrollment records left: %d, %v", len(items), err)
	}
	if _, err := a.Enrollment(ctx, path.Base(resp.EnrollURL)); !errors.Is(err, ErrBadEnrollment) {
		t.Fatalf("older link after enrollment: %v", err)
	}
}
