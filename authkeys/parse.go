package authkeys

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"
)

// ParseCache reads a cache file, of format v2 or v1, checking every
// line. Any line it does not understand makes the whole file invalid: a
// cache that cannot be read entirely is not trusted at all. A v2 file
// whose size or checksum does not match its first line is damaged or
// truncated; a v1 file without the final "end" line is truncated.
func ParseCache(data []byte) (*Cache, error) { return parseCache(data, "", false) }

// ParseCacheFor is ParseCache for a decision about one user: it keeps
// only that user's access (all users when user is empty), which is what
// makes a large cache fast to answer from.
//
// A v2 file it checks whole by its size and checksum, then reads the
// header lines, the revoked lines and, found by binary search, the
// user's line and the lines either side (see lookup). A v1 file it
// checks line by line in one pass, as ParseCache does.
func ParseCacheFor(data []byte, user string) (*Cache, error) {
	return parseCache(data, user, user != "")
}

// parseCache reads a cache for user; fast allows lookup for a v2 file,
// otherwise every line is checked.
func parseCache(data []byte, user string, fast bool) (*Cache, error) {
	if len(data) > MaxCacheBytes {
		return nil, fmt.Errorf("cache is larger than %d bytes", MaxCacheBytes)
	}
	if !bytes.HasPrefix(data, []byte(HeaderV2+" ")) {
		// Format v1. Its writers put the users in increasing order too, so
		// a name greater than the one before cannot be a duplicate and no
		// set of names is needed. A file in any other order is read again
		// with a set of every name: the same answer, only slower.
		c, err := parse(data, user, v1)
		if errors.Is(err, errUnsorted) {
			c, err = parse(data, user, v1AnyOrder)
		}
		return c, err
	}
	if err := checkSeal(data); err != nil {
		return nil, err
	}
	if fast {
		return lookup(data, user)
	}
	return parse(data, user, v2)
}

// checkSeal checks the first line of a v2 file against the rest: their
// size, then their checksum.
func checkSeal(data []byte) error {
	line, body, ok := bytes.Cut(data, []byte{'\n'})
	if !ok {
		return errors.New("cache is truncated (no end line)")
	}
	size, sum, ok := parseSeal(line)
	if !ok {
		return fmt.Errorf("cache line 1: %q is not \"%s size=N crc32=X\"", trunc(string(line)), HeaderV2)
	}
	if size != len(body) {
		return fmt.Errorf("cache is truncated or damaged: line 1 says %d bytes follow it, %d do", size, len(body))
	}
	if got := crc32.ChecksumIEEE(body); got != sum {
		return fmt.Errorf("cache is damaged: the checksum of its lines is %08x, line 1 says %08x", got, sum)
	}
	return nil
}

// parseSeal reads "teleport-node policy v2 size=N crc32=X" exactly as
// Marshal writes it: N in decimal without leading zeros, X in eight
// lower-case hex digits.
func parseSeal(line []byte) (size int, sum uint32, ok bool) {
	rest, ok := bytes.CutPrefix(line, []byte(HeaderV2+" size="))
	if !ok {
		return 0, 0, false
	}
	digits, hex, ok := cut(rest, ' ')
	if !ok || len(digits) == 0 || len(digits) > 9 || digits[0] == '0' && len(digits) > 1 {
		return 0, 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		size = size*10 + int(c-'0')
	}
	hex, ok = bytes.CutPrefix(hex, []byte("crc32="))
	if !ok || len(hex) != 8 || !validHash(hex) {
		return 0, 0, false
	}
	for _, c := range hex {
		d := c - '0'
		if c >= 'a' {
			d = c - 'a' + 10
		}
		sum = sum<<4 | uint32(d)
	}
	return size, sum, true
}

// errUnsorted stops a parse of a v1 file that relies on the users being
// in order.
var errUnsorted = errors.New("users are not in increasing order")

// maxLine bounds one line of the cache.
const maxLine = 64 << 10

// headerLines are the keywords of the lines that appear exactly once,
// in the order format v2 has them.
var headerLines = [...]string{"node", "confirmed", "generated", "hash", "mode", "ca"}

// format says how parse reads a file.
type format int

const (
	v1         format = iota // users in order, errUnsorted if not
	v1AnyOrder               // users in any order, kept in a set
	v2                       // line 1 already checked; lines in v2's order
)

