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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

func TestBoltGet(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{})
	ctx := t.Context()
	rev := mustPut(t, b, "users/alice", "A")
	mustPut(t, b, "users/empty", "")

	tests := []struct {
		name    string
		key     string
		want    Item
		wantErr error
	}{
		{"present", "users/alice", Item{Key: "users/alice", Value: []byte("A"), Revision: rev}, nil},
		{"empty value", "users/empty", Item{Key: "users/empty", Value: []byte{}, Revision: rev + 1}, nil},
		{"absent", "users/bob", Item{}, ErrNotFound},
		{"prefix of present key", "users/", Item{}, ErrNotFound},
		{"empty key", "", Item{}, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := b.Get(ctx, tt.key)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Get(%q) error = %v, want %v", tt.key, err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), strconv.Quote(tt.key)) {
					t.Errorf("error %q does not name key %q", err, tt.key)
				}
				return
			}
			if got.Key != tt.want.Key || !bytes.Equal(got.Value, tt.want.Value) || got.Revision != tt.want.Revision {
				t.Errorf("Get(%q) = %+v, want %+v", tt.key, got, tt.want)
			}
		})
	}
}

func TestBoltWrites(t *testing.T) {
	type writeFunc func(ctx context.Context, b *Bolt, rev int64) (int64, error)
	put := func(v string) writeFunc {
		return func(ctx context.Context, b *Bolt, _ int64) (int64, error) { return b.Put(ctx, "k", []byte(v)) }
	}
	create := func(v string) writeFunc {
		return func(ctx context.Context, b *Bolt, _ int64) (int64, error) { return b.Create(ctx, "k", []byte(v)) }
	}
	cas := func(delta int64, v string) writeFunc {
		return func(ctx context.Context, b *Bolt, rev int64) (int64, error) {
			return b.CompareAndSwap(ctx, "k", rev+delta, []byte(v))
		}
	}
	del := func(ctx context.Context, b *Bolt, _ int64) (int64, error) { return 0, b.Delete(ctx, "k") }

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
		{"create present", true, create("new"), ErrExists, "old"},
		{"cas current revision", true, cas(0, "new"), nil, "new"},
		{"cas older revision", true, cas(-1, "new"), ErrConflict, "old"},
		{"cas newer revision", true, cas(+1, "new"), ErrConflict, "old"},
		{"cas absent", false, cas(0, "new"), ErrNotFound, absent},
		{"delete present", true, del, nil, absent},
		{"delete absent", false, del, ErrNotFound, absent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := openTestBolt(t, BoltOptions{})
			ctx := t.Context()
			mustPut(t, b, "other", "x") // so the store revision and k's differ
			var seedRev int64
			if tt.seed {
				seedRev = mustPut(t, b, "k", "old")
			}
			before := storeRev(t, b)

			rev, err := tt.write(ctx, b, seedRev)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			after := storeRev(t, b)
			switch {
			case err != nil:
				if !strings.Contains(err.Error(), `"k"`) {
					t.Errorf("error %q does not name the key", err)
				}
				if after != before {
					t.Errorf("failed write moved store revision from %d to %d", before, after)
				}
			case after != before+1:
				t.Errorf("store revision %d after write, want %d", after, before+1)
			case rev != 0 && rev != after:
				t.Errorf("write returned revision %d, store is at %d", rev, after)
			}

			got, err := b.Get(ctx, "k")
			switch {
			case tt.want == absent && !errors.Is(err, ErrNotFound):
				t.Errorf("Get after write = %q, %v; want ErrNotFound", got.Value, err)
			case tt.want != absent && err != nil:
				t.Errorf("Get after write: %v", err)
			case tt.want != absent && string(got.Value) != tt.want:
				t.Errorf("Get after write = %q, want %q", got.Value, tt.want)
			}
		})
	}
}

func TestBoltInvalidWrites(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{})
	ctx := t.Context()
	long := strings.Repeat("x", bolt.MaxKeySize+1)
	for _, key := range []string{"", long} {
		if _, err := b.Put(ctx, key, []byte("v")); err == nil {
			t.Errorf("Put with %d-byte key succeeded", len(key))
		}
	}
	if rev := storeRev(t, b); rev != 0 {
		t.Errorf("store revision %d after invalid writes, want 0", rev)
	}
}

