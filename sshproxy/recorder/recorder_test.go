package recorder

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run go test -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

var start = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

// fakeClock is a clock the test advances by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: start} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// event is one parsed event line.
type event struct {
	Time float64
	Kind string
	Text string
}

// parseCast parses a recording strictly: a header object, then events of
// exactly three elements; every line valid UTF-8 ending in "\n".
func parseCast(t *testing.T, data []byte) (map[string]any, []event) {
	t.Helper()
	if !bytes.HasSuffix(data, []byte("\n")) {
		t.Fatalf("recording does not end in a newline:\n%q", data)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	var header map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &header); err != nil {
		t.Fatalf("header %q: %v", lines[0], err)
	}
	var events []event
	for _, line := range lines[1:] {
		if !utf8.ValidString(line) {
			t.Fatalf("line is not valid UTF-8: %q", line)
		}
		var raw []any
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			t.Fatalf("event %q: %v", line, err)
		}
		if len(raw) != 3 {
			t.Fatalf("event %q: %d elements, want 3", line, len(raw))
		}
		ts, ok1 := raw[0].(float64)
		kind, ok2 := raw[1].(string)
		text, ok3 := raw[2].(string)
		if !ok1 || !ok2 || !ok3 {
			t.Fatalf("event %q: want [number, string, string]", line)
		}
		events = append(events, event{ts, kind, text})
	}
	return header, events
}

// texts returns the concatenated text of the events of one kind.
func texts(events []event, kind string) string {
	var b strings.Builder
	for _, e := range events {
		if e.Kind == kind {
			b.WriteString(e.Text)
		}
	}
	return b.String()
}

