package recorder

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"
)

// File name suffixes in a spool directory.
const (
	partSuffix   = ".cast.part"   // a recording being written
	castSuffix   = ".cast"        // a finished recording, waiting for upload
	brokenSuffix = ".cast.broken" // a part file without a valid header, kept for an operator
)

const (
	// bufferSize is the size of a recording's write buffer.
	bufferSize = 32 << 10
	// maxChunk is the most bytes of one Output or Input call that go into
	// one event; larger writes become several events with the same time.
	// It bounds the scratch buffers a Recorder keeps and the length of a
	// line (at most 6 bytes of JSON per input byte: \u0001) well below
	// maxLine.
	maxChunk = 8 << 10
	// defaultFlushInterval is Options.FlushInterval when it is zero.
	defaultFlushInterval = time.Second
)

// ErrClosed is returned by the methods of a Recorder after Close.
var ErrClosed = errors.New("recorder: recording closed")

// ErrInvalidID is returned (wrapped) for a recording id that could not be
// used as a file name in the spool directory.
var ErrInvalidID = errors.New("recorder: invalid recording id")

// ValidID reports whether id can name a recording: 1 to 128 characters
// from [A-Za-z0-9_-], starting with a letter or digit: what the CA
// accepts for an upload (ca.recordingIDRE), so the spool never holds a
// recording the CA would refuse forever. Ids become file names in the
// spool directory, so nothing can reach another directory or a hidden
// file, or look like the spool's own ".cast.part" suffixes.
func ValidID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("%w %q: must be 1 to 128 characters", ErrInvalidID, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("%w %q: must start with a letter or digit", ErrInvalidID, id)
		}
		if !alnum && c != '_' && c != '-' {
			return fmt.Errorf("%w %q: only letters, digits, '_' and '-' are allowed", ErrInvalidID, id)
		}
	}
	return nil
}

// Header is the identity written into the asciicast header. Keys other than
// version, width, height, timestamp and env are ignored by players.
type Header struct {
	// Width and Height are the terminal size from the pty-req; zero (or
	// negative) means 80 columns and 24 rows.
	Width, Height int
	// Timestamp is when the session started; zero means the time of
	// Create.
	Timestamp time.Time
	// Term is TERM from the pty-req, written as "env":{"TERM":...};
	// the env key is left out when Term is empty.
	Term string
	// User, Login, Node, SessionID, ClientAddr and Proxy are written as the
	// keys "user", "login", "node", "session_id", "client_addr" and
	// "proxy"; an empty value is left out.
	User, Login, Node, SessionID, ClientAddr, Proxy string
	// Channel is the ordinal of the channel within the session, key
	// "channel" (always written).
	Channel int
}

// Options tune a Recorder. The zero value records output and resizes, not
// input, with the real clock and a flush every second.
type Options struct {
	// RecordInput makes Input write "i" events; without it, Input
	// records nothing. Input includes whatever the user types, passwords at
	// prompts with echo off among it.
	RecordInput bool
	// Clock gives the time of each event; nil means time.Now.
	Clock func() time.Time
	// FlushInterval bounds how long an event stays in the write buffer,
	// so that a proxy killed with SIGKILL loses at most that much of the
	// recording. Zero or negative means one second. Flushing does not
	// fsync; Close does.
	FlushInterval time.Duration
}

// A Recorder writes one PTY channel as an asciicast v2 file. Its methods
// are safe for concurrent use.
//
// The first write error (a full disk, ENOSPC, or any other) is returned
// and sticks: the failing call and every later Output, Input, Resize and
// Close return it, and nothing more is recorded. It is the caller's policy
// what to do then: a proxy where recording is mandatory must close the
// channel (refuse to relay what it cannot record); one that records on a
// best-effort basis logs the error once and keeps relaying. Either way it
// should call Close, which keeps what was written up to the last whole
// event and still leaves a valid "<id>.cast" for the spool to upload.
type Recorder struct {
	mu       sync.Mutex
	f        *os.File // nil when writing to a plain io.Writer (tests)
	dir, id  string
	w        *bufio.Writer
	clock    func() time.Time
	start    time.Time
	last     time.Duration // time of the last event; events never go back
	input    bool
	interval time.Duration
	timer    *time.Timer
	armed    bool // timer is set to flush the buffer
	out, in  carry
	text     []byte // scratch: the text of one event
	enc      eventEncoder
	bytes    int64
	err      error // sticky write error
	closed   bool
	closeErr error
}

