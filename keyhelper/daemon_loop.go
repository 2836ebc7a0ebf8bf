package keyhelper

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// loopState is what the daemon's loop knows. One goroutine owns it.
type loopState struct {
	// have is the sign-in state the CA last reported, sent back with each
	// poll; known is false until the first answer.
	have  api.SignInState
	known bool
	// fresh asks for a new certificate: the sign-in is new or changed.
	fresh bool
	// refused is set when the CA refused a certificate for the current
	// sign-in state by policy; only a change of the state retries.
	refused bool
	// cert is the certificate delivered (nil if none), renewAt when to
	// replace it (zero: it lasts until the sign-in's end).
	cert    *ssh.Certificate
	renewAt time.Time
	// dirty is set while the agent or the certificate file may hold a
	// certificate to remove when the sign-in ends. It starts set, to clear
	// what an earlier run left.
	dirty bool
	// agentRetry is set when adding to the agent failed and is tried
	// again at each turn.
	agentRetry bool
	// locked holds the CA's message while the user is locked.
	locked string
	// failures counts failed turns in a row; retryAt is when to try
	// again after the last.
	failures int
	retryAt  time.Time
	// devFailures counts failed renewals of the device certificate in a
	// row; devRetryAt is when to try again. The certificate has days
	// left when it is due, so a failed renewal does not hold up the rest.
	devFailures int
	devRetryAt  time.Time
}

// step names a request to the CA, for errors and logs.
type step string

const (
	stepPoll  step = "waiting for a sign-in"
	stepCert  step = "getting a certificate"
	stepCA    step = "reading the CA's keys"
	stepRenew step = "renewing the device certificate"
)

// stepError is a failed request.
type stepError struct {
	step step
	err  error
}

func (e *stepError) Error() string { return string(e.step) + ": " + e.err.Error() }

func (e *stepError) Unwrap() error { return e.err }

// loop runs the state machine until ctx ends or the device is refused.
// Each turn: drop what has expired by the clock; wait out a backoff;
// renew the device certificate when due; get a certificate when the
// sign-in is new or the current one is due for renewal; otherwise poll
// the CA for a change of the sign-in, at most until the next deadline.
func (d *Daemon) loop(ctx context.Context) error {
	d.st.dirty = true
	for ctx.Err() == nil {
		d.alive()
		now := d.cfg.Clock()
		d.expire(now)
		if now.Before(d.st.retryAt) {
			d.sleepUntil(ctx, d.deadline(now, d.st.retryAt))
			continue
		}
		err := d.turn(ctx, now)
		if err == nil || ctx.Err() != nil {
			continue
		}
		if fatal := d.failed(err); fatal != nil {
			return fatal
		}
	}
	d.log.Info("stopping", "signed_in", d.st.have.SignedIn)
	return nil
}

// turn does the next request.
func (d *Daemon) turn(ctx context.Context, now time.Time) error {
	if !now.Before(d.dev.expires()) {
		return expiredDevice(d.dev)
	}
	if !now.Before(d.devDue()) {
		if err := d.renewDevice(ctx); err != nil {
			var ae *api.Error
			if errors.As(err, &ae) && ae.Status < 500 && ae.Code != api.CodeTooMany {
				return err // refused: failed decides
			}
			d.st.devFailures++
			wait := backoff(d.st.devFailures, d.cfg.Jitter)
			d.st.devRetryAt = now.Add(wait)
			d.log.Warn("renewing the device certificate failed; trying again later", "err", Describe(remote(d.cfg.Server, err)),
				"retry_in", wait.Round(time.Millisecond), "device_cert_expires", d.dev.expires())
		}
	}
	if d.st.agentRetry && d.st.cert != nil {
		d.toAgent(d.st.cert, now)
	}
	if d.needCert(now) {
		return d.fetchCert(ctx)
	}
	return d.poll(ctx, now)
}

// needCert reports whether to ask for a certificate now.
func (d *Daemon) needCert(now time.Time) bool {
	st := &d.st
	if !st.have.SignedIn || !now.Before(st.have.Expires) || st.refused {
		return false
	}
	return st.fresh || st.cert == nil || (!st.renewAt.IsZero() && !now.Before(st.renewAt))
}

// deadline returns the earliest of limit and the moments after now at
// which the daemon must act without being told: the certificate's
// renewal and end, the sign-in's end, the device certificate's renewal.
func (d *Daemon) deadline(now, limit time.Time) time.Time {
	at := limit
	consider := func(t time.Time) {
		if !t.IsZero() && t.After(now) && t.Before(at) {
			at = t
		}
	}
	if d.st.cert != nil {
		consider(d.st.renewAt)
		consider(CertEnd(d.st.cert))
	}
	if d.st.have.SignedIn {
		consider(d.st.have.Expires)
	}
	consider(d.devDue())
	return at
}

