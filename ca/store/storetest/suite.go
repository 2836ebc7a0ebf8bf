package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/store"
)

func testGet(t *testing.T, b Backend) {
	s := b.open(t)
	ctx := t.Context()
	rev := MustPut(t, s, "users/alice", "A")
	MustPut(t, s, "users/empty", "")

	tests := []struct {
		name    string
		key     string
		want    store.Item
		wantErr error
	}{
		{"present", "users/alice", store.Item{Key: "users/alice", Value: []byte("A"), Revision: rev}, nil},
		{"empty value", "users/empty", store.Item{Key: "users/empty", Value: []byte{}, Revision: rev + 1}, nil},
		{"absent", "users/bob", store.Item{}, store.ErrNotFound},
		{"prefix of present key", "users/", store.Item{}, store.ErrNotFound},
		{"empty key", "", store.Item{}, store.ErrNotFound},
		{"key too long to write", strings.Repeat("k", store.MaxKeySize+1), store.Item{}, store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Get(ctx, tt.key)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get(%.20q) error = %v, want %v", tt.key, err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), strconv.Quote(tt.key)) {
					t.Errorf("error %.100q does not name key %.20q", err, tt.key)
				}
				return
			}
			if got.Key != tt.want.Key || !bytes.Equal(got.Value, tt.want.Value) || got.Revision != tt.want.Revision {
				t.Errorf("Get(%q) = %+v, want %+v", tt.key, got, tt.want)
			}
			if got.Value == nil {
				t.Errorf("Get(%q) value is nil, want non-nil", tt.key)
			}
		})
	}
}

func testWrites(t *testing.T, b Backend) {
	type writeFunc func(ctx context.Context, s store.Store, rev int64) (int64, error)
	put := func(v string) writeFunc {
		return func(ctx context.Context, s store.Store, _ int64) (int64, error) { return s.Put(ctx, "k", []byte(v)) }
	}
	create := func(v string) writeFunc {
		return func(ctx context.Context, s store.Store, _ int64) (int64, error) { return s.Create(ctx, "k", []byte(v)) }
	}
	cas := func(delta int64, v string) writeFunc {
		return func(ctx context.Context, s store.Store, rev int64) (int64, error) {
			return s.CompareAndSwap(ctx, "k", rev+delta, []byte(v))
		}
	}
	casZero := func(ctx context.Context, s store.Store, _ int64) (int64, error) {
		return s.CompareAndSwap(ctx, "k", 0, []byte("new"))
	}
	del := func(ctx context.Context, s store.Store, _ int64) (int64, error) { return 0, s.Delete(ctx, "k") }

	absent := "<absent>"
	tests := []struct {
		name    string
		seed    bool // "k" holds "old" before the write
		write   writeFunc
		wantErr error
		want    string // value of "k" afterwards
	}{
		{"put absent", false, put("new"), nil, "new"},
		{"put present", true, put("new"), nil, "new"},
		{"put empty value", true, put(""), nil, ""},
		{"create absent", false, create("new"), nil, "new"},
		{"create present", true, create("new"), store.ErrExists, "old"},
		{"cas current revision", true, cas(0, "new"), nil, "new"},
		{"cas older revision", true, cas(-1, "new"), store.ErrConflict, "old"},
		{"cas newer revision", true, cas(+1, "new"), store.ErrConflict, "old"},
		{"cas absent", false, cas(0, "new"), store.ErrNotFound, absent},
		{"cas revision 0 absent", false, casZero, store.ErrNotFound, absent},
		{"cas revision 0 present", true, casZero, store.ErrConflict, "old"},
		{"delete present", true, del, nil, absent},
		{"delete absent", false, del, store.ErrNotFound, absent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := b.open(t)
			ctx := t.Context()
			MustPut(t, s, "other", "x") // so the store revision and k's differ
			var seedRev int64
			if tt.seed {
				seedRev = MustPut(t, s, "k", "old")
			}
			before := Rev(t, s)

			rev, err := tt.write(ctx, s, seedRev)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			after := Rev(t, s)
			switch {
			case err != nil:
				if !strings.Contains(err.Error(), `"k"`) {
					t.Errorf("error %q does not name the key", err)
				}
				if rev != 0 {
					t.Errorf("failed write returned revision %d, want 0", rev)
				}
				if after != before {
					t.Errorf("failed write moved store revision from %d to %d", before, after)
				}
			case after != before+1:
				t.Errorf("store revision %d after write, want %d", after, before+1)
			case rev != 0 && rev != after:
				t.Errorf("write returned revision %d, store is at %d", rev, after)
			}

			got, err := s.Get(ctx, "k")
			switch {
			case tt.want == absent && !errors.Is(err, store.ErrNotFound):
				t.Errorf("Get after write = %q, %v; want ErrNotFound", got.Value, err)
			case tt.want != absent && err != nil:
				t.Errorf("Get after write: %v", err)
			case tt.want != absent && string(got.Value) != tt.want:
				t.Errorf("Get after write = %q, want %q", got.Value, tt.want)
			case tt.want != absent && tt.wantErr == nil && got.Revision != after:
				t.Errorf("Get after write: revision %d, want %d", got.Revision, after)
			}
		})
	}
}