// parser holds the state of one parse.
type parser struct {
	c      *Cache
	only   string // the one user to keep; "" keeps all
	format format
	seen   [len(headerLines)]bool
	// headers counts the header lines so far, revoked is set from the
	// first revoked line: both only for v2's order.
	headers int
	revoked bool
	users   bool
	// names holds every user name so far when the users may be in any
	// order; otherwise prev is the previous user's name.
	names map[string]struct{}
	prev  []byte
}

// parse checks every line of data and keeps user's access.
func parse(data []byte, user string, f format) (*Cache, error) {
	p := &parser{c: &Cache{Users: map[string]Access{}}, only: user, format: f}
	if f == v1AnyOrder {
		p.names = map[string]struct{}{}
	}
	rest := data
	n := 0
	ended := false
	for len(rest) > 0 {
		line := rest
		rest = nil
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line, rest = line[:i], line[i+1:]
		}
		n++
		if ended {
			return nil, fmt.Errorf("cache line %d: text after the end line", n)
		}
		if n == 1 {
			if f != v2 && string(line) != Header {
				return nil, fmt.Errorf("cache line 1: %q is not %q or %q", trunc(string(line)), HeaderV2+" ...", Header)
			}
			continue
		}
		if len(line) > maxLine {
			return nil, fmt.Errorf("cache line %d is longer than %d bytes", n, maxLine)
		}
		kw, args, _ := cut(line, ' ')
		if string(kw) == "end" && len(line) != len("end") {
			return nil, fmt.Errorf("cache line %d: text after end", n)
		}
		if err := p.line(kw, args); err != nil {
			return nil, fmt.Errorf("cache line %d: %w", n, err)
		}
		ended = string(kw) == "end"
	}
	if !ended || !bytes.HasSuffix(data, []byte("end\n")) {
		return nil, errors.New("cache is truncated (no end line)")
	}
	for i, k := range headerLines {
		if !p.seen[i] {
			return nil, fmt.Errorf("cache has no %q line", k)
		}
	}
	return p.c, nil
}

func (p *parser) line(kw, rest []byte) error {
	switch string(kw) {
	case "user", "locked":
		if err := p.inOrder("user"); err != nil {
			return err
		}
		p.users = true
		return p.user(string(kw) == "locked", rest)
	case "signer":
		if p.format != v2 {
			return errors.New("signer line in a format v1 cache")
		}
		if err := p.inOrder("signer"); err != nil {
			return err
		}
		return p.signer(rest)
	case "revoked":
		if err := p.inOrder("revoked"); err != nil {
			return err
		}
		p.revoked = true
		return p.revokedLine(rest)
	case "end":
		if len(rest) != 0 {
			return errors.New("text after end")
		}
		return nil
	}
	for i, k := range headerLines {
		if string(kw) == k {
			if p.seen[i] {
				return fmt.Errorf("second %q line", k)
			}
			if p.format == v2 && i != p.headers {
				return fmt.Errorf("%q line out of order: format v2 has the %q line here", k, headerLines[p.headers])
			}
			p.seen[i] = true
			p.headers++
			return p.header(k, string(rest))
		}
	}
	return fmt.Errorf("unknown keyword %q", trunc(string(kw)))
}

// inOrder checks, for v2, that a user or revoked line comes after the
// header lines and that no user line follows a revoked one.
func (p *parser) inOrder(kw string) error {
	switch {
	case p.format != v2:
	case p.headers < len(headerLines):
		return fmt.Errorf("%s line before the %q line", kw, headerLines[p.headers])
	case kw == "user" && p.revoked:
		return errors.New("user line after the revoked lines")
	case kw == "signer" && (p.users || p.revoked):
		return errors.New("signer line after the user or revoked lines")
	}
	return nil
}

// header reads the value of a line that appears once.
func (p *parser) header(kw, rest string) error {
	c := p.c
	var err error
	switch kw {
	case "node":
		if !validNode(rest) {
			err = fmt.Errorf("node name %q is not valid", trunc(rest))
		}
		c.Node = rest
	case "confirmed":
		c.Confirmed, err = time.Parse(time.RFC3339Nano, rest)
	case "generated":
		c.Generated, err = time.Parse(time.RFC3339Nano, rest)
	case "hash":
		if !validHash(rest) {
			err = fmt.Errorf("hash %q is not hex", trunc(rest))
		}
		c.Hash = rest
	case "mode":
		if rest != ModeProxy && rest != ModeOff {
			err = fmt.Errorf("mode %q is not %q or %q", trunc(rest), ModeProxy, ModeOff)
		}
		c.Mode = rest
	case "ca":
		c.TrustedCA, _, _, _, err = ssh.ParseAuthorizedKey([]byte(rest))
		if err == nil {
			if _, isCert := c.TrustedCA.(*ssh.Certificate); isCert {
				err = errors.New("the trusted CA key is a certificate")
			}
		}
	}
	return err
}

