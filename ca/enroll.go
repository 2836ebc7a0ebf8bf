package ca

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/opensshca/suite/ca/store"
)

// Enrollment turns a pending user (made by caadm users add without a
// password, or users reset) into an active one. The administrator hands
// the user a one-time link, /enroll/<secret>, stored as
// "enroll/<sha256 of the secret>" (newEnrollment). With it the user:
//
//  1. chooses a password (EnrollPassword): the CA stores its hash and a
//     new TOTP secret on the user, who stays pending, and shows the secret
//     (QR code and text) once;
//  2. proves the authenticator works with one code (EnrollConfirm): the
//     account becomes active, the code's time step becomes the replay
//     floor (so that code cannot then sign in), and the link is deleted.
//
// Until step 2 the account cannot sign in (Login refuses pending users).
// The link is the credential: whoever holds it may choose the password,
// so links expire (Config.EnrollTTL, 24h) and work once.

// Enrollment errors a caller branches on.
var (
	// ErrBadEnrollment: the link is unknown, expired or used, or its user
	// is gone or already active. One error for all reasons.
	ErrBadEnrollment = errors.New("this enrollment link is unknown, expired or already used; ask your administrator for a new one (caadm users reset NAME)")
	// ErrEnrollCode: the code does not match the secret being enrolled.
	ErrEnrollCode = errors.New("that code is wrong; enter the 6-digit code your authenticator app shows now for this account (check that the phone's clock is right)")
	// ErrEnrollPasswordFirst: a code was sent before a password was chosen.
	ErrEnrollPasswordFirst = errors.New("choose a password first")
)

// Enrollment is what an enrollment link shows.
type Enrollment struct {
	User    string
	Expires time.Time // of the link
	// Secret (base32) and OTPAuthURI are set by EnrollPassword, and by
	// EnrollConfirm on a wrong code, so the page can show them again.
	Secret     string
	OTPAuthURI string
}

func enrollKey(secret string) string { return "enroll/" + tokenHash(secret) }

// openEnrollment reads a live link and its pending, unlocked user.
func (a *Authority) openEnrollment(ctx context.Context, secret string, now time.Time) (enrollment, *userRecord, error) {
	var e enrollment
	if secret == "" || len(secret) > 128 {
		return e, nil, ErrBadEnrollment
	}
	it, err := a.store.Get(ctx, enrollKey(secret))
	if errors.Is(err, store.ErrNotFound) {
		return e, nil, ErrBadEnrollment
	}
	if err != nil {
		return e, nil, err
	}
	if err := json.Unmarshal(it.Value, &e); err != nil {
		return e, nil, fmt.Errorf("ca: damaged enrollment record: %w", err)
	}
	if !now.Before(e.Expires) {
		return e, nil, ErrBadEnrollment
	}
	u, _, err := a.getUser(ctx, e.User)
	if errors.Is(err, ErrNotFound) {
		return e, nil, ErrBadEnrollment
	}
	if err != nil {
		return e, nil, err
	}
	if err := enrollable(u, now); err != nil {
		return e, nil, err
	}
	return e, u, nil
}

// enrollable: only a pending, unlocked user may enroll. An administrator's
// lock holds during enrollment too.
func enrollable(u *userRecord, now time.Time) error {
	if !u.Pending {
		return ErrBadEnrollment
	}
	if u.locked(now) {
		return lockedErr(u)
	}
	return nil
}

// Enrollment checks an enrollment link and says whose it is.
func (a *Authority) Enrollment(ctx context.Context, secret string) (Enrollment, error) {
	e, _, err := a.openEnrollment(ctx, secret, a.now())
	if err != nil {
		return Enrollment{}, err
	}
	return Enrollment{User: e.User, Expires: e.Expires}, nil
}

