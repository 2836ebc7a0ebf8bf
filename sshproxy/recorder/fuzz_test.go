package recorder

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// chunks cuts data into pieces whose sizes come from pattern, cyclically:
// each byte b gives a piece of b%32 bytes (0 is an empty write). A pattern
// of zeros still makes progress, one byte per cycle.
func chunks(data, pattern []byte) [][]byte {
	if len(pattern) == 0 {
		pattern = []byte{1}
	}
	var out [][]byte
	for len(data) > 0 {
		progress := false
		for _, b := range pattern {
			n := min(int(b)%32, len(data))
			out = append(out, data[:n])
			data = data[n:]
			progress = progress || n > 0
		}
		if !progress {
			out = append(out, data[:1])
			data = data[1:]
		}
	}
	return out
}

// FuzzUTF8Split: however the stream is cut into Output calls, every event
// is valid UTF-8 and the events add up to the stream with each invalid byte
// replaced by U+FFFD — for valid UTF-8, to the stream itself.
func FuzzUTF8Split(f *testing.F) {
	seeds := []struct{ data, pattern string }{
		{"a€b", "\x02"},
		{"a€b", "\x01"},
		{"a😀b", "\x02\x01"},
		{"a😀b", "\x03"},
		{"😀😀", "\x01\x02\x03"},
		{"é€😀", "\x01"},
		{"\xe2\x82", "\x01"},
		{"\xf0\x9f\x98", "\x00\x01"},
		{"\xff\xfe\xe2\x28\xa1", "\x02"},
		{"\xed\xa0\x80\xc0\xaf", "\x01"},
		{"plain ascii text\r\n", "\x05"},
		{"x\uFFFDy", "\x02"},
	}
	for _, tt := range utf8Seeds {
		seeds = append(seeds, struct{ data, pattern string }{tt, "\x01"})
	}
	for _, s := range seeds {
		f.Add([]byte(s.data), []byte(s.pattern))
	}
	f.Fuzz(func(t *testing.T, data, pattern []byte) {
		// Splitting is local: a short stream shows every case, and keeps
		// the minimizer (quadratic in the input) from stalling the run.
		data, pattern = data[:min(len(data), 128)], pattern[:min(len(pattern), 16)]
		var b bytes.Buffer
		r := newRecorder(&b, Header{Timestamp: start}, Options{})
		for _, p := range chunks(data, pattern) {
			if err := r.Output(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		var out strings.Builder
		for _, line := range lines[1:] {
			var ev []any
			if err := json.Unmarshal([]byte(line), &ev); err != nil || len(ev) != 3 || ev[1] != "o" {
				t.Fatalf("event %q: %v", line, err)
			}
			text, _ := ev[2].(string)
			if text == "" || !utf8.ValidString(line) {
				t.Fatalf("event %q: empty, or not valid UTF-8", line)
			}
			out.WriteString(text)
		}
		want := string([]rune(string(data)))
		if utf8.Valid(data) && want != string(data) {
			t.Fatal("test bug: []rune conversion changed valid UTF-8")
		}
		if out.String() != want {
			t.Fatalf("events add up to %q, want %q", out.String(), want)
		}
	})
}

// utf8Seeds are extra seeds for FuzzUTF8Split.
var utf8Seeds = []string{"a\x80b", "\xf4\x90\x80\x80", "ok\xe2\x82", "\xe2\x82\xac\xe2\x82\xac"}

// FuzzRecover: the recovery parser never panics, and what it keeps is a
// header line and event lines that players accept, a prefix of the input
// that it keeps whole when parsed again.
func FuzzRecover(f *testing.F) {
	full := recordBuffer(f, Options{RecordInput: true}, func(r *Recorder) {
		must(f, r.Output([]byte("hello \xe2\x82")))
		must(f, r.Input([]byte("ls\r")))
		must(f, r.Output([]byte("\xac world\r\n\x1b[0m")))
		must(f, r.Resize(120, 40))
	})
	f.Add(full)
	for _, cut := range []int{1, 10, len(full) / 2, len(full) - 1} {
		f.Add(full[:cut])
	}
	f.Add([]byte(testHeader + testEvent1 + `[2.0, "o", "hal`))
	f.Add([]byte(testHeader + "\x00\x00\n" + testEvent2))
	f.Add([]byte(testHeader + "[1.0,\r\"o\", \"x\"]\n"))
	f.Add([]byte(`{"version":2,"width":80,"height":24,"VERSION":1}` + "\n"))
	f.Add([]byte("[1, \"o\", \"x\"]\n"))
	f.Add([]byte(""))
	f.Add([]byte("\xff\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, ok, err := validPrefix(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("validPrefix of an in-memory file: %v", err)
		}
		if !ok {
			if n != 0 {
				t.Fatalf("no valid header but kept %d bytes", n)
			}
			return
		}
		if n <= 0 || n > int64(len(data)) {
			t.Fatalf("kept %d of %d bytes", n, len(data))
		}
		kept := data[:n]
		if kept[len(kept)-1] != '\n' || !utf8.Valid(kept) {
			t.Fatalf("kept prefix %q does not end a line or is not UTF-8", kept)
		}
		lines := strings.Split(strings.TrimSuffix(string(kept), "\n"), "\n")
		var header map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &header); err != nil || header["version"] != 2.0 {
			t.Fatalf("kept header %q: %v", lines[0], err)
		}
		for _, line := range lines[1:] {
			var ev []any
			if err := json.Unmarshal([]byte(line), &ev); err != nil || len(ev) != 3 || strings.ContainsRune(line, '\r') {
				t.Fatalf("kept event %q: %v", line, err)
			}
			if _, ok := ev[0].(float64); !ok {
				t.Fatalf("kept event %q: time is not a number", line)
			}
			if _, ok := ev[1].(string); !ok {
				t.Fatalf("kept event %q: kind is not a string", line)
			}
			if _, ok := ev[2].(string); !ok {
				t.Fatalf("kept event %q: text is not a string", line)
			}
		}
		if n2, ok2, _ := validPrefix(bytes.NewReader(kept)); n2 != n || !ok2 {
			t.Fatalf("the kept prefix parses again to %d bytes (ok %v), want %d", n2, ok2, n)
		}
	})
}
