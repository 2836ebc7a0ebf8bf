package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openTestBolt opens a store in a fresh directory and closes it when the
// test ends.
func openTestBolt(t *testing.T, opts BoltOptions) (*Bolt, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "store.db")
	b, err := OpenBolt(path, opts)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b, path
}

// storeRev returns the store revision as List reports it.
func storeRev(t *testing.T, b *Bolt) int64 {
	t.Helper()
	_, rev, err := b.List(t.Context(), "")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return rev
}

func mustPut(t *testing.T, b *Bolt, key, value string) int64 {
	t.Helper()
	rev, err := b.Put(t.Context(), key, []byte(value))
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return rev
}

func TestBoltGroupCommit(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{})
	ctx := t.Context()

	// Hold bbolt's writer lock so that Puts pile up behind the first batch.
	tx, err := b.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	const n = 200
	revs := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rev, err := b.Put(ctx, fmt.Sprintf("k/%03d", i), []byte("v"))
			if err != nil {
				t.Error(err)
			}
			revs[i] = rev
		})
	}
	// Once every Put is in the blocked first batch or queued behind it,
	// the rest fit in one more batch.
	waitFor(t, func() bool { return b.pending.Load() == n })
	tx.Rollback()
	wg.Wait()

	if c := b.commits.Load(); c > 2 {
		t.Errorf("%d Puts took %d transactions, want at most 2", n, c)
	} else {
		t.Logf("%d Puts took %d transactions", n, c)
	}
	slices.Sort(revs)
	for i, rev := range revs {
		if rev != int64(i+1) {
			t.Fatalf("revisions %v, want 1..%d each once", revs, n)
		}
	}

	// An idle store commits a lone write at once.
	before := b.commits.Load()
	mustPut(t, b, "single", "v")
	if c := b.commits.Load() - before; c != 1 {
		t.Errorf("one Put took %d transactions, want 1", c)
	}
}

func TestBoltBatchPartialFailure(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{})
	ctx := t.Context()
	takenRev := mustPut(t, b, "taken", "old") // 1
	ch, err := b.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}

	mk := func(kind opKind, key string, rev int64, value string) *op {
		return &op{kind: kind, key: key, rev: rev, value: []byte(value), reply: make(chan result, 1)}
	}
	batch := []*op{
		mk(opCreate, "taken", 0, "new"),      // ErrExists
		mk(opCreate, "fresh", 0, "1"),        // 2
		mk(opCreate, "fresh", 0, "again"),    // ErrExists: sees the op before it
		mk(opCAS, "taken", takenRev, "cas"),  // 3
		mk(opCAS, "taken", takenRev, "cas2"), // ErrConflict: revision moved to 3
		mk(opDelete, "missing", 0, ""),       // ErrNotFound
		mk(opDelete, "fresh", 0, ""),         // 4
		mk(opPut, "fresh", 0, "2"),           // 5
	}
	want := []result{{err: ErrExists}, {rev: 2}, {err: ErrExists}, {rev: 3}, {err: ErrConflict}, {err: ErrNotFound}, {rev: 4}, {rev: 5}}
	before := b.commits.Load()
	b.commit(batch)
	if c := b.commits.Load() - before; c != 1 {
		t.Errorf("batch took %d transactions, want 1", c)
	}
	for i, o := range batch {
		got := <-o.reply
		if got.rev != want[i].rev || !errors.Is(got.err, want[i].err) || (want[i].err == nil) != (got.err == nil) {
			t.Errorf("op %d (%d %q) = %d, %v; want %d, %v", i, o.kind, o.key, got.rev, got.err, want[i].rev, want[i].err)
		}
	}
	expectEvents(t, ch, []Event{
		{EventPut, Item{"fresh", []byte("1"), 2}},
		{EventPut, Item{"taken", []byte("cas"), 3}},
		{EventDelete, Item{"fresh", nil, 4}},
		{EventPut, Item{"fresh", []byte("2"), 5}},
	})
	items, rev, err := b.List(ctx, "")
	if err != nil || rev != 5 || len(items) != 2 || string(items[0].Value) != "2" || string(items[1].Value) != "cas" {
		t.Errorf("List = %+v, %d, %v", items, rev, err)
	}

	// A batch in which every op fails commits nothing.
	before = b.commits.Load()
	failing := []*op{mk(opCreate, "taken", 0, "x"), mk(opDelete, "missing", 0, "")}
	b.commit(failing)
	for _, o := range failing {
		if r := <-o.reply; r.err == nil {
			t.Errorf("op on %q succeeded", o.key)
		}
	}
	if c := b.commits.Load() - before; c != 0 {
		t.Errorf("failing batch took %d transactions, want 0", c)
	}
	if rev := storeRev(t, b); rev != 5 {
		t.Errorf("store revision %d after failing batch, want 5", rev)
	}
}

