package ca

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// Sign-in errors a caller branches on; the API turns them into codes.
var (
	// ErrBadCredentials: wrong user, password or code. Deliberately does
	// not say which.
	ErrBadCredentials = errors.New("wrong user name, password or code")
	// ErrSessionExpired: the sign-in session ended or never existed.
	ErrSessionExpired = errors.New("sign-in session has expired or ended; sign in again")
	// ErrNotEnrolled: the account waits for its enrollment link.
	ErrNotEnrolled = errors.New("account is not enrolled yet: open the enrollment link your administrator gave you")
)

// LockedError: the account is locked.
type LockedError struct {
	Until  time.Time // zero: until an administrator unlocks it
	Reason string
}

func (e *LockedError) Error() string {
	if e.Until.IsZero() {
		return "account is locked (" + e.Reason + "); ask an administrator to unlock it"
	}
	return fmt.Sprintf("account is locked (%s) until %s; try again then or ask an administrator", e.Reason, e.Until.UTC().Format(time.RFC3339))
}

// session is a sign-in session as stored, under the SHA-256 of its token.
type session struct {
	User    string    `json:"user"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Remote  string    `json:"remote,omitempty"`
}

func sessionKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sessions/" + hex.EncodeToString(sum[:])
}

func randomToken(r io.Reader) (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Login checks password and TOTP code and opens a sign-in session. Every
// attempt is an audit event. remote is the client address, for the log.
func (a *Authority) Login(ctx context.Context, req api.LoginRequest, remote string) (api.LoginResponse, error) {
	now := a.now()
	fail := func(reason string, err error) (api.LoginResponse, error) {
		_ = a.auditLogin(ctx, req.User, remote, false, reason, now) // logged; refused either way
		a.countFailure(ctx, remote, now)
		return api.LoginResponse{}, err
	}
	// A throttled address is refused before any hashing, and the refusal
	// is not audited one by one: the start of throttling is (see
	// countFailure), so a flood cannot grow the audit log without bound.
	if err := a.throttle.check(remote, now); err != nil {
		a.log.Debug("sign-in refused: address throttled", "remote", remote)
		return api.LoginResponse{}, err
	}
	if ValidateUserName(req.User) != nil {
		a.verifyDummy(req.Password)
		return fail("malformed user name", ErrBadCredentials)
	}
	u, _, err := a.getUser(ctx, req.User)
	if errors.Is(err, ErrNotFound) {
		a.verifyDummy(req.Password)
		return fail("no such user", ErrBadCredentials)
	}
	if err != nil {
		return api.LoginResponse{}, err
	}
	if u.locked(now) {
		return fail("account locked", lockedErr(u))
	}
	if u.Pending {
		return fail("not enrolled", ErrNotEnrolled)
	}
	ok, err := a.verify(req.Password, u.PasswordHash)
	if err != nil {
		return api.LoginResponse{}, fmt.Errorf("ca: user %q: %w", u.Name, err)
	}
	counter, codeOK := matchTOTP(u.TOTPSecret, req.TOTP, now)
	switch {
	case !ok:
		return a.loginFailed(ctx, req.User, remote, "wrong password", now)
	case !codeOK:
		return a.loginFailed(ctx, req.User, remote, "wrong code", now)
	}
	// Accept the code only if no earlier sign-in used it (or a later
	// one): compare-and-swap makes two concurrent uses of one code race
	// for a single success.
	var replay bool
	u, err = a.updateUser(ctx, req.User, func(u *userRecord) error {
		if u.locked(now) {
			return lockedErr(u)
		}
		if counter <= u.LastTOTPCounter {
			replay = true
			return ErrBadCredentials
		}
		u.LastTOTPCounter, u.FailedLogins, u.LastLogin = counter, 0, now.UTC()
		return nil
	})
	if replay {
		return a.loginFailed(ctx, req.User, remote, "code already used", now)
	}
	if errors.Is(err, ErrNotFound) { // removed while signing in
		return fail("no such user", ErrBadCredentials)
	}
	if err != nil {
		return fail(err.Error(), err)
	}
	// The audit event goes first: a sign-in that cannot be recorded does
	// not happen.
	if err := a.auditLogin(ctx, u.Name, remote, true, "", now); err != nil {
		return api.LoginResponse{}, err
	}
	return a.newSession(ctx, u.Name, remote, now)
}

func lockedErr(u *userRecord) error {
	e := &LockedError{Reason: u.LockReason}
	if !u.Locked {
		e.Until = u.LockedUntil
	}
	return e
}

// loginFailed counts a failure and locks the account after
// MaxFailedLogins in a row.
func (a *Authority) loginFailed(ctx context.Context, name, remote, reason string, now time.Time) (api.LoginResponse, error) {
	var lockedNow bool
	u, err := a.updateUser(ctx, name, func(u *userRecord) error {
		u.FailedLogins++
		if a.cfg.MaxFailedLogins > 0 && u.FailedLogins >= a.cfg.MaxFailedLogins && !u.locked(now) {
			u.LockedUntil = now.Add(a.cfg.LockoutDuration).UTC()
			u.LockReason = strconv.Itoa(u.FailedLogins) + " failed sign-ins in a row"
			u.FailedLogins = 0
			lockedNow = true
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) { // removed while signing in
		err = ErrBadCredentials
	}
	if err != nil {
		return api.LoginResponse{}, err
	}
	_ = a.auditLogin(ctx, name, remote, false, reason, now) // logged; refused either way
	a.countFailure(ctx, remote, now)
	if lockedNow {
		if err := a.auditAdmin(ctx, "user.lock", name, "ca", map[string]string{"reason": u.LockReason, "until": u.LockedUntil.Format(time.RFC3339)}); err != nil {
			return api.LoginResponse{}, err
		}
		return api.LoginResponse{}, lockedErr(u)
	}
	return api.LoginResponse{}, ErrBadCredentials
}

func (a *Authority) verify(pw, phc string) (bool, error) {
	a.hashSem <- struct{}{}
	defer func() { <-a.hashSem }()
	return verifyPassword(pw, phc)
}

// verifyDummy spends the time of a real verification, so that a sign-in
// for an unknown user takes as long as one for a known user.
func (a *Authority) verifyDummy(pw string) { _, _ = a.verify(pw, a.dummyHash) }

func (a *Authority) newSession(ctx context.Context, user, remote string, now time.Time) (api.LoginResponse, error) {
	tok, err := randomToken(a.rand)
	if err != nil {
		return api.LoginResponse{}, err
	}
	s := session{User: user, Created: now.UTC(), Expires: now.Add(a.cfg.SignInTTL).UTC(), Remote: remote}
	b, err := json.Marshal(s)
	if err != nil {
		return api.LoginResponse{}, err
	}
	if _, err := a.store.Create(ctx, sessionKey(tok), b); err != nil {
		return api.LoginResponse{}, err
	}
	// The per-user index comes second: whoever sees it (a device waiting
	// for the user to sign in) finds the session already there.
	idx, _ := json.Marshal(signinIndex{Expires: s.Expires})
	if _, err := a.store.Create(ctx, signinKey(user, tok), idx); err != nil {
		_ = a.store.Delete(ctx, sessionKey(tok))
		return api.LoginResponse{}, err
	}
	return api.LoginResponse{User: user, Session: tok, Expires: s.Expires}, nil
}

// signinIndex is stored under "signins/<user>/<session hash>", so that a
// user's sign-ins can be listed and watched without reading every session.
type signinIndex struct {
	Expires time.Time `json:"expires"`
}

func signinPrefix(user string) string { return "signins/" + user + "/" }

func signinKey(user, token string) string {
	return signinPrefix(user) + strings.TrimPrefix(sessionKey(token), "sessions/")
}

// sessionUser resolves a sign-in session token to its live, unlocked user.
func (a *Authority) sessionUser(ctx context.Context, token string) (*userRecord, *session, error) {
	if token == "" || len(token) > 128 {
		return nil, nil, ErrSessionExpired
	}
	it, err := a.store.Get(ctx, sessionKey(token))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrSessionExpired
	}
	if err != nil {
		return nil, nil, err
	}
	s, err := decodeItem[session](&a.decoded, it)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: damaged session record: %w", err)
	}
	now := a.now()
	if !now.Before(s.Expires) {
		return nil, nil, ErrSessionExpired
	}
	u, _, err := a.getUser(ctx, s.User)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, ErrSessionExpired
	}
	if err != nil {
		return nil, nil, err
	}
	if u.locked(now) {
		return u, nil, lockedErr(u) // u names the user in the caller's audit event
	}
	return u, &s, nil
}

// Logout ends a sign-in session.
func (a *Authority) Logout(ctx context.Context, token, remote string) error {
	if token == "" || len(token) > 128 {
		return ErrSessionExpired
	}
	it, err := a.store.Get(ctx, sessionKey(token))
	if errors.Is(err, store.ErrNotFound) {
		return ErrSessionExpired
	}
	if err != nil {
		return err
	}
	var sess session
	if err := json.Unmarshal(it.Value, &sess); err != nil {
		return fmt.Errorf("ca: damaged session record: %w", err)
	}
	if err := a.endSession(ctx, sess.User, strings.TrimPrefix(it.Key, "sessions/")); err != nil {
		return err
	}
	ev := a.newEvent("user.logout", a.now())
	ev.User, ev.Actor, ev.Success, ev.Remote = sess.User, sess.User, true, remote
	return a.writeEvent(ctx, ev)
}

// endSession deletes one session: the index first, so that a device
// watching it learns of the end before the session is gone.
func (a *Authority) endSession(ctx context.Context, user, hash string) error {
	for _, k := range []string{signinPrefix(user) + hash, "sessions/" + hash} {
		if err := a.store.Delete(ctx, k); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// endSessionsOf deletes every sign-in session of a user.
func (a *Authority) endSessionsOf(ctx context.Context, user string) error {
	items, _, err := a.store.List(ctx, signinPrefix(user))
	if err != nil {
		return err
	}
	for _, it := range items {
		if err := a.endSession(ctx, user, strings.TrimPrefix(it.Key, signinPrefix(user))); err != nil {
			return err
		}
	}
	return nil
}

// SignInState reports whether user has a live sign-in session, until when
// (the latest expiry), and the store revision the answer reflects.
func (a *Authority) SignInState(ctx context.Context, user string) (api.SignInState, int64, error) {
	items, rev, err := a.store.List(ctx, signinPrefix(user))
	if err != nil {
		return api.SignInState{}, 0, err
	}
	now := a.now()
	var st api.SignInState
	for _, it := range items {
		var idx signinIndex
		if err := json.Unmarshal(it.Value, &idx); err != nil {
			return api.SignInState{}, 0, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		if now.Before(idx.Expires) && idx.Expires.After(st.Expires) {
			st.SignedIn, st.Expires = true, idx.Expires
		}
	}
	return st, rev, nil
}

// countFailure counts a failed sign-in against the client's address and
// audits the moment the address becomes throttled.
func (a *Authority) countFailure(ctx context.Context, remote string, now time.Time) {
	if !a.throttle.fail(remote, now) {
		return
	}
	ev := a.newEvent("signin.throttle", now)
	ev.Remote, ev.Success = remote, false
	ev.Fields = map[string]string{
		"failures": strconv.Itoa(a.throttle.limit),
		"until":    now.Add(a.throttle.window).UTC().Format(time.RFC3339),
	}
	if err := a.writeEvent(ctx, ev); err != nil {
		a.log.Error("audit write failed", "err", err, "type", ev.Type)
	}
	a.log.Warn("sign-ins from an address throttled", "remote", remote, "failures", a.throttle.limit, "window", a.throttle.window)
}
