package authkeys

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Denied is a refusal with the reason teleport-authkeys reports on stderr
// (sshd logs it); stdout stays empty.
type Denied struct{ Reason string }

func (d *Denied) Error() string { return d.Reason }

func deny(format string, args ...any) error {
	return &Denied{Reason: fmt.Sprintf(format, args...)}
}

// UserFromKeyID returns the cluster user a certificate's KeyId names. In
// mode proxy nodes see session certificates, whose KeyId is
// "user=NAME proxy=PROXY session=ID"; in mode off they see user
// certificates, whose KeyId is the user name. Anything else is refused.
func UserFromKeyID(mode, keyID string) (string, error) {
	switch mode {
	case ModeOff:
		if !validUser(keyID) {
			return "", deny("certificate key id %.80q is not a cluster user name", keyID)
		}
		return keyID, nil
	case ModeProxy:
		f := strings.Split(keyID, " ")
		if len(f) != 3 || !strings.HasPrefix(f[0], "user=") || !strings.HasPrefix(f[1], "proxy=") || !strings.HasPrefix(f[2], "session=") {
			return "", deny("certificate key id %.80q is not a session certificate's (user=... proxy=... session=...); in recording mode proxy only the proxy logs in", keyID)
		}
		user := strings.TrimPrefix(f[0], "user=")
		if !validUser(user) {
			return "", deny("certificate key id names user %.80q, which is not a valid user name", user)
		}
		return user, nil
	}
	return "", deny("recording mode %q is unknown", mode)
}

// Check decides whether the certificate with the given KeyId and serial
// may log in as login. It returns nil when it may.
func (c *Cache) Check(login, keyID string, serial uint64) error {
	if !validLogin(login) {
		return deny("local user %.80q is not a valid login", login)
	}
	user, err := UserFromKeyID(c.Mode, keyID)
	if err != nil {
		return err
	}
	a, ok := c.Users[user]
	switch {
	case !ok:
		return deny("user %s has no login on node %s (unknown, removed, or no role selects this node)", user, c.Node)
	case a.Locked:
		return deny("user %s is locked", user)
	}
	allowed := false
	for _, l := range a.Logins {
		allowed = allowed || l == login
	}
	if !allowed {
		return deny("user %s may not log in as %s on node %s (allowed: %s)", user, login, c.Node, strings.Join(a.Logins, ","))
	}
	ca := "user"
	if c.Mode == ModeProxy {
		ca = "session"
	}
	for _, r := range c.Revoked {
		if r.CA == ca && r.Serial == serial {
			return deny("certificate serial %d of user %s is revoked", serial, user)
		}
	}
	return nil
}

// Stale reports whether the cache was last confirmed more than maxAge
// before now, or claims a confirmation more than a minute in the future
// (written while the clock was wrong): neither is trusted.
func (c *Cache) Stale(now time.Time, maxAge time.Duration) bool {
	age := now.Sub(c.Confirmed)
	return age > maxAge || age < -time.Minute
}

// PrincipalsLine answers AuthorizedPrincipalsCommand ("principals %u %i
// %s"): the login itself, when allowed.
func (c *Cache) PrincipalsLine(login, keyID, serial string) (string, error) {
	s, err := strconv.ParseUint(serial, 10, 64)
	if err != nil {
		return "", deny("certificate serial %.40q is not a decimal number", serial)
	}
	if err := c.Check(login, keyID, s); err != nil {
		return "", err
	}
	return login + "\n", nil
}

// MaxKeyBytes bounds the base64 key sshd passes as %k.
const MaxKeyBytes = 64 << 10

// KeysLine answers AuthorizedKeysCommand ("keys %u %t %k"): for a
// certificate signed by the trusted CA whose user may log in as login, a
// cert-authority line for that CA limited to the one login.
func (c *Cache) KeysLine(login, keyType, keyB64 string) (string, error) {
	cert, err := ParseOfferedCert(keyType, keyB64)
	if err != nil {
		return "", err
	}
	signer, ok := c.trusts(cert)
	if !ok {
		return "", deny("certificate %.80q is not signed by the CA this node trusts", cert.KeyId)
	}
	if cert.CertType != ssh.UserCert {
		return "", deny("certificate %.80q is a host certificate, not a user certificate", cert.KeyId)
	}
	if err := c.Check(login, cert.KeyId, cert.Serial); err != nil {
		return "", err
	}
	// login passed validLogin in Check; the CA key is re-marshalled from
	// its parsed form, so neither can carry an option.
	ca := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer)))
	return fmt.Sprintf("cert-authority,principals=\"%s\" %s\n", login, ca), nil
}

// ParseOfferedCert parses the key sshd offers as %t %k and requires a
// user certificate.
func ParseOfferedCert(keyType, keyB64 string) (*ssh.Certificate, error) {
	if len(keyB64) > MaxKeyBytes {
		return nil, deny("offered key is larger than %d bytes", MaxKeyBytes)
	}
	if !strings.HasSuffix(keyType, "-cert-v01@openssh.com") {
		return nil, deny("offered key type %.60q is not a certificate; only certificates from the cluster CA are accepted", keyType)
	}
	blob, err := base64.StdEncoding.DecodeString(keyB64)
	if err != nil {
		return nil, deny("offered key is not base64: %v", err)
	}
	pub, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, deny("offered certificate does not parse: %v", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok || cert.Type() != keyType {
		return nil, deny("offered key is not a %.60q certificate", keyType)
	}
	return cert, nil
}