func TestBoltReopen(t *testing.T) {
	b, path := openTestBolt(t, BoltOptions{})
	ctx := t.Context()
	mustPut(t, b, "a", "1")
	mustPut(t, b, "b", "2")
	mustPut(t, b, "a", "3")
	if err := b.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, %v; want 0600", fi.Mode(), err)
	}

	b, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	items, rev, err := b.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if rev != 4 || len(items) != 1 || items[0].Key != "a" || string(items[0].Value) != "3" || items[0].Revision != 3 {
		t.Errorf("after reopen List = %+v, rev %d; want [a=3 at 3], rev 4", items, rev)
	}
	if rev := mustPut(t, b, "c", "4"); rev != 5 {
		t.Errorf("first Put after reopen at revision %d, want 5", rev)
	}
}

const crashHelperEnv = "STORE_BOLT_CRASH_HELPER"

// TestBoltCrashHelper is not a test: TestBoltCrashDurability runs it in a
// child process, which writes keys until killed and prints each one that
// was acknowledged.
func TestBoltCrashHelper(t *testing.T) {
	path := os.Getenv(crashHelperEnv)
	if path == "" {
		t.Skip("helper process for TestBoltCrashDurability")
	}
	b, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("crash/%d/%06d", g, i)
				if _, err := b.Put(ctx, key, []byte(key)); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				fmt.Fprintln(os.Stdout, key)
			}
		})
	}
	wg.Wait()
	os.Exit(4) // never killed
}

func TestBoltCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	path := filepath.Join(t.TempDir(), "store.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestBoltCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := readAcks(stdout, 300, func() { cmd.Process.Kill() })
	err = cmd.Wait()
	if cmd.ProcessState.Exited() {
		t.Fatalf("helper exited on its own (%v): %s", err, stderr.Bytes())
	}
	if len(acked) < 300 {
		t.Fatalf("only %d writes acknowledged before kill", len(acked))
	}

	b, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, key := range acked {
		it, err := b.Get(t.Context(), key)
		if err != nil || string(it.Value) != key {
			t.Fatalf("acknowledged key %q after kill: %q, %v", key, it.Value, err)
		}
	}
	t.Logf("%d acknowledged writes survived SIGKILL", len(acked))
}

// readAcks reads newline-terminated keys from r until EOF, calling kill once
// n have arrived.
func readAcks(r io.Reader, n int, kill func()) []string {
	var keys []string
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return keys // a line cut short was never acknowledged
		}
		keys = append(keys, strings.TrimSuffix(line, "\n"))
		if len(keys) == n {
			kill()
		}
	}
}

// TestBoltWatchHistoryLimit: bbolt holds the last WatchHistory events, and
// none from before the store was opened.
func TestBoltWatchHistoryLimit(t *testing.T) {
	b, path := openTestBolt(t, BoltOptions{WatchHistory: 3})
	ctx := t.Context()
	for i := range 5 {
		mustPut(t, b, "k", fmt.Sprint(i)) // revisions 1..5; 3..5 held
	}
	for _, tc := range []struct {
		from    int64
		wantErr error
	}{
		{1, ErrCompacted}, {2, ErrCompacted}, {3, nil}, {5, nil}, {6, nil}, {7, nil}, {0, nil}, {-1, nil},
	} {
		_, err := b.Watch(ctx, "", tc.from)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("Watch from %d: %v, want %v", tc.from, err, tc.wantErr)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// After reopening, nothing before the open revision is held.
	b, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, tc := range []struct {
		from    int64
		wantErr error
	}{
		{1, ErrCompacted}, {5, ErrCompacted}, {6, nil}, {0, nil},
	} {
		_, err := b.Watch(ctx, "", tc.from)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("after reopen, Watch from %d: %v, want %v", tc.from, err, tc.wantErr)
		}
	}
	ch, err := b.Watch(ctx, "", 6)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, b, "k", "new")
	if _, err := b.Watch(ctx, "", 6); err != nil {
		t.Errorf("Watch from the first revision after reopen: %v", err)
	}
	expectEvents(t, ch, []Event{{EventPut, Item{"k", []byte("new"), 6}}})
}

