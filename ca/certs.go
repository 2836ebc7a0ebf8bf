package ca

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// UserCertRequest asks for a user certificate for User.
type UserCertRequest struct {
	User      string
	PublicKey ssh.PublicKey
	TTL       time.Duration // zero: default
	Logins    []string      // empty: all the roles allow
	Requester string        // for the record: "session", "admin(uid=0)"
	// MaxTTL caps the lifetime further (the rest of a sign-in session);
	// zero means no cap beyond the roles' and the hard cap.
	MaxTTL time.Duration
}

// IssueUserCert issues a user certificate: KeyId is the user name,
// principals the logins the user's roles allow (narrowed to req.Logins),
// extensions and source-address from the roles, lifetime capped by the
// roles and HardMaxTTL.
func (a *Authority) IssueUserCert(ctx context.Context, req UserCertRequest) (*ssh.Certificate, error) {
	if err := ValidateUserName(req.User); err != nil {
		return nil, err
	}
	u, _, err := a.getUser(ctx, req.User)
	if err != nil {
		return nil, err
	}
	return a.issueForUser(ctx, u, req)
}

// issueForUser issues for a user record the caller has just read.
func (a *Authority) issueForUser(ctx context.Context, u *userRecord, req UserCertRequest) (*ssh.Certificate, error) {
	if u.locked(a.now()) {
		return nil, lockedErr(u)
	}
	g, err := a.userGrant(ctx, u)
	if err != nil {
		return nil, err
	}
	principals, err := a.narrow(g.logins, req.Logins, u.Name)
	if err != nil {
		return nil, err
	}
	maxTTL := g.maxTTL
	if req.MaxTTL > 0 && (maxTTL == 0 || req.MaxTTL < maxTTL) {
		maxTTL = req.MaxTTL
	}
	is := &issuance{
		kind: kindUser, pub: req.PublicKey, keyID: u.Name, user: u.Name,
		ttl: req.TTL, maxTTL: maxTTL, requester: req.Requester,
		principals: principals,
		perms:      ssh.Permissions{Extensions: g.perms},
	}
	if len(g.source) > 0 {
		is.perms.CriticalOptions = map[string]string{optSourceAddress: joinList(g.source)}
	}
	return a.issue(ctx, is)
}

