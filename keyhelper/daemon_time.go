package keyhelper

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"golang.org/x/crypto/ssh"
)

// The daemon's timing.
const (
	// maxPollWait is how long the CA holds a sign-in poll open at most
	// (ca.MaxSignInWait).
	maxPollWait = 25 * time.Second
	// pollSlack is how much longer than its wait a poll may take before
	// the client gives up on it.
	pollSlack = 15 * time.Second
	// maxNap is the longest the daemon sleeps without reading the clock
	// again. time.Timer counts monotonic time, which stands still while
	// a laptop is suspended; re-reading the wall clock this often bounds
	// how late a renewal or a removal can be after a resume.
	maxNap = 10 * time.Second
	// backoffBase and backoffMax bound the wait after a failure: a random
	// wait up to backoffBase doubled for each failure in a row, at most
	// backoffMax ("full jitter"), and at least minBackoff.
	backoffBase = time.Second
	backoffMax  = 60 * time.Second
	minBackoff  = 100 * time.Millisecond
	// slowPoll is how often the daemon asks again while the user is
	// locked: the CA answers such a poll at once, and a lock may be
	// lifted.
	slowPoll = backoffMax
	// minRenewal is the shortest time between two certificates.
	minRenewal = time.Second
	// jumpCheck is how often the wall clock is compared with the
	// monotonic clock; jumpSlack how far they may drift apart before the
	// daemon looks at its schedule again.
	jumpCheck = 2 * time.Second
	jumpSlack = 5 * time.Second
	// healthWindow is how long the loop may go without turning before
	// Healthy reports it stuck: longer than a poll can last.
	healthWindow = 2 * (maxPollWait + pollSlack)
)

// backoff returns how long to wait after failures failures in a row
// (1 for the first): a random duration in [minBackoff, ceiling], the
// ceiling doubling from backoffBase up to backoffMax. randN returns a
// random number in [0, n).
func backoff(failures int, randN func(int64) int64) time.Duration {
	ceiling := backoffMax
	if failures < 1 {
		failures = 1
	}
	if failures <= 7 { // 2^6 s > backoffMax
		ceiling = min(backoffBase<<(failures-1), backoffMax)
	}
	return max(time.Duration(randN(int64(ceiling)+1)), minBackoff)
}

func randInt64N(n int64) int64 { return rand.Int64N(n) }

// renewalTime returns when to replace cert, received at received, while
// the sign-in lasts until signInEnd: when two thirds of its life have
// passed, counted from when it was received (the CA backdates
// ValidAfter by api.CertBackdate for clock skew, which would make a short
// certificate due at once). A certificate that lasts until the sign-in's
// end (the CA caps certificates there) is not renewed: the zero time.
func renewalTime(cert *ssh.Certificate, received, signInEnd time.Time) time.Time {
	end := CertEnd(cert)
	if !end.Before(signInEnd.Truncate(time.Second)) {
		return time.Time{}
	}
	start := received
	if va := time.Unix(int64(min(cert.ValidAfter, maxUnix)), 0); va.After(start) {
		start = va
	}
	at := start.Add(end.Sub(start) / 3 * 2)
	if floor := received.Add(minRenewal); at.Before(floor) {
		at = floor
	}
	return at
}

// sleep is the real DaemonConfig.Sleep.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sleepUntil waits until the Clock reads t, in naps of at most maxNap,
// or until ctx ends or the wall clock jumps.
func (d *Daemon) sleepUntil(ctx context.Context, t time.Time) {
	ctx, cancel := d.jumpContext(ctx)
	defer cancel()
	for {
		left := t.Sub(d.cfg.Clock())
		if left <= 0 || d.cfg.Sleep(ctx, min(left, maxNap)) != nil {
			return
		}
		d.alive()
	}
}

// errClockJump is the cause of a context that jumpContext ended.
var errClockJump = errors.New("keyhelper: the wall clock jumped")

// jumpContext returns a context that ends with ctx or, with the real
// clock, when the wall clock moves more than jumpSlack away from the
// monotonic one: after a suspend, or when the clock is set.
func (d *Daemon) jumpContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if !d.watchJumps {
		return context.WithCancel(ctx)
	}
	return watchClock(ctx, jumpCheck, jumpSlack, time.Now)
}

// watchClock returns a context that ends, with cause errClockJump, when
// the wall time of now() drifts more than slack from the monotonic time
// elapsed, checked every interval. now is time.Now outside tests.
func watchClock(ctx context.Context, every, slack time.Duration, now func() time.Time) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	start := now()
	mono := time.Now()
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				wall := now().Round(0).Sub(start.Round(0))
				if drift := wall - time.Since(mono); drift > slack || drift < -slack {
					cancel(errClockJump)
					return
				}
			}
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// jumped reports whether ctx ended because the clock jumped.
func jumped(ctx context.Context) bool { return errors.Is(context.Cause(ctx), errClockJump) }