func TestBoltWatchNoHistory(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{WatchHistory: -1})
	ctx := t.Context()
	rev := mustPut(t, b, "k", "v")
	if _, err := b.Watch(ctx, "", rev); !errors.Is(err, ErrCompacted) {
		t.Errorf("Watch from last revision without history: %v, want ErrCompacted", err)
	}
	ch, err := b.Watch(ctx, "", rev+1)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, b, "k", "w")
	expectEvents(t, ch, []Event{{EventPut, Item{"k", []byte("w"), rev + 1}}})
}

// The key limit of package store is bbolt's.
func TestBoltMaxKeySize(t *testing.T) {
	if MaxKeySize != bolt.MaxKeySize {
		t.Errorf("MaxKeySize = %d, bbolt's is %d", MaxKeySize, bolt.MaxKeySize)
	}
}

func TestBoltLocked(t *testing.T) {
	b, path := openTestBolt(t, BoltOptions{})
	start := time.Now()
	_, err := OpenBolt(path, BoltOptions{Timeout: 100 * time.Millisecond})
	if err == nil {
		t.Fatal("second OpenBolt of an open file succeeded")
	}
	if !strings.Contains(err.Error(), "in use by another process") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not say %s is in use", err, path)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("OpenBolt took %v with a 100ms timeout", d)
	}
	b.Close()
	b2, err := OpenBolt(path, BoltOptions{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("OpenBolt after Close: %v", err)
	}
	b2.Close()
}

func TestBoltDamagedFile(t *testing.T) {
	foreign := func(path string) error {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			return err
		}
		defer db.Close()
		return db.Update(func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("other"))
			return err
		})
	}
	garbage := func(n int) func(string) error {
		return func(path string) error {
			buf := make([]byte, n)
			for i := range buf {
				buf[i] = byte(i*7 + i>>8)
			}
			return os.WriteFile(path, buf, 0o600)
		}
	}
	tests := []struct {
		name  string
		write func(path string) error
	}{
		{"short garbage", garbage(10)},
		{"page of garbage", garbage(5000)},
		{"pages of garbage", garbage(64 << 10)},
		{"text", func(path string) error { return os.WriteFile(path, []byte("users:\n  alice\n"), 0o600) }},
		{"foreign bbolt file", foreign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "store.db")
			if err := tt.write(path); err != nil {
				t.Fatal(err)
			}
			b, err := OpenBolt(path, BoltOptions{Timeout: 100 * time.Millisecond})
			if err == nil {
				b.Close()
				t.Fatal("OpenBolt succeeded")
			}
			if !strings.Contains(err.Error(), "not a valid store file") || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not say %s is not a valid store file", err, path)
			}
			// The lock must have been released.
			if b, err := OpenBolt(path, BoltOptions{Timeout: -1}); err == nil || strings.Contains(err.Error(), "in use") {
				t.Errorf("second OpenBolt: %v", err)
				if b != nil {
					b.Close()
				}
			}
		})
	}
}

func TestBoltOpenMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "store.db")
	_, err := OpenBolt(path, BoltOptions{})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("OpenBolt in missing directory: %v", err)
	}
}

func TestBoltNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	path := filepath.Join(t.TempDir(), "store.db")
	b, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	for range 3 {
		if _, err := b.Watch(ctx, "", 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Watch(context.Background(), "", 0); err != nil {
		t.Fatal(err)
	}
	mustPut(t, b, "k", "v")
	cancel()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

// FuzzDecodeValue checks that decodeValue never panics and that whatever it
// accepts encodes back to the same bytes.
func FuzzDecodeValue(f *testing.F) {
	f.Add(encodeValue(1, []byte(`{"name":"alice"}`)))
	f.Add(encodeValue(1<<40, nil))
	f.Add([]byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, buf []byte) {
		rev, val, err := decodeValue(buf)
		if err != nil {
			return
		}
		if rev <= 0 {
			t.Fatalf("decodeValue accepted revision %d", rev)
		}
		if enc := encodeValue(rev, val); !bytes.Equal(enc, buf) {
			t.Fatalf("encodeValue(decodeValue(%x)) = %x", buf, enc)
		}
	})
}

func TestEncodeValue(t *testing.T) {
	for _, tc := range []struct {
		rev   int64
		value []byte
	}{{1, nil}, {1, []byte{}}, {42, []byte("v")}, {1<<63 - 1, []byte("\x00\xff")}} {
		rev, val, err := decodeValue(encodeValue(tc.rev, tc.value))
		if err != nil || rev != tc.rev || !bytes.Equal(val, tc.value) {
			t.Errorf("round trip of %d, %q = %d, %q, %v", tc.rev, tc.value, rev, val, err)
		}
	}
	for _, buf := range [][]byte{nil, make([]byte, 7), make([]byte, 8), {0x80, 0, 0, 0, 0, 0, 0, 1}} {
		if _, _, err := decodeValue(buf); err == nil {
			t.Errorf("decodeValue(%x) succeeded", buf)
		}
	}
}

// expectEvents receives len(want) events from ch and compares them.
func expectEvents(t *testing.T, ch <-chan Event, want []Event) {
	t.Helper()
	for i, w := range want {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d events, want %d", i, len(want))
			}
			if ev.Type != w.Type || ev.Item.Key != w.Item.Key || !bytes.Equal(ev.Item.Value, w.Item.Value) ||
				ev.Item.Revision != w.Item.Revision || (w.Type == EventDelete && ev.Item.Value != nil) {
				t.Fatalf("event %d = %+v, want %+v", i, ev, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event %d, want %+v", i, w)
		}
	}
}

// waitFor polls cond until it holds, failing the test after five seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}

// TestBoltLinger: an idle store commits at once; a busy one lingers, and
// the writes that arrive meanwhile share one commit.
func TestBoltLinger(t *testing.T) {
	const linger = 300 * time.Millisecond
	b, _ := openTestBolt(t, BoltOptions{Linger: linger})

	start := time.Now()
	mustPut(t, b, "idle", "v")
	if d := time.Since(start); d >= linger {
		t.Fatalf("idle Put took %v; an idle store must not linger", d)
	}
	if b.busy.Load() {
		t.Fatal("a one-op batch marked the store busy")
	}

	// As after a commit of several ops (the writer sets busy then).
	b.busy.Store(true)
	before := b.Stats()
	start = time.Now()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() { mustPut(t, b, fmt.Sprintf("joined/%d", i), "v") })
	}
	wg.Wait()
	if d := time.Since(start); d < linger/2 {
		t.Errorf("writes to a busy store returned in %v; want a linger of about %v", d, linger)
	}
	after := b.Stats()
	if c, ops := after.Commits-before.Commits, after.Ops-before.Ops; ops != 10 || c != 1 {
		t.Errorf("10 writes during a linger took %d commits (%d ops), want 1", c, ops)
	}
	if !b.busy.Load() {
		t.Error("a 10-op batch did not mark the store busy")
	}
}

// The watch history is bounded by bytes as well as by events: large
// values cannot make it hold much memory; what it drops is reported as
// compacted, what it holds is replayed.
func TestBoltWatchHistoryBytes(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{WatchHistory: 1000, WatchHistoryBytes: 2000})
	ctx := t.Context()
	big := strings.Repeat("v", 400)
	var revs []int64
	for i := range 20 {
		revs = append(revs, mustPut(t, b, fmt.Sprintf("k/%02d", i), big))
	}
	if n := b.hist.len(); n < 1 || n > 5 {
		t.Fatalf("history holds %d events of ~470 bytes under a 2000-byte bound", n)
	}
	if _, err := b.Watch(ctx, "k/", revs[0]); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch from the first revision: %v, want ErrCompacted", err)
	}
	ch, err := b.Watch(ctx, "k/", revs[len(revs)-2])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range revs[len(revs)-2:] {
		if ev := <-ch; ev.Item.Revision != want || string(ev.Item.Value) != big {
			t.Fatalf("replayed %+v, want revision %d", ev.Item, want)
		}
	}
	// One value larger than the bound is still held (the newest always is).
	rev := mustPut(t, b, "k/huge", strings.Repeat("h", 5000))
	if _, err := b.Watch(ctx, "k/", rev); err != nil {
		t.Fatalf("watch from the newest revision: %v", err)
	}
}