// Create starts the recording id in dir, which must exist: it creates
// "<id>.cast.part" with mode 0600 and writes the header. id must satisfy
// ValidID, and no recording of that id may already be in dir. Close renames
// the file to "<id>.cast".
func Create(dir, id string, h Header, opt Options) (*Recorder, error) {
	return create(dir, id, h, opt, nil)
}

// create is Create with a hook that wraps the file (tests inject write
// failures through it).
func create(dir, id string, h Header, opt Options, wrap func(io.Writer) io.Writer) (*Recorder, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	for _, suffix := range []string{castSuffix, brokenSuffix} {
		if _, err := os.Lstat(filepath.Join(dir, id+suffix)); err == nil {
			return nil, fmt.Errorf("recorder: %s: %w", filepath.Join(dir, id+suffix), fs.ErrExist)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, id+partSuffix), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	var w io.Writer = f
	if wrap != nil {
		w = wrap(f)
	}
	r := newRecorder(w, h, opt)
	r.f, r.dir, r.id = f, dir, id
	if err := r.w.Flush(); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("recorder: %s: writing header: %w", f.Name(), err)
	}
	return r, nil
}

// newRecorder returns a Recorder that writes the header and events to w,
// for Create and for tests that need no file.
func newRecorder(w io.Writer, h Header, opt Options) *Recorder {
	r := &Recorder{
		w:        bufio.NewWriterSize(w, bufferSize),
		clock:    opt.Clock,
		input:    opt.RecordInput,
		interval: opt.FlushInterval,
		id:       "-",
	}
	if r.clock == nil {
		r.clock = time.Now
	}
	if r.interval <= 0 {
		r.interval = defaultFlushInterval
	}
	r.start = r.clock()
	if h.Timestamp.IsZero() {
		h.Timestamp = r.start
	}
	// An error writing the header sticks in w; Create's Flush returns it.
	r.w.Write(marshalHeader(h))
	return r
}

// Output records p, data the node sent to the user's terminal, as an "o"
// event. A UTF-8 character split at the end of p is held back until the
// next call completes it.
func (r *Recorder) Output(p []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	r.record('o', &r.out, p)
	if r.err == nil {
		r.bytes += int64(len(p))
	}
	return r.err
}

// Input records p, data the user typed, as an "i" event when
// Options.RecordInput is set, and does nothing otherwise.
func (r *Recorder) Input(p []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	if r.input {
		r.record('i', &r.in, p)
	}
	return r.err
}

// Resize records a window-change to cols columns and rows rows as an "r"
// event "COLSxROWS". A size with a zero or negative dimension, which no
// player can show, is not recorded.
func (r *Recorder) Resize(cols, rows int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.usable(); err != nil {
		return err
	}
	if cols > 0 && rows > 0 {
		r.text = fmt.Appendf(r.text[:0], "%dx%d", cols, rows)
		r.event('r', r.text)
	}
	return r.err
}

// Bytes returns how many bytes have been recorded by Output so far.
func (r *Recorder) Bytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes
}

// Close ends the recording: it writes the carried bytes of an incomplete
// trailing character (as U+FFFD), flushes, syncs and closes the file,
// renames "<id>.cast.part" to "<id>.cast" and syncs the directory. After a
// write error it first cuts the file after its last whole event, as
// Spool.Recover would, so the spool still gets a valid recording; Close
// then returns the write error. Calling Close again returns the first
// result.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.closeErr
	}
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
	}
	if r.err == nil {
		r.flushCarry('o', &r.out)
		r.flushCarry('i', &r.in)
	}
	if r.err == nil {
		r.fail(r.w.Flush())
	}
	if r.f != nil {
		r.closeErr = r.finish()
	} else {
		r.closeErr = r.err
	}
	return r.closeErr
}

// finish syncs and closes the file and moves it into place.
func (r *Recorder) finish() error {
	if r.err == nil {
		r.fail(r.f.Sync())
	}
	if err := r.f.Close(); r.err == nil {
		r.fail(err)
	}
	if r.err != nil {
		// The file may end in part of an event: keep what is whole.
		if _, err := recoverPart(r.dir, r.id); err != nil {
			return errors.Join(r.err, err)
		}
		return r.err
	}
	part := filepath.Join(r.dir, r.id+partSuffix)
	if err := os.Rename(part, filepath.Join(r.dir, r.id+castSuffix)); err != nil {
		return fmt.Errorf("recorder: %w", err)
	}
	if err := syncDir(r.dir); err != nil {
		return fmt.Errorf("recorder: %s: syncing directory: %w", r.dir, err)
	}
	return nil
}