// recordFile runs fn on a new recording in a temporary directory, closes
// it and returns the finished file.
func recordFile(t *testing.T, h Header, opt Options, fn func(r *Recorder)) []byte {
	t.Helper()
	dir := t.TempDir()
	r, err := Create(dir, "rec-1", h, opt)
	if err != nil {
		t.Fatal(err)
	}
	fn(r)
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "rec-1.cast"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// recordBuffer runs fn on a Recorder writing to memory and returns what it
// wrote.
func recordBuffer(t testing.TB, opt Options, fn func(r *Recorder)) []byte {
	t.Helper()
	var b bytes.Buffer
	r := newRecorder(&b, Header{Timestamp: start}, opt)
	fn(r)
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return b.Bytes()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// checkNoEmpty fails when v holds a null, an empty string or an empty
// object anywhere.
func checkNoEmpty(t *testing.T, path string, v any) {
	t.Helper()
	switch v := v.(type) {
	case nil:
		t.Errorf("%s is null", path)
	case string:
		if v == "" {
			t.Errorf("%s is an empty string", path)
		}
	case map[string]any:
		if len(v) == 0 {
			t.Errorf("%s is an empty object", path)
		}
		for k, x := range v {
			checkNoEmpty(t, path+"."+k, x)
		}
	}
}

func TestHeaderGolden(t *testing.T) {
	tests := []struct {
		name string
		h    Header
		keys []string
	}{
		{
			name: "full",
			h: Header{
				Width: 132, Height: 43, Timestamp: start, Term: "xterm-256color",
				User: "alice", Login: "root", Node: "db-1", SessionID: "4f6c1a2e-9b1d-4c55-8a3e-2f0f1e7d9c10",
				ClientAddr: "192.0.2.10:52144", Proxy: "proxy-a", Channel: 2,
			},
			keys: []string{"version", "width", "height", "timestamp", "env", "user", "login", "node", "session_id", "client_addr", "proxy", "channel"},
		},
		{
			name: "minimal",
			h:    Header{Timestamp: start},
			keys: []string{"version", "width", "height", "timestamp", "channel"},
		},
		{
			name: "escaped",
			h:    Header{Width: 80, Height: 24, Timestamp: start, Term: "x<&>\"", User: "a\"b\\c\n", Login: "\xff", Node: "<node>"},
			keys: []string{"version", "width", "height", "timestamp", "env", "user", "login", "node", "channel"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := recordFile(t, tt.h, Options{Clock: newClock().Now}, func(*Recorder) {})
			golden(t, "header_"+tt.name+".golden", string(data))
			header, events := parseCast(t, data)
			if len(events) != 0 {
				t.Errorf("events = %v, want none", events)
			}
			if len(header) != len(tt.keys) {
				t.Errorf("header has %d keys, want %d: %v", len(header), len(tt.keys), header)
			}
			for _, k := range tt.keys {
				if _, ok := header[k]; !ok {
					t.Errorf("header lacks %q", k)
				}
			}
			checkNoEmpty(t, "header", header)
			if header["version"] != 2.0 || header["timestamp"] != float64(start.Unix()) {
				t.Errorf("version, timestamp = %v, %v", header["version"], header["timestamp"])
			}
		})
	}
}

func TestHeaderDefaults(t *testing.T) {
	t.Parallel()
	clock := newClock()
	var b bytes.Buffer
	r := newRecorder(&b, Header{Width: -1}, Options{Clock: clock.Now})
	must(t, r.Close())
	header, _ := parseCast(t, b.Bytes())
	if header["width"] != 80.0 || header["height"] != 24.0 {
		t.Errorf("size = %vx%v, want 80x24", header["width"], header["height"])
	}
	if header["timestamp"] != float64(start.Unix()) {
		t.Errorf("timestamp = %v, want the clock's %d", header["timestamp"], start.Unix())
	}
}

func TestEvents(t *testing.T) {
	tests := []struct {
		name   string
		input  bool
		golden string
	}{
		{"output_only", false, "events_output_only.golden"},
		{"with_input", true, "events_with_input.golden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			data := recordFile(t, Header{Width: 80, Height: 24, Timestamp: start, User: "alice"},
				Options{Clock: clock.Now, RecordInput: tt.input}, func(r *Recorder) {
					must(t, r.Output([]byte("$ ")))
					clock.Advance(1234567 * time.Microsecond)
					must(t, r.Input([]byte("ls\r")))
					clock.Advance(time.Millisecond)
					must(t, r.Output([]byte("ls\r\nfile\t</script>\x1b[0m\u2028\r\n")))
					clock.Advance(2 * time.Second)
					must(t, r.Resize(120, 40))
					must(t, r.Resize(0, 40))    // not recorded
					clock.Advance(-time.Second) // the clock stepped back
					must(t, r.Output([]byte("\"quoted\\\"")))
					clock.Advance(61 * time.Minute)
					must(t, r.Input(nil))
					must(t, r.Output(nil))
					must(t, r.Input([]byte("exit\r")))
				})
			golden(t, tt.golden, string(data))
			_, events := parseCast(t, data)
			if got := texts(events, "o"); got != "$ ls\r\nfile\t</script>\x1b[0m\u2028\r\n\"quoted\\\"" {
				t.Errorf("output = %q", got)
			}
			wantInput := ""
			if tt.input {
				wantInput = "ls\rexit\r"
			}
			if got := texts(events, "i"); got != wantInput {
				t.Errorf("input = %q, want %q", got, wantInput)
			}
			if got := texts(events, "r"); got != "120x40" {
				t.Errorf("resize = %q, want one 120x40", got)
			}
			for i := 1; i < len(events); i++ {
				if events[i].Time < events[i-1].Time {
					t.Errorf("event %d goes back in time: %v after %v", i, events[i].Time, events[i-1].Time)
				}
			}
		})
	}
}

func TestLargeOutputSplit(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("é"), maxChunk) // 2*maxChunk bytes
	data := recordBuffer(t, Options{}, func(r *Recorder) { must(t, r.Output(big)) })
	_, events := parseCast(t, data)
	if len(events) < 2 {
		t.Errorf("%d events for %d bytes, want the write split", len(events), len(big))
	}
	if texts(events, "o") != string(big) {
		t.Error("split output does not add up to the input")
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) > maxLine {
			t.Errorf("line of %d bytes, more than maxLine", len(line))
		}
	}
}

