package recorder

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testHeader = `{"version":2,"width":80,"height":24,"timestamp":1741944413,"user":"alice","channel":0}` + "\n"
	testEvent1 = `[0.100000, "o", "hello\r\n"]` + "\n"
	testEvent2 = `[1.500000, "r", "100x30"]` + "\n"
)

func TestRecover(t *testing.T) {
	tests := []struct {
		name   string
		part   string
		want   string // contents of <id>.cast; "" when the file must go to .broken
		broken bool
	}{
		{name: "half-written last line", part: testHeader + testEvent1 + testEvent2 + `[2.0, "o", "hal`, want: testHeader + testEvent1 + testEvent2},
		{name: "complete", part: testHeader + testEvent1 + testEvent2, want: testHeader + testEvent1 + testEvent2},
		{name: "header only", part: testHeader, want: testHeader},
		{name: "last line complete JSON without newline", part: testHeader + testEvent1 + strings.TrimSuffix(testEvent2, "\n"), want: testHeader + testEvent1},
		{name: "zeros after a crash", part: testHeader + testEvent1 + "\x00\x00\x00\x00", want: testHeader + testEvent1},
		{name: "zero line", part: testHeader + testEvent1 + "\x00\x00\n" + testEvent2, want: testHeader + testEvent1},
		{name: "invalid JSON line", part: testHeader + "[1.0, \"o\" \"x\"]\n" + testEvent2, want: testHeader},
		{name: "invalid UTF-8 line", part: testHeader + testEvent1 + "[1.0, \"o\", \"\xff\"]\n", want: testHeader + testEvent1},
		{name: "carriage return", part: testHeader + testEvent1 + "[1.0,\r\"o\", \"x\"]\n", want: testHeader + testEvent1},
		{name: "two elements", part: testHeader + "[1.0, \"o\"]\n", want: testHeader},
		{name: "negative time", part: testHeader + "[-1.0, \"o\", \"x\"]\n", want: testHeader},
		{name: "text not a string", part: testHeader + "[1.0, \"o\", 5]\n", want: testHeader},
		{name: "empty", part: "", broken: true},
		{name: "garbage", part: "\x89PNG\r\n\x1a\n\x00\x00", broken: true},
		{name: "header without newline", part: strings.TrimSuffix(testHeader, "\n"), broken: true},
		{name: "half header", part: testHeader[:20], broken: true},
		{name: "version 1 header", part: `{"version":1,"width":80,"height":24}` + "\n" + testEvent1, broken: true},
		{name: "header with null width", part: `{"version":2,"width":null,"height":24}` + "\n", broken: true},
		{name: "header is an array", part: testEvent1 + testEvent1, broken: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			must(t, os.WriteFile(filepath.Join(dir, "s1-0.cast.part"), []byte(tt.part), 0o600))
			err := (&Spool{Dir: dir}).Recover()
			must(t, err)
			if _, err := os.Stat(filepath.Join(dir, "s1-0.cast.part")); err == nil {
				t.Error("part file still there after Recover")
			}
			if tt.broken {
				b, err := os.ReadFile(filepath.Join(dir, "s1-0.cast.broken"))
				must(t, err)
				if string(b) != tt.part {
					t.Errorf("broken file = %q, want the part file unchanged %q", b, tt.part)
				}
				if _, err := os.Stat(filepath.Join(dir, "s1-0.cast")); err == nil {
					t.Error("broken part file became a recording")
				}
				return
			}
			b, err := os.ReadFile(filepath.Join(dir, "s1-0.cast"))
			must(t, err)
			if string(b) != tt.want {
				t.Errorf("recovered file = %q, want %q", b, tt.want)
			}
			parseCast(t, b)
		})
	}
}

// TestRecoverCrashedRecorder: a recorder whose process died after a flush
// and in the middle of the next write.
func TestRecoverCrashedRecorder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := Create(dir, "sess-1", Header{User: "alice"}, Options{FlushInterval: time.Hour})
	must(t, err)
	t.Cleanup(func() { r.f.Close() })
	must(t, r.Output([]byte("before the crash\r\n")))
	must(t, r.Resize(100, 30))
	must(t, r.w.Flush())
	f, err := os.OpenFile(filepath.Join(dir, "sess-1.cast.part"), os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString(`[7.250000, "o", "half a li`)
	must(t, err)
	must(t, f.Close())

	must(t, (&Spool{Dir: dir}).Recover())
	b, err := os.ReadFile(filepath.Join(dir, "sess-1.cast"))
	must(t, err)
	header, events := parseCast(t, b)
	if header["user"] != "alice" {
		t.Errorf("header user = %v", header["user"])
	}
	if got := texts(events, "o"); got != "before the crash\r\n" {
		t.Errorf("recovered output = %q", got)
	}
	if got := texts(events, "r"); got != "100x30" {
		t.Errorf("recovered resize = %q", got)
	}
}

