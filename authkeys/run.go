package authkeys

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/atomicfile"
	"github.com/opensshca/suite/internal/nodedir"
)

// Defaults of teleport-authkeys.
const (
	DefaultMaxAge    = time.Hour
	DefaultCATimeout = 2 * time.Second
	// unreachableHold is how long a failed attempt to reach the CA makes
	// later logins deny at once instead of waiting for the deadline again.
	unreachableHold = 30 * time.Second
)

// FromPolicy turns the CA's answer into the cache teleport-authkeys reads.
// confirmed is the node's clock when the answer arrived.
func FromPolicy(p api.NodePolicy, confirmed time.Time) (*Cache, error) {
	trusted := p.SessionCA
	if p.RecordingMode == ModeOff {
		trusted = p.UserCA
	}
	ca, _, _, _, err := ssh.ParseAuthorizedKey([]byte(trusted))
	if err != nil {
		return nil, fmt.Errorf("authkeys: the CA sent a bad %s CA key: %w", p.RecordingMode, err)
	}
	c := &Cache{
		Node: p.Node, Confirmed: confirmed, Generated: p.Generated, Hash: p.Hash,
		Mode: p.RecordingMode, TrustedCA: ca, Users: make(map[string]Access, len(p.Users)),
	}
	for _, u := range p.Users {
		// A second entry must not replace the first: it could unlock a
		// locked user. The cache holds each user once; so must the answer.
		if _, dup := c.Users[u.Name]; dup {
			return nil, fmt.Errorf("authkeys: the CA sent user %q twice", u.Name)
		}
		c.Users[u.Name] = Access{Logins: u.Logins, Locked: u.Locked}
	}
	if p.RecordingMode != ModeOff {
		for _, px := range p.Proxies {
			if px.SessionSigner == "" {
				continue
			}
			k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(px.SessionSigner))
			if err != nil {
				return nil, fmt.Errorf("authkeys: the CA sent a bad session signer for proxy %q: %w", px.Name, err)
			}
			c.Signers = append(c.Signers, k)
		}
		if err := checkSigners(c.TrustedCA, c.Signers); err != nil {
			return nil, err
		}
	}
	for _, r := range p.Revoked {
		s, err := strconv.ParseUint(r.Serial, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("authkeys: the CA sent a bad revoked serial %q", r.Serial)
		}
		c.Revoked = append(c.Revoked, Revoked{CA: r.CA, Serial: s, Expires: r.Expires})
	}
	return c, nil
}

// Runner runs one teleport-authkeys invocation.
type Runner struct {
	Dir       nodedir.Dir
	MaxAge    time.Duration
	CATimeout time.Duration
	Now       func() time.Time
	// Fetch asks the CA for the node's policy; nil uses the node's
	// identity from Dir.
	Fetch func(ctx context.Context) (api.NodePolicy, error)
	// Log receives each denial (syslog for the real command); may be nil.
	Log func(msg string)
	// RecordDenials appends each denial to the node's denial log, which
	// teleport-node sends to the CA's audit log (the real command).
	RecordDenials bool
}

