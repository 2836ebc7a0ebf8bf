package keyhelper

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// maxClockSkew is how far this machine's clock may be from the CA's
// before the keyhelper warns. The CA starts certificates
// api.CertBackdate early, so a few minutes still work; past a minute the
// user hears of it before anything fails.
const maxClockSkew = time.Minute

// clockLayout shows times in clock messages: in UTC, since the CA may be
// in another time zone.
const clockLayout = "2006-01-02 15:04:05 UTC"

// skewPhrase says how this machine's clock stands against the CA's, given
// how far the CA's is ahead (negative: behind): "1h0m behind the CA's".
func skewPhrase(caAhead time.Duration) string {
	dir := "behind"
	if caAhead < 0 {
		dir = "ahead of"
	}
	return api.SkewString(caAhead) + " " + dir + " the CA's"
}

// clockWarning returns what to tell the user about the clocks after cert
// arrived at now, or "". skew is how far the CA's clock is ahead of this
// machine's, from the Date header of the CA's answer (known is false when
// there was none).
func clockWarning(cert *ssh.Certificate, now time.Time, skew time.Duration, known bool) string {
	if known && skew.Abs() > maxClockSkew {
		return fmt.Sprintf("this machine's clock says %s, but the CA's says %s: this clock is %s; "+
			"certificates look not yet valid or expired here, and ssh-agent drops them at the wrong time: "+
			"fix the clock (timedatectl; check NTP)",
			now.UTC().Format(clockLayout), now.Add(skew).UTC().Format(clockLayout), skewPhrase(skew))
	}
	if from := time.Unix(int64(min(cert.ValidAfter, maxUnix)), 0); now.Before(from) {
		return fmt.Sprintf("the certificate is valid only from %s, but this machine's clock says %s: "+
			"is this machine's clock right? (timedatectl; check NTP)",
			from.UTC().Format(clockLayout), now.UTC().Format(clockLayout))
	}
	return ""
}

// withSkew adds the clock difference to an *ExpiredError when it is known
// and more than maxClockSkew: the certificate expired by this machine's
// clock only.
func withSkew(err error, skew time.Duration, known bool) error {
	var ee *ExpiredError
	if known && skew.Abs() > maxClockSkew && errors.As(err, &ee) {
		ee.Skew = skew
	}
	return err
}

// clockSkew is the CA client's ClockSkew, when the client has one (the
// tests' fake CA has not).
func (d *Daemon) clockSkew(now time.Time) (time.Duration, bool) {
	if c, ok := d.api.(interface {
		ClockSkew(time.Time) (time.Duration, bool)
	}); ok {
		return c.ClockSkew(now)
	}
	return 0, false
}