// testLargeValue: a value of 1 MiB, far more than the authority stores in
// one key, round-trips (etcd refuses requests over 1.5 MiB by default).
func testLargeValue(t *testing.T, b Backend) {
	s := b.open(t)
	v := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	rev, err := s.Put(t.Context(), "big", v)
	if err != nil {
		t.Fatalf("Put of %d bytes: %v", len(v), err)
	}
	it, err := s.Get(t.Context(), "big")
	if err != nil || !bytes.Equal(it.Value, v) || it.Revision != rev {
		t.Errorf("Get = %d bytes at %d, %v; want the %d bytes put at %d", len(it.Value), it.Revision, err, len(v), rev)
	}
}

func testInvalidWrites(t *testing.T, b Backend) {
	s := b.open(t)
	ctx := t.Context()
	MustPut(t, s, "k", "v")
	before := Rev(t, s)
	long := strings.Repeat("x", store.MaxKeySize+1)
	for _, key := range []string{"", long} {
		writes := map[string]func() error{
			"Put":    func() error { _, err := s.Put(ctx, key, []byte("v")); return err },
			"Create": func() error { _, err := s.Create(ctx, key, []byte("v")); return err },
			"CAS":    func() error { _, err := s.CompareAndSwap(ctx, key, before, []byte("v")); return err },
			"Delete": func() error { return s.Delete(ctx, key) },
		}
		for name, write := range writes {
			err := write()
			if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
				t.Errorf("%s with a %d-byte key: %v, want an invalid-key error", name, len(key), err)
			}
		}
	}
	// The longest valid key works.
	maxKey := strings.Repeat("y", store.MaxKeySize)
	rev := MustPut(t, s, maxKey, "v")
	if it, err := s.Get(ctx, maxKey); err != nil || it.Revision != rev {
		t.Errorf("Get of a %d-byte key: %+v, %v", len(maxKey), it.Revision, err)
	}
	if rev != before+1 {
		t.Errorf("invalid writes moved the store revision: %d after them, want %d", rev-1, before)
	}
}

func testRevisions(t *testing.T, b Backend) {
	s := b.open(t)
	ctx := t.Context()
	base := Rev(t, s)
	steps := []struct {
		name string
		do   func() (int64, error)
		ok   bool
	}{
		{"put a", func() (int64, error) { return s.Put(ctx, "a", []byte("1")) }, true},
		{"put b", func() (int64, error) { return s.Put(ctx, "b", []byte("1")) }, true},
		{"create a again", func() (int64, error) { return s.Create(ctx, "a", nil) }, false},
		{"create c", func() (int64, error) { return s.Create(ctx, "c", nil) }, true},
		{"cas a stale", func() (int64, error) { return s.CompareAndSwap(ctx, "a", base+99, nil) }, false},
		{"cas a", func() (int64, error) { return s.CompareAndSwap(ctx, "a", base+1, []byte("2")) }, true},
		{"delete b", func() (int64, error) { return 0, s.Delete(ctx, "b") }, true},
		{"delete b again", func() (int64, error) { return 0, s.Delete(ctx, "b") }, false},
		{"put b", func() (int64, error) { return s.Put(ctx, "b", []byte("2")) }, true},
	}
	want := base
	for _, st := range steps {
		rev, err := st.do()
		if (err == nil) != st.ok {
			t.Fatalf("%s: error = %v, want success %v", st.name, err, st.ok)
		}
		if st.ok {
			want++
		}
		if rev != 0 && rev != want {
			t.Errorf("%s: revision %d, want %d", st.name, rev, want)
		}
		if got := Rev(t, s); got != want {
			t.Errorf("%s: store revision %d, want %d", st.name, got, want)
		}
	}
	a, err := s.Get(ctx, "a")
	if err != nil || a.Revision != base+4 {
		t.Errorf("Get(a) = %+v, %v; want revision %d", a, err, base+4)
	}
	c, err := s.Get(ctx, "c")
	if err != nil || c.Revision != base+3 {
		t.Errorf("Get(c) = %+v, %v; want revision %d", c, err, base+3)
	}
}