func TestBoltRevisions(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{})
	ctx := t.Context()
	steps := []struct {
		name string
		do   func() (int64, error)
		ok   bool
	}{
		{"put a", func() (int64, error) { return b.Put(ctx, "a", []byte("1")) }, true},
		{"put b", func() (int64, error) { return b.Put(ctx, "b", []byte("1")) }, true},
		{"create a again", func() (int64, error) { return b.Create(ctx, "a", nil) }, false},
		{"create c", func() (int64, error) { return b.Create(ctx, "c", nil) }, true},
		{"cas a stale", func() (int64, error) { return b.CompareAndSwap(ctx, "a", 99, nil) }, false},
		{"cas a", func() (int64, error) { return b.CompareAndSwap(ctx, "a", 1, []byte("2")) }, true},
		{"delete b", func() (int64, error) { return 0, b.Delete(ctx, "b") }, true},
		{"delete b again", func() (int64, error) { return 0, b.Delete(ctx, "b") }, false},
		{"put b", func() (int64, error) { return b.Put(ctx, "b", []byte("2")) }, true},
	}
	var want int64
	for _, s := range steps {
		rev, err := s.do()
		if (err == nil) != s.ok {
			t.Fatalf("%s: error = %v, want success %v", s.name, err, s.ok)
		}
		if s.ok {
			want++
		}
		if rev != 0 && rev != want {
			t.Errorf("%s: revision %d, want %d", s.name, rev, want)
		}
		if got := storeRev(t, b); got != want {
			t.Errorf("%s: store revision %d, want %d", s.name, got, want)
		}
	}
	a, err := b.Get(ctx, "a")
	if err != nil || a.Revision != 4 {
		t.Errorf("Get(a) = %+v, %v; want revision 4", a, err)
	}
}

func TestBoltList(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{})
	ctx := t.Context()
	revs := map[string]int64{}
	for _, k := range []string{"b/1", "a/y/z", "a0", "a/", "ab/", "a", "a/x"} {
		revs[k] = mustPut(t, b, k, "v:"+k)
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
			items, rev, err := b.List(ctx, tt.prefix)
			if err != nil {
				t.Fatal(err)
			}
			if rev != 7 {
				t.Errorf("List revision = %d, want 7", rev)
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

func TestBoltConcurrentCreate(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{})
	ctx := t.Context()
	const n = 50
	var wins atomic.Int32
	var winner atomic.Value
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v := fmt.Sprint(i)
			_, err := b.Create(ctx, "lock", []byte(v))
			switch {
			case err == nil:
				wins.Add(1)
				winner.Store(v)
			case !errors.Is(err, ErrExists):
				t.Errorf("Create: %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d Creates succeeded, want 1", wins.Load())
	}
	it, err := b.Get(ctx, "lock")
	if err != nil || string(it.Value) != winner.Load() {
		t.Errorf("Get = %q, %v; want the winner's %q", it.Value, err, winner.Load())
	}
	if rev := storeRev(t, b); rev != 1 {
		t.Errorf("store revision %d, want 1", rev)
	}
}

func TestBoltConcurrentCAS(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{})
	ctx := t.Context()
	mustPut(t, b, "counter", "0")
	const workers, each = 16, 10
	var done atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				if err := increment(ctx, b, "counter"); err != nil {
					t.Error(err)
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	it, err := b.Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(it.Value); got != fmt.Sprint(done.Load()) || done.Load() != workers*each {
		t.Errorf("counter = %s after %d increments, want %d", got, done.Load(), workers*each)
	}
}

// increment adds one to the decimal counter at key, retrying on conflict.
func increment(ctx context.Context, s Store, key string) error {
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
		if !errors.Is(err, ErrConflict) {
			return err
		}
	}
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

func TestBoltContext(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.Put(ctx, "k", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with canceled ctx: %v", err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with canceled ctx: %v", err)
	}
	if _, _, err := b.List(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("List with canceled ctx: %v", err)
	}
	if _, err := b.Watch(ctx, "", 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Watch with canceled ctx: %v", err)
	}
	if rev := storeRev(t, b); rev != 0 {
		t.Errorf("store revision %d, want 0", rev)
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

func TestBoltWatchPrefix(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{})
	ctx := t.Context()
	ch, err := b.Watch(ctx, "w/", 0)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, b, "w/a", "1")                    // 1
	mustPut(t, b, "x/a", "2")                    // 2
	mustPut(t, b, "w0", "3")                     // 3
	mustPut(t, b, "w/b", "4")                    // 4
	if err := b.Delete(ctx, "w/a"); err != nil { // 5
		t.Fatal(err)
	}
	mustPut(t, b, "w/end", "6") // 6

	want := []Event{
		{EventPut, Item{"w/a", []byte("1"), 1}},
		{EventPut, Item{"w/b", []byte("4"), 4}},
		{EventDelete, Item{"w/a", nil, 5}},
		{EventPut, Item{"w/end", []byte("6"), 6}},
	}
	expectEvents(t, ch, want)
}