// devDue returns when to renew the device certificate next.
func (d *Daemon) devDue() time.Time {
	if due := d.dev.renewAt(); due.After(d.st.devRetryAt) {
		return due
	}
	return d.st.devRetryAt
}

// expire drops, by the clock alone, a certificate that has ended and the
// certificates of a sign-in that has ended, even while the CA cannot be
// reached.
func (d *Daemon) expire(now time.Time) {
	st := &d.st
	if st.have.SignedIn && !now.Before(st.have.Expires) && st.dirty {
		d.signedOut("the sign-in has expired")
		return
	}
	if st.cert != nil && !now.Before(CertEnd(st.cert)) {
		if !st.renewAt.IsZero() { // else it ends with the sign-in
			d.log.Warn("the certificate expired before it could be renewed", "serial", st.cert.Serial)
		}
		st.cert, st.renewAt = nil, time.Time{}
		d.removeFromAgent()
	}
}

// poll asks the CA for the sign-in state, waiting for a change until the
// next deadline (at once the first time).
func (d *Daemon) poll(ctx context.Context, now time.Time) error {
	wait := time.Duration(0)
	if d.st.known {
		wait = d.deadline(now, now.Add(maxPollWait)).Sub(now)
	}
	d.pollStatus()
	pctx, cancel := d.jumpContext(ctx)
	defer cancel()
	st, err := d.api.SignInState(pctx, d.st.have, wait)
	if err != nil {
		if jumped(pctx) && ctx.Err() == nil {
			d.log.Info("the wall clock jumped (suspend or clock change); looking at the schedule again")
			return nil
		}
		return &stepError{stepPoll, err}
	}
	d.succeeded()
	d.apply(st)
	return nil
}

// apply takes in a sign-in state the CA reported.
func (d *Daemon) apply(got api.SignInState) {
	st := &d.st
	prev, known := st.have, st.known
	st.have, st.known, st.locked = got, true, ""
	switch {
	case !got.SignedIn:
		if st.dirty {
			reason := "signed out"
			if !known {
				reason = "not signed in at start"
			}
			d.signedOut(reason)
		}
	case !known || !prev.SignedIn || !prev.Expires.Equal(got.Expires):
		d.log.Info("signed in", "until", got.Expires)
		st.fresh, st.refused = true, false
	}
}

// pollStatus reports what the daemon waits for.
func (d *Daemon) pollStatus() {
	st := &d.st
	switch {
	case st.have.SignedIn && st.cert != nil:
		msg := fmt.Sprintf("signed in until %s; certificate valid until %s", clock(st.have.Expires), clock(CertEnd(st.cert)))
		if !st.renewAt.IsZero() {
			msg += ", renewed at " + clock(st.renewAt)
		}
		d.setStatus(msg)
	case st.have.SignedIn && st.refused:
		d.setStatus("signed in until " + clock(st.have.Expires) + "; the CA refused a certificate (see the log)")
	default:
		d.setStatus("waiting for sign-in at " + d.cfg.Server.URL())
	}
}

// clock formats t for a status line.
func clock(t time.Time) string { return t.Local().Format(timeLayout) }

// fetchCert asks for a certificate within the sign-in and delivers it.
func (d *Daemon) fetchCert(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	info, err := d.api.CA(ctx)
	if err != nil {
		return &stepError{stepCA, err}
	}
	resp, err := d.api.DeviceCert(ctx, api.DeviceCertRequest{
		PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(d.key.pub))),
		TTL:       api.Duration(d.cfg.CertTTL),
	})
	if err != nil {
		return &stepError{stepCert, err}
	}
	d.succeeded()
	now := d.cfg.Clock()
	skew, known := d.clockSkew(now)
	cert, err := checkUserCert(resp.Certificate, d.key.pub, d.cfg.User, info.UserCA, now)
	err = withSkew(err, skew, known)
	if err == nil {
		if w := clockWarning(cert, now, skew, known); w != "" {
			d.log.Warn(w)
		}
	}
	if err != nil {
		d.log.Error("refusing the certificate the CA returned; waiting for the next sign-in", "err", strings.TrimPrefix(err.Error(), "keyhelper: "))
		d.st.refused = true
		return nil
	}
	st := &d.st
	renewed := st.cert != nil && !st.fresh
	st.cert, st.fresh, st.dirty = cert, false, true
	st.renewAt = renewalTime(cert, now, st.have.Expires)
	d.deliver(cert, info, now)
	d.log.Info("certificate delivered", "serial", cert.Serial, "renewal", renewed, "valid_before", CertEnd(cert),
		"renew_at", st.renewAt, "principals", strings.Join(cert.ValidPrincipals, ","), "cert_path", d.profile.CertFile)
	return nil
}