// splits calls fn with every way of cutting s into consecutive non-empty
// pieces.
func splits(s []byte, fn func(pieces [][]byte)) {
	n := len(s) - 1
	for mask := 0; mask < 1<<n; mask++ {
		var pieces [][]byte
		last := 0
		for i := range n {
			if mask&(1<<i) != 0 {
				pieces = append(pieces, s[last:i+1])
				last = i + 1
			}
		}
		fn(append(pieces, s[last:]))
	}
}

func TestUTF8Split(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"2-byte", "aé"},
		{"3-byte", "a€b"},
		{"4-byte", "a😀b"},
		{"adjacent", "€😀é"},
		{"only 4-byte", "😀"},
		{"U+FFFD itself", "x\uFFFDy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			splits([]byte(tt.in), func(pieces [][]byte) {
				data := recordBuffer(t, Options{RecordInput: true}, func(r *Recorder) {
					for _, p := range pieces {
						must(t, r.Output(p))
						must(t, r.Input(p))
					}
				})
				_, events := parseCast(t, data)
				for _, e := range events {
					if !utf8.ValidString(e.Text) || strings.ContainsRune(e.Text, utf8.RuneError) && !strings.Contains(tt.in, "\uFFFD") {
						t.Fatalf("pieces %q: event text %q is not whole characters", pieces, e.Text)
					}
				}
				for _, kind := range []string{"o", "i"} {
					if got := texts(events, kind); got != tt.in {
						t.Fatalf("pieces %q: %s text %q, want %q", pieces, kind, got, tt.in)
					}
				}
			})
		})
	}
}

func TestUTF8Invalid(t *testing.T) {
	const r = "\uFFFD"
	tests := []struct {
		name   string
		pieces []string
		want   string
	}{
		{"lone continuation", []string{"a\x80b"}, "a" + r + "b"},
		{"0xff", []string{"\xff"}, r},
		{"broken 3-byte", []string{"\xe2\x28\xa1"}, r + "(" + r},
		{"broken across calls", []string{"\xe2", "x"}, r + "x"},
		{"broken after two calls", []string{"\xf0\x9f", "\x98", "!"}, r + r + r + "!"},
		{"surrogate", []string{"\xed\xa0\x80"}, r + r + r},
		{"overlong", []string{"\xc0\xaf"}, r + r},
		{"above U+10FFFF", []string{"\xf4\x90\x80\x80"}, r + r + r + r},
		{"incomplete at close", []string{"ok\xe2\x82"}, "ok" + r + r},
		{"incomplete 4-byte at close", []string{"\xf0", "\x9f\x98"}, r + r + r},
		{"valid after carry", []string{"\xe2\x82", "\xac\xe2", "\x82\xac"}, "€€"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := recordBuffer(t, Options{}, func(r *Recorder) {
				for _, p := range tt.pieces {
					must(t, r.Output([]byte(p)))
				}
			})
			_, events := parseCast(t, data)
			if got := texts(events, "o"); got != tt.want {
				t.Errorf("output = %q, want %q", got, tt.want)
			}
			if want := string([]rune(strings.Join(tt.pieces, ""))); tt.want != want {
				t.Errorf("test case: want %q, but []rune conversion gives %q", tt.want, want)
			}
		})
	}
}

// TestSeparateCarry: a character split in the output is not completed by
// input bytes, nor the other way round.
func TestSeparateCarry(t *testing.T) {
	t.Parallel()
	data := recordBuffer(t, Options{RecordInput: true}, func(r *Recorder) {
		must(t, r.Output([]byte("\xe2\x82")))
		must(t, r.Input([]byte("\xf0\x9f")))
		must(t, r.Input([]byte("\x98\x80")))
		must(t, r.Output([]byte("\xac")))
	})
	_, events := parseCast(t, data)
	if got := texts(events, "o"); got != "€" {
		t.Errorf("output = %q, want €", got)
	}
	if got := texts(events, "i"); got != "😀" {
		t.Errorf("input = %q, want 😀", got)
	}
}