// narrow returns the allowed logins, restricted to want when want is set.
// Asking for a login no role allows is an error that names it, so that a
// user learns why instead of meeting a principal mismatch at sshd.
func (a *Authority) narrow(allowed, want []string, user string) ([]string, error) {
	if len(allowed) == 0 {
		return nil, &PolicyError{Reason: fmt.Sprintf("no role of user %q allows any login", user)}
	}
	if len(want) == 0 {
		return allowed, nil
	}
	var out []string
	for _, l := range want {
		if err := a.logins.Validate(l); err != nil {
			return nil, err
		}
		if !slices.Contains(allowed, l) {
			return nil, &PolicyError{Reason: fmt.Sprintf("no role of user %q allows login %q (allowed: %s)", user, l, strings.Join(allowed, ", "))}
		}
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out, nil
}

// SignWithSession issues a user certificate within a sign-in session.
func (a *Authority) SignWithSession(ctx context.Context, token string, req api.SignUserRequest) (*ssh.Certificate, error) {
	u, sess, err := a.sessionUser(ctx, token)
	if err != nil {
		if u != nil { // locked
			a.auditCertRefused(ctx, u.Name, err)
		}
		return nil, err
	}
	pub, err := ParsePublicKey(req.PublicKey)
	if err != nil {
		return nil, err
	}
	// A certificate does not outlive the sign-in it was issued under.
	c, err := a.issueForUser(ctx, u, UserCertRequest{
		User: u.Name, PublicKey: pub, TTL: time.Duration(req.TTL), Logins: req.Logins, Requester: u.Name,
		MaxTTL: sess.Expires.Sub(a.now()),
	})
	if err != nil {
		a.auditCertRefused(ctx, u.Name, err)
	}
	return c, err
}

// auditCertRefused records a user certificate refused within a sign-in
// session: the user is locked, or asked for a login no role gives. A
// request refused as malformed (ErrInvalid) is audited by the server as
// api.refused instead, and a session that ended is no user's request.
func (a *Authority) auditCertRefused(ctx context.Context, user string, err error) {
	var le *LockedError
	var pe *PolicyError
	if !errors.As(err, &le) && !errors.As(err, &pe) {
		return
	}
	ev := a.newEvent("cert.refused", a.now())
	ev.User, ev.Actor, ev.Success = user, user, false
	ev.Fields = map[string]string{"reason": strings.TrimPrefix(err.Error(), "ca: ")}
	if werr := a.writeEvent(ctx, ev); werr != nil {
		a.log.Error("audit write failed", "err", werr, "type", ev.Type)
	}
}

// HostCertRequest asks for a host certificate.
type HostCertRequest struct {
	Name       string // KeyId and first principal
	Principals []string
	PublicKey  ssh.PublicKey
	TTL        time.Duration
	Requester  string
}

// IssueHostCert issues a host certificate for Name and Principals.
func (a *Authority) IssueHostCert(ctx context.Context, req HostCertRequest) (*ssh.Certificate, error) {
	if err := ValidateHostPrincipal(req.Name); err != nil {
		return nil, err
	}
	principals := []string{req.Name}
	for _, p := range req.Principals {
		if !slices.Contains(principals, p) {
			principals = append(principals, p)
		}
	}
	return a.issue(ctx, &issuance{
		kind: kindHost, pub: req.PublicKey, keyID: req.Name, ttl: req.TTL,
		principals: principals, requester: req.Requester,
	})
}

// SessionCertRequest asks for the short certificate a proxy uses to log in
// to a node on behalf of a user it has verified.
type SessionCertRequest struct {
	User      string
	Login     string
	Proxy     string
	SessionID string
	PublicKey ssh.PublicKey
	TTL       time.Duration // clamped to 1..5 minutes
	// SourceAddress, when known, binds the certificate to the proxy's
	// address as the node sees it.
	SourceAddress []string
	// Extensions beyond permit-pty (the forwarding permissions of the
	// roles that give the login on the node).
	Extensions []string
}

// IssueSessionCert issues a session-CA certificate whose one principal is
// Login. The caller (the proxy API) has checked the user's policy.
func (a *Authority) IssueSessionCert(ctx context.Context, req SessionCertRequest) (*ssh.Certificate, error) {
	if err := ValidateUserName(req.User); err != nil {
		return nil, err
	}
	for _, f := range []struct{ what, v string }{{"proxy", req.Proxy}, {"session id", req.SessionID}} {
		if err := checkName(f.what, f.v, labelKeyRE, "use letters, digits, '_', '.', '/' and '-'"); err != nil {
			return nil, err
		}
	}
	is := &issuance{
		kind: kindSession, pub: req.PublicKey, user: req.User,
		keyID:      fmt.Sprintf("user=%s proxy=%s session=%s", req.User, req.Proxy, req.SessionID),
		ttl:        req.TTL,
		principals: []string{req.Login},
		requester:  "proxy:" + req.Proxy,
		perms:      ssh.Permissions{Extensions: map[string]string{extPTY: ""}},
	}
	for _, e := range req.Extensions {
		if e != extAgent && e != extPortForwarding && e != extX11 {
			return nil, invalidf("extension %q is not one a session certificate carries", e)
		}
		is.perms.Extensions[e] = ""
	}
	if len(req.SourceAddress) > 0 {
		is.perms.CriticalOptions = map[string]string{optSourceAddress: joinList(req.SourceAddress)}
	}
	return a.issue(ctx, is)
}

// AdminSign handles caadm sign.
func (a *Authority) AdminSign(ctx context.Context, req api.AdminSignRequest, actor string) (*ssh.Certificate, error) {
	pub, err := ParsePublicKey(req.PublicKey)
	if err != nil {
		return nil, err
	}
	if req.Host {
		for _, p := range req.Principals {
			if err := ValidateHostPrincipal(p); err != nil {
				return nil, err
			}
		}
		return a.IssueHostCert(ctx, HostCertRequest{Name: req.Name, Principals: req.Principals, PublicKey: pub, TTL: time.Duration(req.TTL), Requester: actor})
	}
	if len(req.Principals) > 0 {
		return nil, invalidf("principals are for host certificates; use logins for user certificates")
	}
	return a.IssueUserCert(ctx, UserCertRequest{User: req.Name, PublicKey: pub, TTL: time.Duration(req.TTL), Logins: req.Logins, Requester: actor})
}

// CertView is the API form of an issued certificate.
func CertView(c *ssh.Certificate) api.Cert {
	return api.Cert{
		Certificate: trimNL(ssh.MarshalAuthorizedKey(c)),
		Serial:      serialString(c.Serial),
		KeyID:       c.KeyId,
		Principals:  c.ValidPrincipals,
		ValidAfter:  time.Unix(int64(c.ValidAfter), 0).UTC(),
		ValidBefore: time.Unix(int64(c.ValidBefore), 0).UTC(),
	}
}

// IssuedCerts lists issuance records in issue order, optionally only those
// of one user (or KeyId) or one serial. Records are keyed by time, so a
// serial lookup reads the whole log; it is an administrator's query, not
// a path any login takes.
func (a *Authority) IssuedCerts(ctx context.Context, user, serial string) ([]api.IssuedCert, error) {
	suffix := ""
	if serial != "" {
		s, err := strconv.ParseUint(serial, 10, 64)
		if err != nil || s == 0 {
			return nil, invalidf("serial %q is not a positive decimal number", serial)
		}
		suffix = fmt.Sprintf("-%016x", s)
	}
	items, _, err := a.store.List(ctx, "certs/")
	if err != nil {
		return nil, err
	}
	var out []api.IssuedCert
	for _, it := range items {
		if !strings.HasSuffix(it.Key, suffix) {
			continue
		}
		var c api.IssuedCert
		if err := json.Unmarshal(it.Value, &c); err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		if user == "" || c.User == user || c.KeyID == user {
			out = append(out, c)
		}
	}
	return out, nil
}
