package recorder

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"time"
	"unicode/utf8"
)

// maxLine is the longest line the recovery parser accepts; the writer's
// lines are at most about 6*maxChunk bytes (every byte a control character
// escaped as \u00XX).
const maxLine = 1 << 20

// headerJSON is the asciicast v2 header line. Optional keys are left out
// rather than written as null or "".
type headerJSON struct {
	Version    int      `json:"version"`
	Width      int      `json:"width"`
	Height     int      `json:"height"`
	Timestamp  int64    `json:"timestamp"`
	Env        *termEnv `json:"env,omitempty"`
	User       string   `json:"user,omitempty"`
	Login      string   `json:"login,omitempty"`
	Node       string   `json:"node,omitempty"`
	SessionID  string   `json:"session_id,omitempty"`
	ClientAddr string   `json:"client_addr,omitempty"`
	Proxy      string   `json:"proxy,omitempty"`
	Channel    int      `json:"channel"`
}

// termEnv is the header's "env" object; SHELL, which the proxy does not
// know, is left out.
type termEnv struct {
	Term string `json:"TERM"`
}

// marshalHeader returns the header line for h, ending in "\n".
func marshalHeader(h Header) []byte {
	hj := headerJSON{
		Version:    2,
		Width:      h.Width,
		Height:     h.Height,
		Timestamp:  h.Timestamp.Unix(),
		User:       h.User,
		Login:      h.Login,
		Node:       h.Node,
		SessionID:  h.SessionID,
		ClientAddr: h.ClientAddr,
		Proxy:      h.Proxy,
		Channel:    h.Channel,
	}
	if hj.Width <= 0 {
		hj.Width = 80
	}
	if hj.Height <= 0 {
		hj.Height = 24
	}
	if h.Term != "" {
		hj.Env = &termEnv{Term: h.Term}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(hj); err != nil {
		panic("recorder: encoding the header: " + err.Error()) // Strings and ints always encode.
	}
	return b.Bytes()
}

// eventEncoder formats event lines, reusing its buffers.
type eventEncoder struct {
	buf  bytes.Buffer
	enc  *json.Encoder
	line []byte
	frac [8]byte
}

// encode returns the line `[SECONDS, "KIND", "TEXT"]` for an event d after
// the start, ending in "\n". The returned slice is valid until the next
// call.
func (e *eventEncoder) encode(d time.Duration, kind byte, text []byte) ([]byte, error) {
	if e.enc == nil {
		e.enc = json.NewEncoder(&e.buf)
		e.enc.SetEscapeHTML(false)
	}
	e.buf.Reset()
	if err := e.enc.Encode(string(text)); err != nil {
		return nil, err
	}
	us := max(d, 0).Microseconds()
	e.line = append(e.line[:0], '[')
	e.line = strconv.AppendInt(e.line, us/1e6, 10)
	frac := strconv.AppendInt(e.frac[:0], 1e6+us%1e6, 10) // "1" and 6 digits
	e.line = append(e.line, '.')
	e.line = append(e.line, frac[1:]...)
	e.line = append(e.line, ", \""...)
	e.line = append(e.line, kind)
	e.line = append(e.line, "\", "...)
	e.line = append(e.line, bytes.TrimSuffix(e.buf.Bytes(), []byte("\n"))...)
	e.line = append(e.line, "]\n"...)
	return e.line, nil
}

// validPrefix reads a recording and returns the length of its longest
// prefix made of a valid header line followed by valid event lines, each
// ending in "\n". ok is false when the first line is not a valid header;
// n is 0 then. Reading stops at the first line that is incomplete, invalid
// or longer than maxLine: a crash only ever damages the end of a file, so
// what follows a bad line is not trusted either.
func validPrefix(r io.Reader) (n int64, ok bool, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		line, err = readLine(br, line)
		if err == io.EOF || errors.Is(err, errLineTooLong) {
			return n, n > 0, nil
		}
		if err != nil {
			return n, n > 0, err
		}
		valid := validEventLine
		if n == 0 {
			valid = validHeaderLine
		}
		if !valid(line) {
			return n, n > 0, nil
		}
		n += int64(len(line))
	}
}

var errLineTooLong = errors.New("line too long")

// readLine reads a line ending in "\n" into buf. At the end of the input it
// returns the incomplete rest with io.EOF.
func readLine(br *bufio.Reader, buf []byte) ([]byte, error) {
	buf = buf[:0]
	for {
		frag, err := br.ReadSlice('\n')
		if len(buf)+len(frag) > maxLine {
			return nil, errLineTooLong
		}
		buf = append(buf, frag...)
		if err != bufio.ErrBufferFull {
			return buf, err
		}
	}
}

// decodeLine decodes one JSON line as players read it: UTF-8 text (Python
// opens the file with strict UTF-8 decoding) holding one JSON value, with no
// carriage return (which Python's line reader would split on).
func decodeLine(line []byte, v any) bool {
	if !utf8.Valid(line) || bytes.IndexByte(line, '\r') >= 0 || !json.Valid(line) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	return dec.Decode(v) == nil
}

// validHeaderLine reports whether line is an asciicast v2 header: an object
// with "version": 2 and positive integer "width" and "height".
func validHeaderLine(line []byte) bool {
	var h map[string]any
	if !decodeLine(line, &h) || h == nil {
		return false
	}
	return isInt(h["version"], 2, 2) && isInt(h["width"], 1, 1<<31-1) && isInt(h["height"], 1, 1<<31-1)
}

// validEventLine reports whether line is an asciicast v2 event:
// [non-negative number, non-empty string, string].
func validEventLine(line []byte) bool {
	var ev []any
	if !decodeLine(line, &ev) || len(ev) != 3 {
		return false
	}
	t, ok := ev[0].(json.Number)
	if !ok {
		return false
	}
	secs, err := t.Float64()
	if err != nil || secs < 0 {
		return false
	}
	kind, ok := ev[1].(string)
	if !ok || kind == "" {
		return false
	}
	_, ok = ev[2].(string)
	return ok
}

// isInt reports whether v is a JSON integer in [lo, hi].
func isInt(v any, lo, hi int64) bool {
	n, ok := v.(json.Number)
	if !ok {
		return false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	return err == nil && lo <= i && i <= hi
}
