package sshproxy

import (
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// A user certificate the proxy refuses before authentication ends would
// earn only ssh's "Permission denied (publickey)". The proxy sends the
// reason as an authentication banner, which ssh prints on stderr, so the
// user learns what to fix. The banner says only what the certificate
// itself shows (its type, its CA, its serial) or the user's own standing
// in the policy; the audit event holds the checker's full reason.

// refusedBanner wraps err with a banner carrying msg.
func refusedBanner(err error, msg string) error {
	return &ssh.BannerError{Err: err, Message: "teleport-proxy: " + msg + "\n"}
}

// certRefusal is what a user is told about a certificate the checker
// refused for other reasons than its validity window (clockRefusal).
func certRefusal(pol *policy, cert *ssh.Certificate, err error) string {
	switch {
	case cert.CertType != ssh.UserCert:
		return "a host certificate was offered as a user certificate; log in with your user certificate (teleport-keyhelper login)"
	case !keysEqual(cert.SignatureKey, pol.userCA):
		return fmt.Sprintf("certificate %.64q is not signed by this cluster's user CA; get one with teleport-keyhelper login", cert.KeyId)
	case pol.isRevoked("user", cert.Serial):
		return fmt.Sprintf("your certificate (serial %d) was revoked; get a new one with teleport-keyhelper login", cert.Serial)
	}
	return "certificate refused: " + strings.TrimPrefix(err.Error(), "ssh: ")
}

// refusedTunnel audits a node refused on the tunnel listener: a host
// certificate from a CA the cluster does not trust, for another node's
// name, expired, or for a name that is not registered.
func (p *Proxy) refusedTunnel(node, remote, reason string) {
	ev := event("tunnel.refused", "", false, remote)
	ev.Fields["node"], ev.Fields["reason"] = node, truncate(reason, 512)
	p.events.add(ev)
}