func testList(t *testing.T, b Backend) {
	s := b.open(t)
	ctx := t.Context()
	base := Rev(t, s)
	revs := map[string]int64{}
	for _, k := range []string{"b/1", "a/y/z", "a0", "a/", "ab/", "a", "a/x"} {
		revs[k] = MustPut(t, s, k, "v:"+k)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"a/", []string{"a/", "a/x", "a/y/z"}},
		{"a", []string{"a", "a/", "a/x", "a/y/z", "a0", "ab/"}},
		{"", []string{"a", "a/", "a/x", "a/y/z", "a0", "ab/", "b/1"}},
		{"b/", []string{"b/1"}},
		{"b/1", []string{"b/1"}},
		{"c", nil},
		{"\xff", nil},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.prefix), func(t *testing.T) {
			items, rev, err := s.List(ctx, tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if rev != base+7 {
				t.Errorf("List revision = %d, want %d", rev, base+7)
			}
			var keys []string
			for _, it := range items {
				keys = append(keys, it.Key)
				if string(it.Value) != "v:"+it.Key || it.Revision != revs[it.Key] {
					t.Errorf("item %+v, want value %q revision %d", it, "v:"+it.Key, revs[it.Key])
				}
			}
			if !slices.Equal(keys, tt.want) {
				t.Errorf("List(%q) keys = %q, want %q", tt.prefix, keys, tt.want)
			}
		})
	}
}

func testConcurrentCreate(t *testing.T, b Backend) {
	s := b.open(t)
	ctx := t.Context()
	base := Rev(t, s)
	const n = 50
	var wins atomic.Int32
	var winner atomic.Value
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v := fmt.Sprint(i)
			_, err := s.Create(ctx, "lock", []byte(v))
			switch {
			case err == nil:
				wins.Add(1)
				winner.Store(v)
			case !errors.Is(err, store.ErrExists):
				t.Errorf("Create: %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d Creates succeeded, want 1", wins.Load())
	}
	it, err := s.Get(ctx, "lock")
	if err != nil || string(it.Value) != winner.Load() {
		t.Errorf("Get = %q, %v; want the winner's %q", it.Value, err, winner.Load())
	}
	if rev := Rev(t, s); rev != base+1 {
		t.Errorf("store revision %d, want %d", rev, base+1)
	}
}