// renewDevice renews the device certificate and reconnects with it.
func (d *Daemon) renewDevice(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	id, err := d.api.RenewDevice(ctx)
	if err != nil {
		return &stepError{stepRenew, err}
	}
	if err := d.dev.renewed(id); err != nil {
		return &stepError{stepRenew, err}
	}
	d.dev.renewedAt(d.cfg.Clock())
	next, err := d.dial(d.dev)
	if err != nil {
		return err
	}
	if c, ok := d.api.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	d.api = next
	d.st.devFailures, d.st.devRetryAt = 0, time.Time{}
	d.log.Info("device certificate renewed", "expires", d.dev.expires())
	return nil
}

// succeeded resets the backoff after an answer from the CA.
func (d *Daemon) succeeded() {
	d.st.failures, d.st.retryAt = 0, time.Time{}
}

// failed decides what a failed turn means. It returns the error that
// ends the daemon, or nil to go on.
func (d *Daemon) failed(err error) error {
	var (
		se *stepError
		ae *api.Error
		re *RegistrationError
	)
	now := d.cfg.Clock()
	errors.As(err, &se)
	isAPI := errors.As(err, &ae)
	switch {
	case errors.As(err, &re):
		d.signedOut("the device cannot be used")
		return err
	case isAPI && ae.Code == api.CodeDeviceRevoked:
		return d.revoked(ae)
	case isAPI && ae.Code == api.CodeForbidden && se != nil && se.step == stepCert:
		// A policy refusal (no login allowed, say). A revoked device is
		// refused by the next poll as well.
		d.log.Error("the CA refused a certificate; waiting for the sign-in to change", "err", serverMessage(ae.Message))
		d.st.refused = true
		return nil
	case isAPI && ae.Code == api.CodeForbidden:
		return d.revoked(ae)
	case isAPI && ae.Code == api.CodeLocked:
		msg := serverMessage(ae.Message)
		if d.st.locked != msg {
			d.log.Error("the user is locked: certificates removed; asking again every minute", "reason", msg)
		}
		d.signedOut("the user is locked")
		d.st.have, d.st.known, d.st.locked = api.SignInState{}, true, msg
		d.st.retryAt = now.Add(slowPoll/2 + time.Duration(d.cfg.Jitter(int64(slowPoll/2))))
		d.setStatus("locked: " + msg)
		return nil
	case isAPI && ae.Code == api.CodeSessionExpired:
		// The sign-in ended between the poll and the request.
		d.signedOut("the sign-in has ended")
		d.st.have = api.SignInState{}
		return nil
	}
	d.st.failures++
	wait := backoff(d.st.failures, d.cfg.Jitter)
	d.st.retryAt = now.Add(wait)
	level := "CA unreachable"
	if !retryable(err) {
		level = "CA not trusted"
	}
	what := "request"
	if se != nil {
		what = string(se.step)
	}
	d.log.Warn(level+"; retrying", "step", what, "err", Describe(remote(d.cfg.Server, err)), "failures", d.st.failures,
		"retry_in", wait.Round(time.Millisecond), "certificate_kept", d.st.cert != nil)
	d.setStatus(level + ", retrying: " + Describe(remote(d.cfg.Server, err)))
	return nil
}

// revoked ends the daemon after the CA refused the device itself: it was
// revoked, or its user removed. The identity is deleted, so that the next
// start asks for a new token instead of failing the same way.
func (d *Daemon) revoked(ae *api.Error) error {
	d.signedOut("the device was refused")
	err := &RegistrationError{Err: ae, Msg: fmt.Sprintf(
		"the CA no longer accepts this device (it says: %s), so its identity is deleted: "+
			"re-register with a new token from caadm tokens add --role keyhelper --user %s or the web page",
		strings.TrimSuffix(serverMessage(ae.Message), "."), d.cfg.User)}
	if rmErr := d.dev.remove(); rmErr != nil {
		d.log.Error("removing the refused device identity", "err", rmErr)
	}
	d.setStatus("device refused: re-register with a new token")
	return err
}