func TestValidID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"4f6c1a2e-9b1d-4c55-8a3e-2f0f1e7d9c10-0", true},
		{"A1b_c-d", true},
		{"x-", true},
		{"A1.b_c-d", false}, // the CA refuses '.' in recording ids
		{"x.", false},
		{strings.Repeat("a", 128), true},
		{"", false},
		{"../x", false},
		{"..", false},
		{"a..b", false},
		{"a/b", false},
		{"a\\b", false},
		{".hidden", false},
		{"-x", false},
		{"_x", false},
		{"a b", false},
		{"a\x00", false},
		{"a\n", false},
		{"é", false},
		{strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20q", tt.id), func(t *testing.T) {
			t.Parallel()
			err := ValidID(tt.id)
			if tt.ok && err != nil {
				t.Errorf("ValidID(%q) = %v, want nil", tt.id, err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidID) {
				t.Errorf("ValidID(%q) = %v, want ErrInvalidID", tt.id, err)
			}
		})
	}
}

func TestCreateRefusesInvalidID(t *testing.T) {
	for _, id := range []string{"../x", "", "a/b", ".hidden"} {
		t.Run(fmt.Sprintf("%q", id), func(t *testing.T) {
			t.Parallel()
			parent := t.TempDir()
			dir := filepath.Join(parent, "spool")
			must(t, os.Mkdir(dir, 0o700))
			r, err := Create(dir, id, Header{}, Options{})
			if !errors.Is(err, ErrInvalidID) {
				t.Fatalf("Create(%q) = %v, want ErrInvalidID", id, err)
			}
			if r != nil {
				t.Error("Create returned a recorder with its error")
			}
			for _, d := range []string{parent, dir} {
				entries, _ := os.ReadDir(d)
				if d == parent && len(entries) == 1 || d == dir && len(entries) == 0 {
					continue
				}
				t.Errorf("%s has %d entries after a refused Create", d, len(entries))
			}
		})
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	for _, suffix := range []string{partSuffix, castSuffix, brokenSuffix} {
		t.Run(suffix, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "rec"+suffix)
			must(t, os.WriteFile(path, []byte("keep"), 0o600))
			if _, err := Create(dir, "rec", Header{}, Options{}); !errors.Is(err, fs.ErrExist) {
				t.Errorf("Create with an existing %s = %v, want ErrExist", suffix, err)
			}
			if b, _ := os.ReadFile(path); string(b) != "keep" {
				t.Errorf("existing file changed to %q", b)
			}
		})
	}
}

func TestFileLifecycle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := Create(dir, "rec", Header{}, Options{})
	must(t, err)
	part, final := filepath.Join(dir, "rec.cast.part"), filepath.Join(dir, "rec.cast")
	fi, err := os.Stat(part)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("part file mode %v, want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(part); !validHeaderLine(b) {
		t.Errorf("part file does not start with its header right after Create: %q", b)
	}
	if _, err := os.Stat(final); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("finished file exists while recording: %v", err)
	}
	must(t, r.Output([]byte("hi")))
	must(t, r.Close())
	if _, err := os.Stat(part); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("part file left after Close: %v", err)
	}
	fi, err = os.Stat(final)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("finished file mode %v, want 0600", fi.Mode().Perm())
	}
	must(t, r.Close()) // again
	if err := r.Output([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Output after Close = %v, want ErrClosed", err)
	}
	if err := r.Resize(1, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Resize after Close = %v, want ErrClosed", err)
	}
}

// TestFlushInterval: events reach the file without Close, so a killed
// proxy loses at most the last interval.
func TestFlushInterval(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := Create(dir, "rec", Header{}, Options{FlushInterval: 10 * time.Millisecond})
	must(t, err)
	defer r.Close()
	must(t, r.Output([]byte("first")))
	waitForFile(t, filepath.Join(dir, "rec.cast.part"), "first")
	must(t, r.Output([]byte("second")))
	waitForFile(t, filepath.Join(dir, "rec.cast.part"), "second")
}

