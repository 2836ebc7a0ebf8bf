package sshproxy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/atomicfile"
)

// In recording mode proxy every login to a node needs a session
// certificate. The CA signs them; while the CA is unreachable the proxy
// signs them itself with its session signer, an ed25519 key it keeps in
// its data directory and registers with the CA at every renewal. Nodes
// trust each registered proxy's signer beside the session CA
// (TrustedUserCAKeys; teleport-authkeys' cache lists them), so removing a
// proxy (caadm proxies rm) withdraws the trust within a policy poll.
//
// The proxy applies the rules the CA would: it signs only after its own
// policy allows the login (the policy it follows from the CA, cached on
// disk), one principal, the role's forwarding extensions, the same key
// id form, a lifetime of minutes, the source address when it dials the
// node directly. teleport-authkeys then checks the user and login against
// the node's own policy cache, as for every session certificate. A refusal
// from the CA is final: only an unreachable CA lets the proxy sign.

// fileSessionSigner is the session signer's private key in the data
// directory (OpenSSH format, mode 0600).
const fileSessionSigner = "session_signer"

// caRetryAfter is how long after the CA failed to answer the proxy signs
// at once instead of trying the CA first; caSignTimeout bounds one try.
const (
	caRetryAfter  = 30 * time.Second
	caSignTimeout = 5 * time.Second
)

// loadOrCreateSessionSigner reads the session signer, making it on first
// use. A damaged file is an error, never silently replaced: nodes trust
// the registered key.
func loadOrCreateSessionSigner(dir string) (ssh.Signer, error) {
	path := filepath.Join(dir, fileSessionSigner)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		blk, err := ssh.MarshalPrivateKey(priv, "teleport-proxy session signer")
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
			return nil, fmt.Errorf("writing the session signer: %w", err)
		}
		return ssh.NewSignerFromKey(priv)
	}
	if err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("session signer %s is damaged (%v): restore it from a backup, or remove it and restart the proxy while the CA is reachable so that a new one is registered", path, err)
	}
	if s.PublicKey().Type() != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("session signer %s is a %s key, not ed25519", path, s.PublicKey().Type())
	}
	return s, nil
}

func authorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// sessionSigner returns a signer with a session certificate for the
// login: from the CA, or, while the CA is unreachable, signed here.
func (p *Proxy) sessionSigner(ctx context.Context, pol *policy, node nodeInfo, user, login, sid string, source []string) (ssh.Signer, error) {
	if !p.caDown() {
		now := p.cfg.Clock()
		signer, err := p.caSessionSigner(ctx, user, login, node.Name, sid, source)
		if err == nil || !caUnavailable(ctx, err) {
			return signer, err
		}
		p.caFailed.Store(now.UnixNano())
		p.log.Warn("the CA did not answer for a session certificate; signing it with the proxy's session signer", "err", err, "node", node.Name, "user", user)
	}
	return p.localSessionSigner(pol, node, user, login, sid, source)
}

// caDown reports whether the CA failed to answer within caRetryAfter:
// then the proxy does not wait on it for what it can do without it.
func (p *Proxy) caDown() bool {
	failed := p.caFailed.Load()
	return failed != 0 && p.cfg.Clock().Sub(time.Unix(0, failed)) <= caRetryAfter
}

// caUnavailable tells an unreachable or failing CA (the proxy may sign
// itself) from a CA that answered no (final).
func caUnavailable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false // the user went away
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Status >= 500
	}
	return errors.Is(err, errNoAnswer)
}

// errNoAnswer marks transport failures of the session-certificate call:
// no connection, a timeout, an answer that is not the API's.
var errNoAnswer = errors.New("the CA did not answer")

