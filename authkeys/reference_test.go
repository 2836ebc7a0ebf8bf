package authkeys

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// referenceParse is ParseCacheFor as it was before format v2, before it
// read bytes in one pass and relied on the users' order (commit
// 5428149), kept verbatim but for the names and the error about line 1
// (which now names both headers), as the oracle of agree: for a v1 file
// the faster parser must answer exactly what this one answers, error
// messages included.
//
// refParser is the Cache of that version with its parse-time fields.
type refParser struct {
	*Cache
	only  string
	names map[string]struct{}
}

func referenceParse(data []byte, user string) (*Cache, error) {
	if len(data) > MaxCacheBytes {
		return nil, fmt.Errorf("cache is larger than %d bytes", MaxCacheBytes)
	}
	c := &refParser{Cache: &Cache{Users: map[string]Access{}}, only: user, names: map[string]struct{}{}}
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
				return nil, fmt.Errorf("cache line 1: %q is not %q or %q", trunc(line), HeaderV2+" ...", Header)
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
	for _, k := range []string{"node", "confirmed", "generated", "hash", "mode", "ca"} {
		if !seen[k] {
			return nil, fmt.Errorf("cache has no %q line", k)
		}
	}
	return c.Cache, nil
}

func (c *refParser) parseLine(kw, rest string, seen map[string]bool) error {
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

func (c *refParser) parseUser(locked bool, rest string) error {
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

func (c *refParser) parseRevoked(rest string) error {
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