// Main is teleport-authkeys: it parses args, answers on stdout and
// returns the exit status (0 allowed, 1 denied, 2 usage).
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("teleport-authkeys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	r := &Runner{Now: time.Now}
	dir := fs.String("data-dir", nodedir.DefaultDir, "teleport-node data directory")
	fs.DurationVar(&r.MaxAge, "max-age", DefaultMaxAge, "use the cache only when the CA confirmed it within this `duration`; older, ask the CA and deny if that fails")
	fs.DurationVar(&r.CATimeout, "ca-timeout", DefaultCATimeout, "deadline for asking the CA")
	fs.Usage = func() {
		_, _ = io.WriteString(stderr, `Usage:
  teleport-authkeys [--data-dir DIR] principals %u %i %s   (AuthorizedPrincipalsCommand)
  teleport-authkeys [--data-dir DIR] keys %u %t %k         (AuthorizedKeysCommand)

sshd runs it on every certificate login; it prints the policy line when
the certificate's user may log in as %u on this node, nothing otherwise.
See contrib/sshd/ for the sshd_config lines.

Example (sshd_config, as teleport-node sshd-config prints it):
  AuthorizedPrincipalsCommand /usr/libexec/teleport-authkeys principals %u %i %s
  AuthorizedPrincipalsCommandUser teleport-authkeys

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	rest := fs.Args()
	if len(rest) != 4 || (rest[0] != "principals" && rest[0] != "keys") {
		fs.Usage()
		return 2
	}
	r.Dir = nodedir.Dir(*dir)
	r.Log = logSyslog
	r.RecordDenials = true
	out, err := r.Answer(rest[0], rest[1], rest[2], rest[3])
	if err != nil {
		fmt.Fprintf(stderr, "teleport-authkeys: denied: %v\n", err)
		return 1
	}
	_, _ = io.WriteString(stdout, out)
	return 0
}

func logSyslog(msg string) {
	w, err := syslog.New(syslog.LOG_AUTHPRIV|syslog.LOG_NOTICE, "teleport-authkeys")
	if err != nil {
		return
	}
	defer w.Close()
	_ = w.Notice(msg)
}

// Answer returns the line for sshd, or the reason to deny.
func (r *Runner) Answer(mode, login, a, b string) (string, error) {
	c, err := r.cache(userHint(mode, a, b))
	if err == nil {
		if mode == "principals" {
			var out string
			out, err = c.PrincipalsLine(login, a, b)
			if err == nil {
				return out, nil
			}
		} else {
			var out string
			out, err = c.KeysLine(login, a, b)
			if err == nil {
				return out, nil
			}
		}
	}
	if r.Log != nil {
		r.Log(fmt.Sprintf("denied login as %.40q: %v", login, err))
	}
	if r.RecordDenials {
		keyID, serial := certFields(mode, a, b)
		recordDenial(r.Dir, r.Now(), login, keyID, serial, err.Error())
	}
	return "", err
}

// userHint guesses the user the decision is about, so that only that
// user's line of the cache is kept: the KeyId's user= field or the KeyId
// itself. Check still decides from the KeyId and the mode; a wrong
// guess only means the user is not found, which denies.
func userHint(mode, a, b string) string {
	keyID := a
	if mode == "keys" {
		cert, err := ParseOfferedCert(a, b)
		if err != nil {
			return ""
		}
		keyID = cert.KeyId
	}
	if u, ok := strings.CutPrefix(keyID, "user="); ok {
		u, _, _ = strings.Cut(u, " ")
		return u
	}
	return keyID
}

// cache returns a policy confirmed within MaxAge: the cache file when it
// is fresh enough, else one fetched from the CA now.
func (r *Runner) cache(user string) (*Cache, error) {
	now := r.Now()
	b, err := os.ReadFile(r.Dir.Path(nodedir.Cache))
	var c *Cache
	if err == nil {
		c, err = ParseCacheFor(b, user)
	}
	if err == nil && !c.Stale(now, r.MaxAge) {
		return c, nil
	}
	var why string
	if err != nil {
		why = "the policy cache is unreadable (" + errString(err) + ")"
	} else {
		why = fmt.Sprintf("the policy cache was last confirmed by the CA at %s, more than %v ago", c.Confirmed.UTC().Format(time.RFC3339), r.MaxAge)
	}
	if t, ok := r.lastUnreachable(); ok && now.Sub(t) < unreachableHold && now.After(t) {
		return nil, deny("%s and the CA was unreachable at %s (failing closed)", why, t.UTC().Format(time.RFC3339))
	}
	fresh, ferr := r.fetch(now)
	if ferr != nil {
		var ae *api.Error
		if !errors.As(ferr, &ae) || ae.Status >= 500 {
			r.markUnreachable(now)
		}
		return nil, deny("%s and asking the CA failed: %v (failing closed)", why, ferr)
	}
	return fresh, nil
}

func (r *Runner) fetch(now time.Time) (*Cache, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.CATimeout)
	defer cancel()
	fetch := r.Fetch
	if fetch == nil {
		fetch = func(ctx context.Context) (api.NodePolicy, error) {
			cl, _, err := r.Dir.Client(r.CATimeout)
			if err != nil {
				return api.NodePolicy{}, err
			}
			return cl.NodePolicy(ctx, "", 0)
		}
	}
	p, err := fetch(ctx)
	if err != nil {
		return nil, err
	}
	c, err := FromPolicy(p, now)
	if err != nil {
		return nil, err
	}
	// Keep the answer, negative ones included, for the next logins. The
	// cache directory may not be writable (then every login asks again).
	if b, err := c.Marshal(); err == nil {
		_ = atomicfile.WriteFile(r.Dir.Path(nodedir.Cache), b, 0o640)
	}
	return c, nil
}

func (r *Runner) lastUnreachable() (time.Time, bool) {
	b, err := os.ReadFile(r.Dir.Path(nodedir.Unreachable))
	if err != nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	return t, err == nil
}

func (r *Runner) markUnreachable(now time.Time) {
	_ = atomicfile.WriteFile(r.Dir.Path(nodedir.Unreachable), []byte(now.UTC().Format(time.RFC3339Nano)), 0o640)
}

func errString(err error) string {
	if errors.Is(err, os.ErrNotExist) {
		return "it does not exist; is teleport-node running?"
	}
	return err.Error()
}