// TestRecoverNeverDeletes: an id that already has a broken or finished file
// keeps both.
func TestRecoverNeverDeletes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, data string) { must(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600)) }
	write("a.cast.broken", "old broken")
	write("a.cast.broken.1", "older broken")
	write("a.cast.part", "new garbage")
	write("b.cast", testHeader+testEvent1)
	write("b.cast.part", testHeader+testEvent2)
	write(".hidden.cast.part", "not ours")
	write("notes.txt", "not ours")
	must(t, (&Spool{Dir: dir}).Recover())
	want := map[string]string{
		"a.cast.broken":     "old broken",
		"a.cast.broken.1":   "older broken",
		"a.cast.broken.2":   "new garbage",
		"b.cast":            testHeader + testEvent1,
		"b.cast.broken":     testHeader + testEvent2,
		".hidden.cast.part": "not ours",
		"notes.txt":         "not ours",
	}
	entries, err := os.ReadDir(dir)
	must(t, err)
	if len(entries) != len(want) {
		t.Errorf("%d files after Recover, want %d", len(entries), len(want))
	}
	for name, data := range want {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != data {
			t.Errorf("%s = %q, %v; want %q", name, b, err, data)
		}
	}
}

// fakeCA is an Upload function that fails a given number of times per id.
type fakeCA struct {
	t        *testing.T
	dir      string
	mu       sync.Mutex
	failures map[string]int // failures left; -1 fails forever
	attempts map[string]int
	got      map[string][]byte
}

func newFakeCA(t *testing.T, dir string, failures map[string]int) *fakeCA {
	if failures == nil {
		failures = map[string]int{}
	}
	return &fakeCA{t: t, dir: dir, failures: failures, attempts: map[string]int{}, got: map[string][]byte{}}
}

func (c *fakeCA) Upload(ctx context.Context, id string, r io.Reader, size int64) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	onDisk, err := os.ReadFile(filepath.Join(c.dir, id+".cast"))
	if err != nil {
		c.t.Errorf("upload of %s while its file is gone: %v", id, err)
	}
	if int64(len(b)) != size || !bytes.Equal(b, onDisk) {
		c.t.Errorf("upload of %s: read %d bytes, size %d, file %d bytes", id, len(b), size, len(onDisk))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attempts[id]++
	if n := c.failures[id]; n != 0 {
		c.failures[id] = n - 1
		return fmt.Errorf("CA unavailable (attempt %d)", c.attempts[id])
	}
	c.got[id] = b
	return nil
}

func (c *fakeCA) count(id string) (attempts int, stored bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, stored = c.got[id]
	return c.attempts[id], stored
}

// runSpool runs s in the background until the test ends.
func runSpool(t *testing.T, s *Spool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// tWriter sends log output to t.Log.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func TestSpoolRetries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "flaky.cast"), []byte(testHeader+testEvent1), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "down.cast"), []byte(testHeader+testEvent2), 0o600))
	ca := newFakeCA(t, dir, map[string]int{"flaky": 2, "down": -1})
	var seenWhileFailing []bool
	var mu sync.Mutex
	s := &Spool{
		Dir: dir,
		Upload: func(ctx context.Context, id string, r io.Reader, size int64) error {
			if id == "flaky" {
				mu.Lock()
				seenWhileFailing = append(seenWhileFailing, exists(filepath.Join(dir, "flaky.cast")))
				mu.Unlock()
			}
			return ca.Upload(ctx, id, r, size)
		},
		Logger:     testLogger(t),
		MinBackoff: time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
	}
	runSpool(t, s)
	eventually(t, "flaky is uploaded and deleted", func() bool {
		_, stored := ca.count("flaky")
		return stored && !exists(filepath.Join(dir, "flaky.cast")) && !slices.Contains(s.Pending(), "flaky")
	})
	if n, _ := ca.count("flaky"); n != 3 {
		t.Errorf("flaky uploaded in %d attempts, want 3", n)
	}
	mu.Lock()
	if !slices.Equal(seenWhileFailing, []bool{true, true, true}) {
		t.Errorf("file present at each attempt: %v, want it kept until success", seenWhileFailing)
	}
	mu.Unlock()
	eventually(t, "down is retried a few times", func() bool { n, _ := ca.count("down"); return n >= 4 })
	if !exists(filepath.Join(dir, "down.cast")) {
		t.Error("a recording that never uploaded was deleted")
	}
	if got := s.Pending(); !slices.Equal(got, []string{"down"}) {
		t.Errorf("Pending = %q, want [down]", got)
	}
}

