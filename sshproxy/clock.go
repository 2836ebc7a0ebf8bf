package sshproxy

import (
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// Clock skew between the CA, the proxy and the nodes: the CA starts every
// certificate api.CertBackdate early, which absorbs a few minutes. Past
// that, a certificate is refused for its time alone, and the proxy says
// so in words that name the clocks, since "Permission denied" or "cert is
// not yet valid" would send the user after the wrong problem.

// clockLayout is how times appear in clock messages: the CA, the proxy
// and the user may be in different time zones, so UTC.
const clockLayout = "2006-01-02 15:04:05 UTC"

// clockRefusal explains a user certificate refused by the checker only
// because of its validity window, or returns "". The certificate is
// checked again as if at the start of its window: if it passes then, its
// CA, signature, principal and serial are good and what failed is the
// time.
func (p *Proxy) clockRefusal(pol *policy, conn ssh.ConnMetadata, cert *ssh.Certificate) string {
	if cert.ValidAfter >= cert.ValidBefore || cert.ValidAfter > 1<<62 {
		return ""
	}
	cc := p.userCertChecker(pol)
	start := time.Unix(int64(cert.ValidAfter), 0)
	cc.Clock = func() time.Time { return start }
	if _, err := cc.Authenticate(conn, cert); err != nil {
		return ""
	}
	now := p.cfg.Clock()
	signed := start.Add(api.CertBackdate) // by the CA's clock
	if now.Before(start) {
		return fmt.Sprintf("your certificate is valid from %s, but this proxy's clock says %s: "+
			"the clocks of the CA and this proxy differ by about %s; ask your administrator to check NTP (timedatectl) on both",
			utc(start), utc(now), api.SkewString(signed.Sub(now)))
	}
	return fmt.Sprintf("your certificate expired at %s by this proxy's clock, which says %s; get a new one with teleport-keyhelper login. "+
		"If you got it just now, the clocks of the CA and this proxy differ by about %s (the CA signed it at %s by its clock): "+
		"ask your administrator to check NTP (timedatectl) on both",
		utc(time.Unix(int64(cert.ValidBefore), 0)), utc(now), api.SkewString(now.Sub(signed)), utc(signed))
}

// clockError is a session certificate that the proxy's clock puts outside
// its validity: the clocks of the CA and the proxy differ. Its message is
// for the user.
type clockError struct{ msg string }

func (e *clockError) Error() string { return e.msg }

// sessionCertClock checks that a session certificate the CA just issued
// is valid by the proxy's clock, give or take api.CertBackdate: the
// node's sshd checks it with the node's clock, which may be nearer the
// CA's than the proxy's is; but a certificate that far outside its window
// here would most likely earn a bare refusal there.
func sessionCertClock(cert *ssh.Certificate, node string, now time.Time) error {
	from := time.Unix(int64(min(cert.ValidAfter, 1<<62)), 0)
	to := time.Unix(int64(min(cert.ValidBefore, 1<<62)), 0)
	if !now.Before(from.Add(-api.CertBackdate)) && now.Before(to.Add(api.CertBackdate)) {
		return nil
	}
	skew := api.SkewString(from.Add(api.CertBackdate).Sub(now))
	window := "valid from " + utc(from)
	if now.After(to) {
		window = "valid until " + utc(to)
	}
	return &clockError{fmt.Sprintf("the CA issued the session certificate for node %s %s, but this proxy's clock says %s: "+
		"the clocks of the CA and this proxy differ by about %s; tell your administrator to check NTP (timedatectl) on both",
		node, window, utc(now), skew)}
}

func utc(t time.Time) string { return t.UTC().Format(clockLayout) }
