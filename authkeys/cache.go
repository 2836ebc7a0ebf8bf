// Package authkeys answers sshd's AuthorizedPrincipalsCommand and
// AuthorizedKeysCommand on a node (DESIGN.md sections 2 and 3, Node): may
// the cluster user named in a certificate log in as local user %u here?
//
// The answer comes from the node's policy cache, a small text file that
// teleport-node keeps current from the CA and that says when the CA last
// confirmed it. sshd execs teleport-authkeys on every login, so reading
// the cache must take milliseconds; it works while the CA is down. When
// the cache is older than a limit, teleport-authkeys asks the CA once,
// with a short deadline, and denies when that fails: it fails closed.
//
// Everything this package prints to stdout is a policy line sshd will
// obey, so every name in it is validated first: no comma, quote, space or
// newline can inject an authorized_keys option.
package authkeys

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Header is the first line of every cache file.
const Header = "teleport-node policy v1"

// Recording modes, as the CA reports them.
const (
	ModeProxy = "proxy" // nodes trust only the session CA
	ModeOff   = "off"   // nodes trust the user CA
)

// The name checks are hand-written rather than regular expressions: sshd
// execs teleport-authkeys on every login, and compiling the expressions
// alone cost a millisecond per run.

// validLogin: the portable POSIX user name set (the CA's default login
// pattern), ^[a-z_][a-z0-9_-]{0,31}$.
func validLogin(s string) bool { return validName(s, 32, false) }

// validUser: the CA's user name pattern, ^[a-z_][a-z0-9_.-]{0,63}$.
func validUser(s string) bool { return validName(s, 64, true) }

func validName(s string, maxLen int, dot bool) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c == '_':
		case i > 0 && (c >= '0' && c <= '9' || c == '-' || dot && c == '.'):
		default:
			return false
		}
	}
	return true
}