// caSessionSigner asks the CA for the session certificate.
func (p *Proxy) caSessionSigner(ctx context.Context, user, login, node, sid string, source []string) (ssh.Signer, error) {
	cctx, cancel := context.WithTimeout(ctx, caSignTimeout)
	defer cancel()
	res, err := p.cl.Load().SessionCert(cctx, api.SessionCertRequest{
		User: user, Login: login, Node: node, SessionID: sid,
		PublicKey: string(ssh.MarshalAuthorizedKey(p.sessionKey.PublicKey())),
		TTL:       api.Duration(sessionLogin), SourceAddress: source,
	})
	if err != nil {
		var ae *api.Error
		if !errors.As(err, &ae) {
			err = fmt.Errorf("%w: %w", errNoAnswer, err)
		}
		return nil, fmt.Errorf("session certificate: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(res.Certificate))
	if err != nil {
		return nil, err
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok || !keysEqual(cert.Key, p.sessionKey.PublicKey()) {
		return nil, errors.New("session certificate: the CA returned a certificate for another key")
	}
	if err := sessionCertClock(cert, node, p.cfg.Clock()); err != nil {
		return nil, err
	}
	return ssh.NewCertSigner(cert, p.sessionKey)
}

// filePolicyConfirmed holds when the CA last confirmed the policy (Unix
// seconds), so that a proxy restarted while the CA is down knows how old
// its cached policy is. Written at most once a minute.
const filePolicyConfirmed = "policy_confirmed"

// confirmPolicy records that the CA answered a policy poll.
func (p *Proxy) confirmPolicy() {
	now := p.cfg.Clock().Unix()
	if prev := p.polContact.Swap(now); now-prev >= 60 {
		if err := atomicfile.WriteFile(filepath.Join(p.cfg.DataDir, filePolicyConfirmed), []byte(strconv.FormatInt(now, 10)+"\n"), 0o600); err != nil {
			p.log.Warn("recording when the policy was confirmed", "err", err)
		}
	}
}

// loadConfirmed reads filePolicyConfirmed; 0 (never) when it is missing
// or damaged, which keeps the proxy from signing on an unknown-age policy.
func loadConfirmed(dir string) int64 {
	b, err := os.ReadFile(filepath.Join(dir, filePolicyConfirmed))
	if err != nil {
		return 0
	}
	t, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || t < 0 {
		return 0
	}
	return t
}

// staleError: the CA is unreachable and the proxy's policy is too old to
// sign on; the message is for the user.
type staleError struct{ msg string }

func (e *staleError) Error() string { return e.msg }

// localSessionSigner signs the session certificate with the proxy's
// session signer, after checking the login against the proxy's policy
// again, and audits it.
func (p *Proxy) localSessionSigner(pol *policy, node nodeInfo, user, login, sid string, source []string) (ssh.Signer, error) {
	now := p.cfg.Clock()
	confirmed := time.Unix(p.polContact.Load(), 0)
	if age := now.Sub(confirmed); p.polContact.Load() == 0 || age > p.cfg.MaxPolicyAge {
		return nil, &staleError{fmt.Sprintf("the CA is unreachable and this proxy last heard its policy %s ago (more than %s): "+
			"new sessions wait for the CA; tell your administrator", api.SkewString(age), p.cfg.MaxPolicyAge)}
	}
	perms, err := pol.allow(user, login, node.ProxyNode)
	if err != nil {
		return nil, err
	}
	var sb [8]byte
	serial := uint64(0)
	for serial == 0 {
		if _, err := rand.Read(sb[:]); err != nil {
			return nil, err
		}
		serial = binary.BigEndian.Uint64(sb[:])
	}
	cert := &ssh.Certificate{
		Key:             p.sessionKey.PublicKey(),
		Serial:          serial,
		CertType:        ssh.UserCert,
		KeyId:           fmt.Sprintf("user=%s proxy=%s session=%s", user, p.Name(), sid),
		ValidPrincipals: []string{login},
		ValidAfter:      uint64(now.Add(-api.CertBackdate).Unix()),
		ValidBefore:     uint64(now.Add(sessionLogin).Unix()),
		Permissions:     ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
	}
	if perms.AgentForwarding {
		cert.Permissions.Extensions["permit-agent-forwarding"] = ""
	}
	if perms.PortForwarding {
		cert.Permissions.Extensions["permit-port-forwarding"] = ""
	}
	if perms.X11Forwarding {
		cert.Permissions.Extensions["permit-X11-forwarding"] = ""
	}
	if len(source) > 0 {
		cert.Permissions.CriticalOptions = map[string]string{"source-address": strings.Join(source, ",")}
	}
	if err := cert.SignCert(rand.Reader, p.sessionSigning); err != nil {
		return nil, fmt.Errorf("signing the session certificate: %w", err)
	}
	ev := event("session.cert", user, true, "")
	ev.Fields["signer"], ev.Fields["serial"] = "proxy", fmt.Sprint(serial)
	ev.Fields["login"], ev.Fields["node"], ev.Fields["session"] = login, node.Name, sid
	p.events.add(ev)
	return ssh.NewCertSigner(cert, p.sessionKey)
}