// EnrollPassword sets the password of the link's pending user and a new
// TOTP secret, which it returns for the user's authenticator. The user
// stays pending until EnrollConfirm. Calling it again replaces both.
func (a *Authority) EnrollPassword(ctx context.Context, secret, password string) (Enrollment, error) {
	e, _, err := a.openEnrollment(ctx, secret, a.now())
	if err != nil {
		return Enrollment{}, err
	}
	if err := checkNewPassword(password); err != nil {
		return Enrollment{}, err
	}
	hash, err := a.hash(password)
	if err != nil {
		return Enrollment{}, err
	}
	totpSecret, uri, err := newTOTP(a.cfg.TOTPIssuer, e.User, a.rand)
	if err != nil {
		return Enrollment{}, err
	}
	_, err = a.updateUser(ctx, e.User, func(u *userRecord) error {
		if err := enrollable(u, a.now()); err != nil {
			return err
		}
		// A new secret starts a new code sequence.
		u.PasswordHash, u.TOTPSecret, u.LastTOTPCounter, u.FailedLogins = hash, totpSecret, 0, 0
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		err = ErrBadEnrollment
	}
	if err != nil {
		return Enrollment{}, err
	}
	a.log.Info("enrollment: password and TOTP secret set", "user", e.User)
	return Enrollment{User: e.User, Expires: e.Expires, Secret: totpSecret, OTPAuthURI: uri}, nil
}

// EnrollConfirm checks one code against the secret EnrollPassword made
// and, if it matches, activates the account: Pending ends, the code's time
// step becomes the replay floor (that code cannot sign in), and the
// user's enrollment links are deleted. A wrong code returns ErrEnrollCode
// with the Enrollment (secret included) to show again. Every attempt is a
// "user.enroll" audit event; remote is the client address.
func (a *Authority) EnrollConfirm(ctx context.Context, secret, code, remote string) (Enrollment, error) {
	now := a.now()
	e, u, err := a.openEnrollment(ctx, secret, now)
	if err != nil {
		return Enrollment{}, err
	}
	if u.PasswordHash == "" || u.TOTPSecret == "" {
		return Enrollment{User: e.User, Expires: e.Expires}, ErrEnrollPasswordFirst
	}
	again := Enrollment{User: e.User, Expires: e.Expires, Secret: u.TOTPSecret, OTPAuthURI: totpURI(a.cfg.TOTPIssuer, e.User, u.TOTPSecret)}
	shown := u.TOTPSecret
	counter, ok := matchTOTP(shown, code, now)
	if !ok {
		a.auditEnroll(ctx, e.User, remote, false, "wrong code", now)
		return again, ErrEnrollCode
	}
	u, err = a.updateUser(ctx, e.User, func(cur *userRecord) error {
		if err := enrollable(cur, now); err != nil {
			return err
		}
		// The secret changed since it was read (another EnrollPassword):
		// the code was for the old one.
		if cur.TOTPSecret != shown {
			return ErrEnrollCode
		}
		cur.Pending, cur.LastTOTPCounter, cur.FailedLogins = false, counter, 0
		return nil
	})
	switch {
	case errors.Is(err, ErrEnrollCode):
		again.Secret, again.OTPAuthURI = u.TOTPSecret, totpURI(a.cfg.TOTPIssuer, e.User, u.TOTPSecret)
		a.auditEnroll(ctx, e.User, remote, false, "wrong code", now)
		return again, err
	case errors.Is(err, ErrNotFound):
		return Enrollment{}, ErrBadEnrollment
	case err != nil:
		return Enrollment{}, err
	}
	// The account is active, so every link of the user is dead already
	// (they need a pending user); deleting them keeps the store clean.
	if err := a.deleteEnrollmentsOf(ctx, e.User); err != nil {
		a.log.Error("enrollment: deleting used links", "user", e.User, "err", err)
	}
	if err := a.auditEnroll(ctx, e.User, remote, true, "", now); err != nil {
		return Enrollment{}, err
	}
	return Enrollment{User: e.User, Expires: e.Expires}, nil
}

// deleteEnrollmentsOf deletes every enrollment link of user.
func (a *Authority) deleteEnrollmentsOf(ctx context.Context, user string) error {
	items, _, err := a.store.List(ctx, "enroll/")
	if err != nil {
		return err
	}
	for _, it := range items {
		var e enrollment
		if json.Unmarshal(it.Value, &e) != nil || e.User != user {
			continue
		}
		if err := a.store.Delete(ctx, it.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return nil
}

// auditEnroll records an enrollment attempt. A failed attempt is refused
// whether or not the event could be written.
func (a *Authority) auditEnroll(ctx context.Context, user, remote string, ok bool, reason string, now time.Time) error {
	ev := a.newEvent("user.enroll", now)
	ev.User, ev.Actor, ev.Success, ev.Remote = user, user, ok, remote
	if reason != "" {
		ev.Fields = map[string]string{"reason": reason}
	}
	err := a.writeEvent(ctx, ev)
	if err != nil {
		a.log.Error("audit write failed", "err", err, "type", ev.Type)
	}
	return err
}

// totpURI is the otpauth URI of a stored secret, in the form newTOTP
// makes (Key URI Format of Google Authenticator).
func totpURI(issuer, account, secret string) string {
	v := url.Values{}
	v.Set("secret", secret)
	v.Set("issuer", issuer)
	v.Set("period", strconv.Itoa(totpPeriod))
	v.Set("algorithm", "SHA1")
	v.Set("digits", "6")
	u := url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + issuer + ":" + account, RawQuery: v.Encode()}
	return u.String()
}