// TestSpoolRestart: a proxy that crashed with recordings waiting and one
// being written uploads them all after Recover and Run.
func TestSpoolRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, data string) { must(t, os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600)) }
	write("done-0.cast", testHeader+testEvent1)
	write("done-1.cast", testHeader+testEvent2)
	write("live-0.cast.part", testHeader+testEvent1+`[3.0, "o", "cut`)
	write("junk-0.cast.part", "junk")
	write(".x.cast", testHeader)
	write("readme.txt", "hello")

	// The first run cannot reach the CA.
	down := newFakeCA(t, dir, map[string]int{"done-0": -1, "done-1": -1})
	s1 := &Spool{Dir: dir, Upload: down.Upload, MinBackoff: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s1.Run(ctx) }()
	eventually(t, "both files tried", func() bool {
		a, _ := down.count("done-0")
		b, _ := down.count("done-1")
		return a > 0 && b > 0
	})
	cancel()
	must(t, <-done)

	// Restart.
	ca := newFakeCA(t, dir, nil)
	s2 := &Spool{Dir: dir, Upload: ca.Upload, Logger: testLogger(t)}
	must(t, s2.Recover())
	runSpool(t, s2)
	eventually(t, "everything uploaded", func() bool { return len(s2.Pending()) == 0 && !exists(filepath.Join(dir, "live-0.cast")) })
	for _, id := range []string{"done-0", "done-1", "live-0"} {
		if _, stored := ca.count(id); !stored {
			t.Errorf("%s not uploaded after the restart", id)
		}
	}
	ca.mu.Lock()
	live := string(ca.got["live-0"])
	ca.mu.Unlock()
	if want := testHeader + testEvent1; live != want {
		t.Errorf("recovered recording uploaded as %q, want %q", live, want)
	}
	entries, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{".x.cast", "junk-0.cast.broken", "readme.txt"}; !slices.Equal(names, want) {
		t.Errorf("files left = %q, want %q", names, want)
	}
}

// TestSpoolNotify: a recording closed while Run waits is uploaded at once,
// not at the next rescan.
func TestSpoolNotify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newFakeCA(t, dir, nil)
	s := &Spool{Dir: dir, Upload: ca.Upload, MinBackoff: time.Hour, MaxBackoff: time.Hour}
	s.Notify("ghost") // before Run, for a file that never appears
	s.Notify("../etc")
	if got := s.Pending(); !slices.Equal(got, []string{"ghost"}) {
		t.Errorf("Pending = %q, want [ghost]", got)
	}
	runSpool(t, s)
	eventually(t, "the ghost is forgotten", func() bool { return len(s.Pending()) == 0 })

	r, err := Create(dir, "sess-7-0", Header{User: "bob"}, Options{})
	must(t, err)
	must(t, r.Output([]byte("hi")))
	must(t, r.Close())
	s.Notify("sess-7-0")
	eventually(t, "the notified recording is uploaded", func() bool {
		_, stored := ca.count("sess-7-0")
		return stored && !exists(filepath.Join(dir, "sess-7-0.cast"))
	})
}

func TestSpoolRunRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	upload := func(context.Context, string, io.Reader, int64) error { return nil }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if err := (&Spool{Dir: dir}).Run(ctx); err == nil {
		t.Error("Run without Upload succeeded")
	}
	if err := (&Spool{Dir: filepath.Join(dir, "missing"), Upload: upload}).Run(ctx); err == nil {
		t.Error("Run on a missing directory succeeded")
	}
	s := &Spool{Dir: dir, Upload: upload}
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	eventually(t, "Run started", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.running })
	if err := s.Run(ctx); err == nil {
		t.Error("a second concurrent Run succeeded")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
}

// TestSpoolShutdownDuringUpload: an upload cut short by shutdown is not a
// failure of the file, which stays for the next start.
func TestSpoolShutdownDuringUpload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "slow.cast"), []byte(testHeader), 0o600))
	started := make(chan struct{})
	s := &Spool{Dir: dir, Upload: func(ctx context.Context, _ string, _ io.Reader, _ int64) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	<-started
	cancel()
	must(t, <-done)
	if !exists(filepath.Join(dir, "slow.cast")) {
		t.Error("recording deleted after an interrupted upload")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.queue["slow"]; p == nil || p.failures != 0 {
		t.Errorf("interrupted upload counted as a failure: %+v", p)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		failures int
		lo, hi   time.Duration
	}{
		{"first", 0, 0, 1, 500 * time.Millisecond, time.Second},
		{"second", 0, 0, 2, time.Second, 2 * time.Second},
		{"sixth", 0, 0, 6, 16 * time.Second, 32 * time.Second},
		{"capped", 0, 0, 7, 30 * time.Second, time.Minute},
		{"many", 0, 0, 1000, 30 * time.Second, time.Minute},
		{"custom", 10 * time.Millisecond, 50 * time.Millisecond, 3, 20 * time.Millisecond, 40 * time.Millisecond},
		{"max below min", time.Second, time.Millisecond, 5, 500 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &Spool{MinBackoff: tt.min, MaxBackoff: tt.max}
			for range 200 {
				if d := s.backoff(tt.failures); d < tt.lo || d > tt.hi {
					t.Fatalf("backoff(%d) = %v, want in [%v, %v]", tt.failures, d, tt.lo, tt.hi)
				}
			}
		})
	}
}

// TestRecoverIgnoresDirectories: only regular files are recovered.
func TestRecoverIgnoresDirectories(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, "d.cast.part"), 0o700))
	must(t, (&Spool{Dir: dir}).Recover())
	if !exists(filepath.Join(dir, "d.cast.part")) {
		t.Error("a directory named like a part file was moved")
	}
}
