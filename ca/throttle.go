package ca

import (
	"fmt"
	"sync"
	"time"
)

// ThrottledError: too many failed sign-ins came from the client's address;
// sign-ins from it are refused, before any password is checked, until
// RetryAfter has passed.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed sign-ins from your address; try again in %v", e.RetryAfter.Round(time.Second))
}

// addrThrottle counts failed sign-ins per client address in fixed windows.
// The per-account lockout stops guessing one account; this stops one
// address spraying guesses across many accounts, and spares the CPU the
// argon2 work of a flood. Successes do not reset the count, so one valid
// account cannot launder guesses at others.
type addrThrottle struct {
	limit  int // failures per window; 0 disables
	window time.Duration

	mu    sync.Mutex
	addrs map[string]*addrWindow
}

type addrWindow struct {
	start    time.Time
	failures int
}

// maxTracked bounds the memory of the throttle; past it, windows that have
// ended are dropped, and if none have, the oldest half of the map goes
// (a flood from many addresses then weakens the throttle, never the
// lockout).
const maxTracked = 100_000

// check reports whether addr may try to sign in at now.
func (t *addrThrottle) check(addr string, now time.Time) error {
	if t.limit <= 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.addrs[addr]
	if w == nil || !now.Before(w.start.Add(t.window)) || w.failures < t.limit {
		return nil
	}
	return &ThrottledError{RetryAfter: w.start.Add(t.window).Sub(now)}
}

// fail counts a failure from addr and reports whether it reached the
// limit (so the caller audits the start of throttling once).
func (t *addrThrottle) fail(addr string, now time.Time) (reached bool) {
	if t.limit <= 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.addrs == nil {
		t.addrs = make(map[string]*addrWindow)
	}
	w := t.addrs[addr]
	if w == nil || !now.Before(w.start.Add(t.window)) {
		if len(t.addrs) >= maxTracked {
			t.prune(now)
		}
		w = &addrWindow{start: now}
		t.addrs[addr] = w
	}
	w.failures++
	return w.failures == t.limit
}

func (t *addrThrottle) prune(now time.Time) {
	for a, w := range t.addrs {
		if !now.Before(w.start.Add(t.window)) {
			delete(t.addrs, a)
		}
	}
	if len(t.addrs) < maxTracked {
		return
	}
	n := 0
	for a := range t.addrs {
		if n >= maxTracked/2 {
			break
		}
		delete(t.addrs, a)
		n++
	}
}