// usable returns the error that stops a write before it starts: the
// sticky error, or ErrClosed.
func (r *Recorder) usable() error {
	if r.err == nil && r.closed {
		return ErrClosed
	}
	return r.err
}

// record writes p, preceded by what c carried, as events of the given kind,
// at most maxChunk bytes of p per event.
func (r *Recorder) record(kind byte, c *carry, p []byte) {
	for len(p) > 0 && r.err == nil {
		n := min(len(p), maxChunk)
		r.text = c.decode(r.text[:0], p[:n])
		if len(r.text) > 0 {
			r.event(kind, r.text)
		}
		p = p[n:]
	}
}

// flushCarry writes the bytes c still holds, an incomplete character at the
// end of the stream, as one U+FFFD each.
func (r *Recorder) flushCarry(kind byte, c *carry) {
	r.text = c.flush(r.text[:0])
	if len(r.text) > 0 {
		r.event(kind, r.text)
	}
}

// event writes one event line with the current time and arms the flush
// timer.
func (r *Recorder) event(kind byte, text []byte) {
	d := max(r.clock().Sub(r.start), r.last)
	r.last = d
	line, err := r.enc.encode(d, kind, text)
	if err != nil {
		r.fail(err)
		return
	}
	if _, err := r.w.Write(line); err != nil {
		r.fail(err)
		return
	}
	if !r.armed && r.w.Buffered() > 0 {
		r.armed = true
		if r.timer == nil {
			r.timer = time.AfterFunc(r.interval, r.timedFlush)
		} else {
			r.timer.Reset(r.interval)
		}
	}
}

// timedFlush writes out the buffer, FlushInterval after an event.
func (r *Recorder) timedFlush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.armed = false
	if r.closed || r.err != nil {
		return
	}
	r.fail(r.w.Flush())
}

// fail makes err, if not nil, the recording's sticky error.
func (r *Recorder) fail(err error) {
	if err != nil && r.err == nil {
		r.err = fmt.Errorf("recorder: %s: %w", r.id, err)
	}
}

// carry holds the bytes of an incomplete UTF-8 character at the end of the
// last write of one direction, until the next write completes it.
type carry struct {
	buf [utf8.UTFMax - 1]byte
	n   int
}

// decode appends to dst the carried bytes followed by p as valid UTF-8:
// whole characters only, each byte that is not part of a valid encoding
// replaced by U+FFFD. It keeps an incomplete character at the end (at most
// 3 bytes) for the next call. The text of all calls together is the same
// however the stream was split, and equals string([]rune(string(stream)))
// once flush has run.
func (c *carry) decode(dst, p []byte) []byte {
	if c.n > 0 {
		// Complete the carried character from the first bytes of p; a
		// character is at most 4 bytes, so b holds all that is needed.
		var b [2*utf8.UTFMax - 1]byte
		k := copy(b[:], c.buf[:c.n])
		m := copy(b[k:], p)
		carried := c.n
		c.n = 0
		var i int
		dst, i = appendValid(dst, b[:k+m], carried)
		if i < carried {
			// Still incomplete: all of p was used.
			c.n = copy(c.buf[:], b[i:k+m])
			return dst
		}
		p = p[i-carried:]
	}
	dst, i := appendValid(dst, p, len(p))
	c.n = copy(c.buf[:], p[i:])
	return dst
}

// flush appends U+FFFD for each carried byte and empties c.
func (c *carry) flush(dst []byte) []byte {
	for range c.n {
		dst = utf8.AppendRune(dst, utf8.RuneError)
	}
	c.n = 0
	return dst
}

// appendValid appends the characters of p that start before offset limit to
// dst, invalid bytes as U+FFFD, and returns the offset after the last one.
// It stops early at an incomplete character at the end of p.
func appendValid(dst, p []byte, limit int) ([]byte, int) {
	i, start := 0, 0
	for i < limit {
		if p[i] < utf8.RuneSelf {
			i++
			continue
		}
		if !utf8.FullRune(p[i:]) {
			break
		}
		r, size := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, p[start:i]...)
			dst = utf8.AppendRune(dst, utf8.RuneError)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(dst, p[start:i]...), i
}

// syncDir makes a create, rename or remove in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
