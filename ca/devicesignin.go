package ca

import (
	"context"
	"errors"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// MaxSignInWait caps how long a device's sign-in poll is held open; it
// stays under the HTTPS server's write timeout.
const MaxSignInWait = 25 * time.Second

func sameState(a, b api.SignInState) bool {
	return a.SignedIn == b.SignedIn && a.Expires.Equal(b.Expires)
}

// WaitSignIn returns the user's sign-in state as soon as it differs from
// have, or after wait. It wakes on changes to the user's sign-ins and to
// the user record (a lock or a removal ends the device's access), and when
// the current sign-in expires, which no store write announces.
func (a *Authority) WaitSignIn(ctx context.Context, d *device, have api.SignInState, wait time.Duration) (api.SignInState, error) {
	wait = min(max(wait, 0), MaxSignInWait)
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	user := d.rec.User
	for {
		if err := a.deviceLive(ctx, d); err != nil {
			return api.SignInState{}, err
		}
		u, _, err := a.getUser(ctx, user)
		if errors.Is(err, ErrNotFound) {
			return api.SignInState{}, ErrBadDevice
		}
		if err != nil {
			return api.SignInState{}, err
		}
		if u.locked(a.now()) {
			return api.SignInState{}, lockedErr(u)
		}
		st, rev, err := a.SignInState(ctx, user)
		if err != nil || !sameState(st, have) {
			return st, err
		}
		if err := a.waitChange(ctx, d, rev, st, deadline.C); err != nil {
			if errors.Is(err, errWaitOver) {
				return st, nil
			}
			return st, err
		}
	}
}

var errWaitOver = errors.New("wait over")

// waitChange blocks until a write after rev touches the user's sign-ins,
// the user record or the device record (a revocation), the current
// sign-in expires, the deadline fires (errWaitOver) or ctx ends.
func (a *Authority) waitChange(ctx context.Context, d *device, rev int64, st api.SignInState, deadline <-chan time.Time) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	user := d.rec.User
	signins, err := a.store.Watch(wctx, signinPrefix(user), rev+1)
	if err != nil {
		return err
	}
	record, err := a.store.Watch(wctx, userKey(user), rev+1)
	if err != nil {
		return err
	}
	devrec, err := a.store.Watch(wctx, deviceKey(user, d.rec.ID), rev+1)
	if err != nil {
		return err
	}
	var expiry <-chan time.Time
	if st.SignedIn {
		t := time.NewTimer(st.Expires.Sub(a.now()) + time.Second)
		defer t.Stop()
		expiry = t.C
	}
	select {
	case <-signins: // an event, or a closed watch: look again either way
	case <-record:
	case <-devrec:
	case <-expiry:
	case <-deadline:
		return errWaitOver
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// IssueDeviceCert issues a user certificate to a registered device while
// its user has a live sign-in. The certificate never outlives that
// sign-in: when the user signs out or it expires, renewal stops and the
// device removes the certificate.
func (a *Authority) IssueDeviceCert(ctx context.Context, d *device, req api.DeviceCertRequest) (*ssh.Certificate, error) {
	pub, err := ParsePublicKey(req.PublicKey)
	if err != nil {
		return nil, err
	}
	st, _, err := a.SignInState(ctx, d.rec.User)
	if err != nil {
		return nil, err
	}
	if !st.SignedIn {
		return nil, ErrSessionExpired
	}
	return a.issueForUser(ctx, d.user, UserCertRequest{
		User: d.rec.User, PublicKey: pub, TTL: time.Duration(req.TTL),
		MaxTTL: st.Expires.Sub(a.now()), Requester: "device:" + d.rec.ID,
	})
}

// deviceLive re-reads the device record: it must still exist and not be
// revoked.
func (a *Authority) deviceLive(ctx context.Context, d *device) error {
	it, err := a.store.Get(ctx, deviceKey(d.rec.User, d.rec.ID))
	if errors.Is(err, store.ErrNotFound) {
		return ErrBadDevice
	}
	if err != nil {
		return err
	}
	rec, err := decodeItem[deviceRecord](&a.decoded, it)
	if err != nil || rec.Revoked || rec.SPKI != d.rec.SPKI {
		return ErrBadDevice
	}
	return nil
}
