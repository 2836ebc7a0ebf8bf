// Package storetest is the conformance suite of the store interface: Run
// checks that a backend keeps the contract of package store (durable
// writes, one revision per write, create-if-absent, compare-and-swap,
// ordered watches that report compaction), and the bbolt and etcd backends
// both pass it, so the authority behaves the same on either. It also
// starts real etcd servers for tests (StartEtcd, SharedEtcd), with a
// throwaway TLS PKI when asked.
//
// The suite counts revisions relative to the store's revision when a test
// starts: etcd's revision is the whole server's and does not start at 0.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/store"
)

// Backend opens the stores of one implementation for Run.
type Backend struct {
	// Open returns a new store that holds no key and that nothing else
	// writes to while the test runs. Its watchers are dropped once
	// watchBuffer events wait undelivered (BoltOptions.WatchBuffer). Open
	// closes it when the test ends.
	Open func(t *testing.T, watchBuffer int) store.Store
	// Reopen returns, after s was closed, a new store on the same data:
	// the same file, or the same etcd and prefix. It closes it when the
	// test ends.
	Reopen func(t *testing.T, s store.Store) store.Store
	// Compact discards the events of s before revision rev: a Watch from
	// an earlier revision must fail with ErrCompacted, one from rev on
	// must not.
	Compact func(t *testing.T, s store.Store, rev int64)
}

// defaultWatchBuffer is the watch buffer of the stores most tests open.
const defaultWatchBuffer = 64

// eventTimeout bounds the wait for one event or a channel's close.
const eventTimeout = 10 * time.Second

// Run runs the conformance suite against b, one subtest at a time (etcd
// revisions are shared by every client of the server).
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, Backend)
	}{
		{"Get", testGet},
		{"Writes", testWrites},
		{"LargeValue", testLargeValue},
		{"InvalidWrites", testInvalidWrites},
		{"Revisions", testRevisions},
		{"List", testList},
		{"ConcurrentCreate", testConcurrentCreate},
		{"ConcurrentCAS", testConcurrentCAS},
		{"Context", testContext},
		{"WatchPrefix", testWatchPrefix},
		{"WatchHistory", testWatchHistory},
		{"WatchCompacted", testWatchCompacted},
		{"WatchClose", testWatchClose},
		{"SlowWatcher", testSlowWatcher},
		{"Close", testClose},
		{"CloseDuringWrites", testCloseDuringWrites},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, b) })
	}
}

func (b Backend) open(t *testing.T) store.Store {
	t.Helper()
	return b.Open(t, defaultWatchBuffer)
}

// Rev returns the store revision as List reports it.
func Rev(t testing.TB, s store.Store) int64 {
	t.Helper()
	_, rev, err := s.List(context.Background(), "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return rev
}

// MustPut puts value at key and returns the revision of the write.
func MustPut(t testing.TB, s store.Store, key, value string) int64 {
	t.Helper()
	rev, err := s.Put(context.Background(), key, []byte(value))
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return rev
}

// ExpectEvents receives len(want) events from ch and compares them; the
// events must be exactly those, in that order. A deletion's value must be
// nil, a put's non-nil (an empty value is []byte{}).
func ExpectEvents(t testing.TB, ch <-chan store.Event, want []store.Event) {
	t.Helper()
	for i, w := range want {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d events, want %d", i, len(want))
			}
			if ev.Type != w.Type || ev.Item.Key != w.Item.Key || !bytes.Equal(ev.Item.Value, w.Item.Value) ||
				ev.Item.Revision != w.Item.Revision || (w.Type == store.EventDelete) != (ev.Item.Value == nil) {
				t.Fatalf("event %d = %s, want %s", i, fmtEvent(ev), fmtEvent(w))
			}
		case <-time.After(eventTimeout):
			t.Fatalf("no event %d within %v, want %s", i, eventTimeout, fmtEvent(w))
		}
	}
}

func fmtEvent(ev store.Event) string {
	typ := map[store.EventType]string{store.EventPut: "put", store.EventDelete: "delete"}[ev.Type]
	v := "nil"
	if ev.Item.Value != nil {
		v = strconv.Quote(string(ev.Item.Value))
	}
	return typ + " " + strconv.Quote(ev.Item.Key) + "=" + v + " at " + strconv.FormatInt(ev.Item.Revision, 10)
}

// ExpectClosed drains ch, expecting it to close after at most limit events.
func ExpectClosed(t testing.TB, ch <-chan store.Event, limit int) {
	t.Helper()
	timeout := time.After(eventTimeout)
	for n := 0; ; n++ {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if n >= limit {
				t.Fatalf("more than %d events before close; the last: %s", limit, fmtEvent(ev))
			}
		case <-timeout:
			t.Fatalf("channel not closed within %v", eventTimeout)
		}
	}
}

// ExpectQuiet fails the test if ch delivers anything (or closes) within d.
func ExpectQuiet(t testing.TB, ch <-chan store.Event, d time.Duration) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("channel closed, want it open")
		}
		t.Fatalf("unexpected event %s", fmtEvent(ev))
	case <-time.After(d):
	}
}

// WaitFor polls cond until it holds, failing the test after ten seconds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
	}
}

// Increment adds one to the decimal counter at key, retrying on conflict.
func Increment(ctx context.Context, s store.Store, key string) error {
	for {
		it, err := s.Get(ctx, key)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(string(it.Value))
		if err != nil {
			return err
		}
		_, err = s.CompareAndSwap(ctx, key, it.Revision, []byte(strconv.Itoa(n+1)))
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
}