// validNode: a lower-case DNS name, ^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$.
func validNode(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && ((c != '.' && c != '-') || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// validHash: 1 to 64 lower-case hex digits.
func validHash(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Access is one user's access to the node.
type Access struct {
	Logins []string
	Locked bool
}

// Revoked is a revoked certificate serial of one CA.
type Revoked struct {
	CA      string // "user", "session" or "host"
	Serial  uint64
	Expires time.Time
}

// Cache is the node's policy as teleport-authkeys reads it.
type Cache struct {
	Node string
	// Confirmed is the node's clock when the CA last confirmed this
	// policy; Generated is the CA's clock then.
	Confirmed time.Time
	Generated time.Time
	Hash      string
	Mode      string
	// TrustedCA is the CA whose certificates sshd accepts for logins: the
	// session CA in mode proxy, the user CA in mode off.
	TrustedCA ssh.PublicKey
	Users     map[string]Access
	Revoked   []Revoked

	// only, when set, is the one user ParseCacheFor kept; names holds
	// every user line's name while parsing, to refuse duplicates.
	only  string
	names map[string]struct{}
}

// MaxCacheBytes bounds the cache file teleport-authkeys reads.
const MaxCacheBytes = 32 << 20

// Marshal writes the cache file. It refuses names that would not parse
// back, so a bad record at the CA cannot produce a cache that denies
// everyone by failing to parse.
func (c *Cache) Marshal() ([]byte, error) {
	if !validNode(c.Node) {
		return nil, fmt.Errorf("authkeys: node name %q is not valid", c.Node)
	}
	if c.Mode != ModeProxy && c.Mode != ModeOff {
		return nil, fmt.Errorf("authkeys: recording mode %q is not %q or %q", c.Mode, ModeProxy, ModeOff)
	}
	if c.TrustedCA == nil {
		return nil, errors.New("authkeys: no trusted CA key")
	}
	if _, isCert := c.TrustedCA.(*ssh.Certificate); isCert {
		return nil, errors.New("authkeys: the trusted CA key is a certificate")
	}
	for _, t := range []time.Time{c.Confirmed, c.Generated} {
		if y := t.UTC().Year(); y < 1 || y > 9999 {
			return nil, fmt.Errorf("authkeys: time %v is out of range", t)
		}
	}
	if !validHash(c.Hash) {
		return nil, fmt.Errorf("authkeys: policy hash %q is not hex", c.Hash)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nnode %s\nconfirmed %s\ngenerated %s\nhash %s\nmode %s\nca %s",
		Header, c.Node, c.Confirmed.UTC().Format(time.RFC3339Nano), c.Generated.UTC().Format(time.RFC3339Nano),
		c.Hash, c.Mode, ssh.MarshalAuthorizedKey(c.TrustedCA))
	names := slices.Sorted(maps.Keys(c.Users))
	for _, name := range names {
		a := c.Users[name]
		if !validUser(name) {
			return nil, fmt.Errorf("authkeys: user name %q is not valid", name)
		}
		for _, l := range a.Logins {
			if !validLogin(l) {
				return nil, fmt.Errorf("authkeys: login %q of %s is not valid", l, name)
			}
		}
		kw := "user"
		if a.Locked {
			kw = "locked"
		}
		logins := strings.Join(a.Logins, ",")
		if logins == "" {
			logins = "-"
		}
		fmt.Fprintf(&b, "%s %s %s\n", kw, name, logins)
	}
	for _, r := range c.Revoked {
		if r.CA != "user" && r.CA != "session" && r.CA != "host" {
			return nil, fmt.Errorf("authkeys: revoked serial %d has CA %q", r.Serial, r.CA)
		}
		if y := r.Expires.UTC().Year(); r.Serial == 0 || y < 1 || y > 9999 {
			return nil, fmt.Errorf("authkeys: revoked serial %d (expires %v) is not valid", r.Serial, r.Expires)
		}
		fmt.Fprintf(&b, "revoked %s %d %s\n", r.CA, r.Serial, r.Expires.UTC().Format(time.RFC3339))
	}
	b.WriteString("end\n")
	return b.Bytes(), nil
}

// ParseCache reads a cache file. Any line it does not understand makes
// the whole file invalid: a cache that cannot be read entirely is not
// trusted at all. A file without the final "end" line is truncated.
func ParseCache(data []byte) (*Cache, error) { return ParseCacheFor(data, "") }

// ParseCacheFor is ParseCache for a decision about one user: it checks
// every line just the same but keeps only that user's access (all users
// when user is empty), which is what makes a large cache fast to answer
// from.
func ParseCacheFor(data []byte, user string) (*Cache, error) {
	if len(data) > MaxCacheBytes {
		return nil, fmt.Errorf("cache is larger than %d bytes", MaxCacheBytes)
	}
	c := &Cache{Users: map[string]Access{}, only: user, names: map[string]struct{}{}}
	rest := string(data)
	n := 0
	ended := false
	seen := map[string]bool{}
	for rest != "" {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		n++
		if ended {
			return nil, fmt.Errorf("cache line %d: text after the end line", n)
		}
		if n == 1 {
			if line != Header {
				return nil, fmt.Errorf("cache line 1: %q is not %q", trunc(line), Header)
			}
			continue
		}
		if len(line) > maxLine {
			return nil, fmt.Errorf("cache line %d is longer than %d bytes", n, maxLine)
		}
		kw, args, _ := strings.Cut(line, " ")
		if kw == "end" && line != "end" {
			return nil, fmt.Errorf("cache line %d: text after end", n)
		}
		if err := c.parseLine(kw, args, seen); err != nil {
			return nil, fmt.Errorf("cache line %d: %w", n, err)
		}
		ended = kw == "end"
	}
	if !ended || !strings.HasSuffix(string(data), "end\n") {
		return nil, errors.New("cache is truncated (no end line)")
	}
	c.names = nil
	for _, k := range []string{"node", "confirmed", "generated", "hash", "mode", "ca"} {
		if !seen[k] {
			return nil, fmt.Errorf("cache has no %q line", k)
		}
	}
	return c, nil
}

// maxLine bounds one line of the cache.
const maxLine = 64 << 10

func (c *Cache) parseLine(kw, rest string, seen map[string]bool) error {
	single := func() error {
		if seen[kw] {
			return fmt.Errorf("second %q line", kw)
		}
		seen[kw] = true
		return nil
	}
	var err error
	switch kw {
	case "node":
		if err = single(); err == nil && !validNode(rest) {
			err = fmt.Errorf("node name %q is not valid", trunc(rest))
		}
		c.Node = rest
	case "confirmed":
		if err = single(); err == nil {
			c.Confirmed, err = time.Parse(time.RFC3339Nano, rest)
		}
	case "generated":
		if err = single(); err == nil {
			c.Generated, err = time.Parse(time.RFC3339Nano, rest)
		}
	case "hash":
		if err = single(); err == nil && !validHash(rest) {
			err = fmt.Errorf("hash %q is not hex", trunc(rest))
		}
		c.Hash = rest
	case "mode":
		if err = single(); err == nil && rest != ModeProxy && rest != ModeOff {
			err = fmt.Errorf("mode %q is not %q or %q", trunc(rest), ModeProxy, ModeOff)
		}
		c.Mode = rest
	case "ca":
		if err = single(); err == nil {
			c.TrustedCA, _, _, _, err = ssh.ParseAuthorizedKey([]byte(rest))
			if err == nil {
				if _, isCert := c.TrustedCA.(*ssh.Certificate); isCert {
					err = errors.New("the trusted CA key is a certificate")
				}
			}
		}
	case "user", "locked":
		err = c.parseUser(kw == "locked", rest)
	case "revoked":
		err = c.parseRevoked(rest)
	case "end":
		if rest != "" {
			err = errors.New("text after end")
		}
	default:
		err = fmt.Errorf("unknown keyword %q", trunc(kw))
	}
	return err
}

func (c *Cache) parseUser(locked bool, rest string) error {
	name, logins, ok := strings.Cut(rest, " ")
	if !ok || !validUser(name) {
		return fmt.Errorf("user line %q is not \"user NAME LOGIN,...\"", trunc(rest))
	}
	if _, dup := c.names[name]; dup {
		return fmt.Errorf("user %q listed twice", name)
	}
	c.names[name] = struct{}{}
	keep := c.only == "" || c.only == name
	a := Access{Locked: locked}
	if logins != "-" {
		for l := range strings.SplitSeq(logins, ",") {
			if !validLogin(l) {
				return fmt.Errorf("login %q of %s is not valid", trunc(l), name)
			}
			if keep {
				a.Logins = append(a.Logins, l)
			}
		}
	}
	if keep {
		c.Users[name] = a
	}
	return nil
}

func (c *Cache) parseRevoked(rest string) error {
	f := strings.Split(rest, " ")
	if len(f) != 3 || (f[0] != "user" && f[0] != "session" && f[0] != "host") {
		return fmt.Errorf("revoked line %q is not \"revoked user|session|host SERIAL EXPIRES\"", trunc(rest))
	}
	serial, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil || serial == 0 {
		return fmt.Errorf("revoked serial %q is not a positive decimal number", trunc(f[1]))
	}
	exp, err := time.Parse(time.RFC3339, f[2])
	if err != nil {
		return err
	}
	c.Revoked = append(c.Revoked, Revoked{CA: f[0], Serial: serial, Expires: exp})
	return nil
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