func TestBoltWatchHistory(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{})
	ctx := t.Context()
	for i := range 5 {
		mustPut(t, b, fmt.Sprintf("h/%d", i), fmt.Sprint(i)) // revisions 1..5
	}
	_, rev, err := b.List(ctx, "h/")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := b.Watch(ctx, "h/", 3)
	if err != nil {
		t.Fatal(err)
	}
	live, err := b.Watch(ctx, "h/", rev+1)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, b, "h/5", "5")
	expectEvents(t, ch, []Event{
		{EventPut, Item{"h/2", []byte("2"), 3}},
		{EventPut, Item{"h/3", []byte("3"), 4}},
		{EventPut, Item{"h/4", []byte("4"), 5}},
		{EventPut, Item{"h/5", []byte("5"), 6}},
	})
	expectEvents(t, live, []Event{{EventPut, Item{"h/5", []byte("5"), 6}}})

	// A future revision delivers nothing before it.
	future, err := b.Watch(ctx, "h/", 8)
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, b, "h/6", "6")
	mustPut(t, b, "h/7", "7")
	expectEvents(t, future, []Event{{EventPut, Item{"h/7", []byte("7"), 8}}})
}

func TestBoltWatchCompacted(t *testing.T) {
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

func TestBoltWatchClose(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	byCtx, err := b.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	byClose, err := b.Watch(t.Context(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	expectClosed(t, byCtx, 0)
	mustPut(t, b, "k", "v")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, byClose, 1)
	if _, err := b.Watch(t.Context(), "", 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Watch after Close: %v, want ErrClosed", err)
	}
}

func TestBoltSlowWatcher(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{WatchBuffer: 4})
	ctx := t.Context()
	slow, err := b.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := b.Watch(ctx, "", 0)
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

	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	const n = 20
	for i := range n {
		if _, err := b.Put(wctx, "k", []byte(fmt.Sprint(i))); err != nil {
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
	expectClosed(t, slow, 4)
	b.Close()
	<-done
	if got.Load() != n {
		t.Errorf("fast watcher got %d events, want %d", got.Load(), n)
	}
}

func TestBoltClose(t *testing.T) {
	b, _ := openTestBolt(t, BoltOptions{})
	ctx := t.Context()
	mustPut(t, b, "k", "v")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := b.Put(ctx, "k", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}
	if err := b.Delete(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Delete after Close: %v", err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
	if _, _, err := b.List(ctx, ""); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close: %v", err)
	}
}

func TestBoltCloseDuringWrites(t *testing.T) {
	b, path := openTestBolt(t, BoltOptions{})
	ctx := t.Context()
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("%d/%d", g, i)
				_, err := b.Put(ctx, key, []byte(key))
				if errors.Is(err, ErrClosed) {
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
	waitFor(t, func() bool { return b.commits.Load() >= 5 })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	b, err := OpenBolt(path, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	items, _, err := b.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != len(acked) {
		t.Errorf("%d keys stored, %d acknowledged", len(items), len(acked))
	}
	for _, key := range acked {
		if _, err := b.Get(ctx, key); err != nil {
			t.Errorf("acknowledged %q: %v", key, err)
		}
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

// expectClosed drains ch, expecting it to close after at most limit events.
func expectClosed(t *testing.T, ch <-chan Event, limit int) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for n := 0; ; n++ {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
			if n >= limit {
				t.Fatalf("more than %d events before close", limit)
			}
		case <-timeout:
			t.Fatal("channel not closed")
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