func testConcurrentCAS(t *testing.T, b Backend) {
	s := b.open(t)
	ctx := t.Context()
	MustPut(t, s, "counter", "0")
	before := Rev(t, s)
	const workers, each = 16, 10
	var done atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if err := Increment(ctx, s, "counter"); err != nil {
					t.Error(err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	it, err := s.Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(it.Value); got != fmt.Sprint(done.Load()) || done.Load() != workers*each {
		t.Errorf("counter = %s after %d increments, want %d", got, done.Load(), workers*each)
	}
	if rev := Rev(t, s); rev != before+workers*each {
		t.Errorf("store revision %d after %d increments from %d: failed swaps moved it", rev, workers*each, before)
	}
}

func testContext(t *testing.T, b Backend) {
	s := b.open(t)
	MustPut(t, s, "k", "v")
	before := Rev(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := []struct {
		name string
		call func() error
	}{
		{"Put", func() error { _, err := s.Put(ctx, "k", nil); return err }},
		{"Create", func() error { _, err := s.Create(ctx, "new", nil); return err }},
		{"CompareAndSwap", func() error { _, err := s.CompareAndSwap(ctx, "k", before, nil); return err }},
		{"Delete", func() error { return s.Delete(ctx, "k") }},
		{"Get", func() error { _, err := s.Get(ctx, "k"); return err }},
		{"List", func() error { _, _, err := s.List(ctx, ""); return err }},
		{"Watch", func() error { _, err := s.Watch(ctx, "", 0); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with canceled ctx: %v, want context.Canceled", c.name, err)
		}
	}
	if rev := Rev(t, s); rev != before {
		t.Errorf("store revision %d, want %d", rev, before)
	}
}

func testWatchPrefix(t *testing.T, b Backend) {
	s := b.open(t)
	ctx := t.Context()
	base := Rev(t, s)
	ch, err := s.Watch(ctx, "w/", 0)
	if err != nil {
		t.Fatal(err)
	}
	MustPut(t, s, "w/a", "1")                    // 1
	MustPut(t, s, "x/a", "2")                    // 2
	MustPut(t, s, "w0", "3")                     // 3
	MustPut(t, s, "w/b", "4")                    // 4
	if err := s.Delete(ctx, "w/a"); err != nil { // 5
		t.Fatal(err)
	}
	MustPut(t, s, "w/empty", "") // 6
	MustPut(t, s, "w", "7")      // 7
	MustPut(t, s, "w/end", "8")  // 8

	ExpectEvents(t, ch, []store.Event{
		{Type: store.EventPut, Item: store.Item{Key: "w/a", Value: []byte("1"), Revision: base + 1}},
		{Type: store.EventPut, Item: store.Item{Key: "w/b", Value: []byte("4"), Revision: base + 4}},
		{Type: store.EventDelete, Item: store.Item{Key: "w/a", Revision: base + 5}},
		{Type: store.EventPut, Item: store.Item{Key: "w/empty", Value: []byte{}, Revision: base + 6}},
		{Type: store.EventPut, Item: store.Item{Key: "w/end", Value: []byte("8"), Revision: base + 8}},
	})
	ExpectQuiet(t, ch, 50*time.Millisecond)
}

func testWatchHistory(t *testing.T, b Backend) {
	s := b.open(t)
	ctx := t.Context()
	base := Rev(t, s)
	for i := range 5 {
		MustPut(t, s, fmt.Sprintf("h/%d", i), fmt.Sprint(i)) // base+1..base+5
	}
	_, rev, err := s.List(ctx, "h/")
	if err != nil {
		t.Fatal(err)
	}
	if rev != base+5 {
		t.Fatalf("List revision %d, want %d", rev, base+5)
	}
	ch, err := s.Watch(ctx, "h/", base+3)
	if err != nil {
		t.Fatal(err)
	}
	live, err := s.Watch(ctx, "h/", rev+1)
	if err != nil {
		t.Fatal(err)
	}
	MustPut(t, s, "h/5", "5")
	put := func(k, v string, rev int64) store.Event {
		return store.Event{Type: store.EventPut, Item: store.Item{Key: k, Value: []byte(v), Revision: rev}}
	}
	ExpectEvents(t, ch, []store.Event{put("h/2", "2", base+3), put("h/3", "3", base+4), put("h/4", "4", base+5), put("h/5", "5", base+6)})
	ExpectEvents(t, live, []store.Event{put("h/5", "5", base+6)})

	// A future revision delivers nothing before it.
	future, err := s.Watch(ctx, "h/", base+8)
	if err != nil {
		t.Fatal(err)
	}
	MustPut(t, s, "h/6", "6")
	MustPut(t, s, "h/7", "7")
	ExpectEvents(t, future, []store.Event{put("h/7", "7", base+8)})
}

func testWatchCompacted(t *testing.T, b Backend) {
	s := b.open(t)
	ctx := t.Context()
	base := Rev(t, s)
	for i := range 5 {
		MustPut(t, s, "k", fmt.Sprint(i)) // base+1..base+5
	}
	if err := s.Delete(ctx, "k"); err != nil { // base+6
		t.Fatal(err)
	}
	MustPut(t, s, "k", "5") // base+7
	b.Compact(t, s, base+6)
	for _, tc := range []struct {
		from    int64
		wantErr error
	}{
		{base + 1, store.ErrCompacted}, {base + 5, store.ErrCompacted}, {base + 6, nil}, {base + 7, nil},
		{base + 8, nil}, {base + 9, nil}, {0, nil}, {-1, nil},
	} {
		ch, err := s.Watch(ctx, "", tc.from)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("Watch from %d (history from %d): %v, want %v", tc.from, base+6, err, tc.wantErr)
		}
		if err != nil && ch != nil {
			t.Errorf("Watch from %d returned a channel with an error", tc.from)
		}
	}
	// The deletion at the oldest revision held is delivered.
	ch, err := s.Watch(ctx, "", base+6)
	if err != nil {
		t.Fatal(err)
	}
	ExpectEvents(t, ch, []store.Event{
		{Type: store.EventDelete, Item: store.Item{Key: "k", Revision: base + 6}},
		{Type: store.EventPut, Item: store.Item{Key: "k", Value: []byte("5"), Revision: base + 7}},
	})
}

func testWatchClose(t *testing.T, b Backend) {
	s := b.open(t)
	ctx, cancel := context.WithCancel(t.Context())
	byCtx, err := s.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	byClose, err := s.Watch(t.Context(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	ExpectClosed(t, byCtx, 0)
	MustPut(t, s, "k", "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ExpectClosed(t, byClose, 1)
	if _, err := s.Watch(t.Context(), "", 0); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Watch after Close: %v, want ErrClosed", err)
	}
}

func testSlowWatcher(t *testing.T, b Backend) {
	const buffer = 4
	s := b.Open(t, buffer)
	ctx := t.Context()
	slow, err := s.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := s.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range fast {
			got.Add(1)
		}
	}()

	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	const n = 20
	for i := range n {
		if _, err := s.Put(wctx, "k", []byte(fmt.Sprint(i))); err != nil {
			t.Fatalf("Put %d with a slow watcher: %v", i, err)
		}
		// Let the fast watcher keep up, so only the slow one (which never
		// reads) can overflow its buffer, however busy the machine is.
		for got.Load() != int32(i+1) {
			select {
			case <-wctx.Done():
				t.Fatalf("fast watcher stuck at %d events after Put %d", got.Load(), i)
			case <-time.After(time.Millisecond):
			}
		}
	}
	ExpectClosed(t, slow, buffer)
	s.Close()
	<-done
	if got.Load() != n {
		t.Errorf("fast watcher got %d events, want %d", got.Load(), n)
	}
}

func testClose(t *testing.T, b Backend) {
	s := b.open(t)
	ctx := t.Context()
	rev := MustPut(t, s, "k", "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Put", func() error { _, err := s.Put(ctx, "k", nil); return err }},
		{"Create", func() error { _, err := s.Create(ctx, "new", nil); return err }},
		{"CompareAndSwap", func() error { _, err := s.CompareAndSwap(ctx, "k", rev, nil); return err }},
		{"Delete", func() error { return s.Delete(ctx, "k") }},
		{"Get", func() error { _, err := s.Get(ctx, "k"); return err }},
		{"List", func() error { _, _, err := s.List(ctx, ""); return err }},
		{"Watch", func() error { _, err := s.Watch(ctx, "", 0); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", c.name, err)
		}
	}
	s = b.Reopen(t, s)
	if it, err := s.Get(ctx, "k"); err != nil || string(it.Value) != "v" || it.Revision != rev {
		t.Errorf("after reopening, Get = %+v, %v; want v at %d", it, err, rev)
	}
}

// testCloseDuringWrites: Close lets the writes under way finish; every
// write that succeeded is there after reopening, and no other.
func testCloseDuringWrites(t *testing.T, b Backend) {
	s := b.open(t)
	ctx := t.Context()
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("%d/%d", g, i)
				_, err := s.Put(ctx, key, []byte(key))
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, key)
				mu.Unlock()
			}
		})
	}
	WaitFor(t, "20 writes acknowledged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 20
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	s = b.Reopen(t, s)
	items, _, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != len(acked) {
		t.Errorf("%d keys stored, %d acknowledged", len(items), len(acked))
	}
	for _, key := range acked {
		if it, err := s.Get(ctx, key); err != nil || string(it.Value) != key {
			t.Errorf("acknowledged %q: %q, %v", key, it.Value, err)
		}
	}
}