func waitForFile(t *testing.T, path, text string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		must(t, err)
		if bytes.Contains(b, []byte(text)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not flushed to %s:\n%s", text, path, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBytes(t *testing.T) {
	t.Parallel()
	recordBuffer(t, Options{RecordInput: true}, func(r *Recorder) {
		must(t, r.Output([]byte("héllo")))
		must(t, r.Output([]byte("\xe2\x82")))
		must(t, r.Input([]byte("not counted")))
		must(t, r.Resize(10, 10))
		if got := r.Bytes(); got != 8 {
			t.Errorf("Bytes = %d, want 8", got)
		}
	})
}

// failingWriter passes the first n bytes through and then fails like a
// full disk.
type failingWriter struct {
	w io.Writer
	n int
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) <= f.n {
		f.n -= len(p)
		return f.w.Write(p)
	}
	k, _ := f.w.Write(p[:f.n])
	f.n = 0
	return k, syscall.ENOSPC
}

// TestStickyError: after a write error every call returns it, and Close
// still leaves a valid recording of what was written whole.
func TestStickyError(t *testing.T) {
	tests := []struct {
		name string
		// fail makes the recording fail: the writer runs out of space
		// after limit bytes, or the file is closed under it.
		limit   int
		closeIt bool
		want    error
	}{
		{name: "disk full", limit: 300, want: syscall.ENOSPC},
		{name: "file closed", limit: 1 << 30, closeIt: true, want: os.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			r, err := create(dir, "rec", Header{}, Options{FlushInterval: time.Hour}, func(w io.Writer) io.Writer {
				return &failingWriter{w: w, n: tt.limit}
			})
			must(t, err)
			must(t, r.Output([]byte("kept\r\n")))
			must(t, r.w.Flush()) // "kept" is on disk.
			if tt.closeIt {
				r.f.Close()
			}
			chunk := bytes.Repeat([]byte("x"), 1000)
			var first error
			for i := 0; i < 100 && first == nil; i++ { // until the buffer spills
				first = r.Output(chunk)
			}
			if !errors.Is(first, tt.want) {
				t.Fatalf("Output error = %v, want %v", first, tt.want)
			}
			bytesAtError := r.Bytes()
			for name, call := range map[string]func() error{
				"Output": func() error { return r.Output([]byte("y")) },
				"Input":  func() error { return r.Input([]byte("y")) },
				"Resize": func() error { return r.Resize(1, 2) },
				"Close":  r.Close,
				"Close2": r.Close,
			} {
				if err := call(); !errors.Is(err, tt.want) {
					t.Errorf("%s after the error = %v, want %v", name, err, tt.want)
				}
			}
			if r.Bytes() != bytesAtError {
				t.Errorf("Bytes grew after the error: %d, was %d", r.Bytes(), bytesAtError)
			}
			data, err := os.ReadFile(filepath.Join(dir, "rec.cast"))
			must(t, err)
			_, events := parseCast(t, data)
			if !strings.HasPrefix(texts(events, "o"), "kept\r\n") {
				t.Errorf("recording after the error lost what was written: %q", data)
			}
			if _, err := os.Stat(filepath.Join(dir, "rec.cast.part")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("part file left: %v", err)
			}
		})
	}
}

// TestConcurrent writes from several goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	t.Parallel()
	data := recordFile(t, Header{}, Options{RecordInput: true, FlushInterval: time.Millisecond}, func(r *Recorder) {
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				for i := range 200 {
					switch g {
					case 0:
						must(t, r.Output([]byte("€")[:1+i%3]))
					case 1:
						must(t, r.Input([]byte("ab")))
					case 2:
						must(t, r.Resize(80+i, 24))
					default:
						_ = r.Bytes()
					}
				}
			})
		}
		wg.Wait()
	})
	_, events := parseCast(t, data)
	if n := len(texts(events, "i")); n != 400 {
		t.Errorf("input length %d, want 400", n)
	}
}