// signer reads a signer line: one plain public key, not the CA's or a
// repeat.
func (p *parser) signer(rest []byte) error {
	k, _, _, _, err := ssh.ParseAuthorizedKey(rest)
	// Exactly the key as Marshal writes it: no options, no comment.
	if err != nil || !bytes.Equal(bytes.TrimSuffix(ssh.MarshalAuthorizedKey(k), []byte("\n")), rest) {
		return fmt.Errorf("signer line %q is not one public key", trunc(string(rest)))
	}
	if p.c.TrustedCA == nil {
		return errors.New("signer line before the ca line")
	}
	if err := checkSigners(p.c.TrustedCA, append(p.c.Signers, k)); err != nil {
		return err
	}
	p.c.Signers = append(p.c.Signers, k)
	return nil
}

// user reads a user or locked line. Every name and login is checked;
// only the kept user's become strings.
func (p *parser) user(locked bool, rest []byte) error {
	name, logins, ok := cut(rest, ' ')
	if !ok || !validUser(name) {
		return fmt.Errorf("user line %q is not \"user NAME LOGIN,...\"", trunc(string(rest)))
	}
	if err := p.unique(name); err != nil {
		return err
	}
	keep := p.only == "" || string(name) == p.only
	a := Access{Locked: locked}
	if string(logins) != "-" {
		if !keep && validLogins(logins) {
			return nil // the usual line: checked in one pass, not kept
		}
		for {
			l, more, comma := cut(logins, ',')
			if !validLogin(l) {
				return fmt.Errorf("login %q of %s is not valid", trunc(string(l)), name)
			}
			if keep {
				a.Logins = append(a.Logins, string(l))
			}
			if !comma {
				break
			}
			logins = more
		}
	}
	if keep {
		p.c.Users[string(name)] = a
	}
	return nil
}

// validLogins reports whether b is a comma-separated list of one or
// more valid logins, in one pass; the loop in user finds which is not.
func validLogins(b []byte) bool {
	n := 0 // bytes of the login so far
	for _, c := range b {
		switch {
		case c == ',':
			if n == 0 {
				return false
			}
			n = 0
			continue
		case n == 0:
			if nameChars[c]&nameFirst == 0 {
				return false
			}
		case nameChars[c]&nameRest == 0:
			return false
		}
		if n++; n > 32 {
			return false
		}
	}
	return n > 0
}

// unique refuses a name seen before: with the set when there is one,
// else by requiring the names in increasing order, which v2 requires
// and v1 only hopes for.
func (p *parser) unique(name []byte) error {
	if p.names != nil {
		if _, dup := p.names[string(name)]; dup {
			return fmt.Errorf("user %q listed twice", name)
		}
		p.names[string(name)] = struct{}{}
		return nil
	}
	if p.prev != nil {
		switch cmp := bytes.Compare(name, p.prev); {
		case cmp > 0:
		case p.format != v2:
			return errUnsorted
		case cmp == 0:
			return fmt.Errorf("user %q listed twice", name)
		default:
			return fmt.Errorf("user %q out of order, after %q", name, p.prev)
		}
	}
	p.prev = name
	return nil
}

func (p *parser) revokedLine(rest []byte) error {
	f := bytes.Split(rest, []byte{' '})
	if len(f) != 3 || (string(f[0]) != "user" && string(f[0]) != "session" && string(f[0]) != "host") {
		return fmt.Errorf("revoked line %q is not \"revoked user|session|host SERIAL EXPIRES\"", trunc(string(rest)))
	}
	serial, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil || serial == 0 {
		return fmt.Errorf("revoked serial %q is not a positive decimal number", trunc(string(f[1])))
	}
	exp, err := time.Parse(time.RFC3339, string(f[2]))
	if err != nil {
		return err
	}
	p.c.Revoked = append(p.c.Revoked, Revoked{CA: string(f[0]), Serial: serial, Expires: exp})
	return nil
}

// cut is bytes.Cut for a separator of one byte in a short field: a
// plain loop costs less than the call to the vectorised search.
func cut(b []byte, sep byte) (before, after []byte, found bool) {
	for i, c := range b {
		if c == sep {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
