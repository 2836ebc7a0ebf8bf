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
	"hash/crc32"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Header is the first line of a cache file of format v1, which
// teleport-node and teleport-authkeys wrote before v2; ParseCache still
// reads it.
const Header = "teleport-node policy v1"

// HeaderV2 begins the first line of a cache file of format v2, which
// Marshal writes: "teleport-node policy v2 size=N crc32=X", where N is
// the number of bytes after that line and X their IEEE CRC-32 in eight
// hex digits. The lines after it are those of v1, in a fixed order:
// node, confirmed, generated, hash, mode, ca; the user and locked lines
// in increasing byte order of their names; the revoked lines; end. The
// checksum guards against damage, not against someone who can write the
// file (who could write any policy): the cache's integrity rests on its
// permissions.
const HeaderV2 = "teleport-node policy v2"

// Recording modes, as the CA reports them.
const (
	ModeProxy = "proxy" // nodes trust only the session CA
	ModeOff   = "off"   // nodes trust the user CA
)

// The name checks are hand-written rather than regular expressions: sshd
// execs teleport-authkeys on every login, and compiling the expressions
// alone cost a millisecond per run. They take the cache file's bytes as
// they are, so that checking a line allocates nothing.

// text is what the name checks read.
type text interface{ ~string | ~[]byte }

// validLogin: the portable POSIX user name set (the CA's default login
// pattern), ^[a-z_][a-z0-9_-]{0,31}$.
func validLogin[T text](s T) bool { return validName(s, 32, false) }

// validUser: the CA's user name pattern, ^[a-z_][a-z0-9_.-]{0,63}$.
func validUser[T text](s T) bool { return validName(s, 64, true) }

func validName[T text](s T, maxLen int, dot bool) bool {
	if len(s) == 0 || len(s) > maxLen || nameChars[s[0]]&nameFirst == 0 {
		return false
	}
	rest := byte(nameRest)
	if dot {
		rest |= nameDot
	}
	for i := 1; i < len(s); i++ {
		if nameChars[s[i]]&rest == 0 {
			return false
		}
	}
	return true
}

// Classes of the bytes of names, for nameChars.
const (
	nameFirst = 1 << iota // [a-z_], which may start a name
	nameRest              // [a-z0-9_-], which may follow
	nameDot               // ., which may follow in a user name
)

// nameChars holds the classes of each byte: one load per byte is what
// keeps checking every line of a large cache cheap.
var nameChars = func() (t [256]byte) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = nameFirst | nameRest
	}
	t['_'] = nameFirst | nameRest
	for c := '0'; c <= '9'; c++ {
		t[c] = nameRest
	}
	t['-'] = nameRest
	t['.'] = nameDot
	return t
}()

// validNode: a lower-case DNS name, ^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$.
func validNode[T text](s T) bool {
	if len(s) == 0 || len(s) > 253 {
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
func validHash[T text](s T) bool {
	if len(s) == 0 || len(s) > 64 {
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
	// Signers are the session-signing keys of the registered proxies
	// (mode proxy only), which sign session certificates while the CA is
	// unreachable; sshd trusts them beside TrustedCA. Format v2 writes
	// each as a "signer" line after the header lines.
	Signers []ssh.PublicKey
	Users   map[string]Access
	Revoked []Revoked
}

// MaxCacheBytes bounds the cache file teleport-authkeys reads.
const MaxCacheBytes = 32 << 20

// Marshal writes the cache file, in format v2. It refuses names that
// would not parse back, so a bad record at the CA cannot produce a cache
// that denies everyone by failing to parse.
func (c *Cache) Marshal() ([]byte, error) {
	body, err := c.marshalBody()
	if err != nil {
		return nil, err
	}
	return seal(body), nil
}

// seal puts the first line of format v2 before the lines of body.
func seal(body []byte) []byte {
	b := fmt.Appendf(make([]byte, 0, len(body)+64), "%s size=%d crc32=%08x\n", HeaderV2, len(body), crc32.ChecksumIEEE(body))
	return append(b, body...)
}

// marshalBody writes the lines after the first, which are the same in
// both formats, with the users in increasing byte order of their names,
// each once: what lets teleport-authkeys find a user by binary search.
func (c *Cache) marshalBody() ([]byte, error) {
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
	// RFC 3339 has four-digit years, 0000 to 9999: what ParseCache reads.
	for _, t := range []time.Time{c.Confirmed, c.Generated} {
		if y := t.UTC().Year(); y < 0 || y > 9999 {
			return nil, fmt.Errorf("authkeys: time %v is out of range", t)
		}
	}
	if !validHash(c.Hash) {
		return nil, fmt.Errorf("authkeys: policy hash %q is not hex", c.Hash)
	}
	if err := checkSigners(c.TrustedCA, c.Signers); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "node %s\nconfirmed %s\ngenerated %s\nhash %s\nmode %s\nca %s",
		c.Node, c.Confirmed.UTC().Format(time.RFC3339Nano), c.Generated.UTC().Format(time.RFC3339Nano),
		c.Hash, c.Mode, ssh.MarshalAuthorizedKey(c.TrustedCA))
	for _, k := range c.Signers {
		fmt.Fprintf(&b, "signer %s", ssh.MarshalAuthorizedKey(k))
	}
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
		if y := r.Expires.UTC().Year(); r.Serial == 0 || y < 0 || y > 9999 {
			return nil, fmt.Errorf("authkeys: revoked serial %d (expires %v) is not valid", r.Serial, r.Expires)
		}
		fmt.Fprintf(&b, "revoked %s %d %s\n", r.CA, r.Serial, r.Expires.UTC().Format(time.RFC3339))
	}
	b.WriteString("end\n")
	return b.Bytes(), nil
}

// checkSigners refuses delegated signers that are certificates, repeat
// one another or the trusted CA: each must be one plain key, once.
func checkSigners(ca ssh.PublicKey, signers []ssh.PublicKey) error {
	seen := map[string]bool{string(ca.Marshal()): true}
	for _, k := range signers {
		if k == nil {
			return errors.New("authkeys: empty session signer key")
		}
		if _, isCert := k.(*ssh.Certificate); isCert {
			return errors.New("authkeys: a session signer key is a certificate")
		}
		if seen[string(k.Marshal())] {
			return fmt.Errorf("authkeys: session signer %s appears twice (or is the CA key)", ssh.FingerprintSHA256(k))
		}
		seen[string(k.Marshal())] = true
	}
	return nil
}

// trusts returns the trusted key that signed cert: the CA or a signer.
func (c *Cache) trusts(cert *ssh.Certificate) (ssh.PublicKey, bool) {
	sig := cert.SignatureKey.Marshal()
	for _, k := range append([]ssh.PublicKey{c.TrustedCA}, c.Signers...) {
		if k != nil && bytes.Equal(sig, k.Marshal()) {
			return k, true
		}
	}
	return nil, false
}
