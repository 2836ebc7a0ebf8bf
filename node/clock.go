package node

import (
	"time"

	"github.com/opensshca/suite/ca/api"
)

// maxClockSkew is how far the node's clock may be from the CA's before
// teleport-node warns. Certificates start api.CertBackdate early and the
// proxy's session certificates last four minutes, so logins keep working
// up to a few minutes of difference; the warning comes before.
const maxClockSkew = time.Minute

// checkClock compares the node's clock with the CA's, as the Date header
// of the last answer gives it, and logs a warning when they differ by
// more than maxClockSkew. It runs after every policy poll: sshd checks
// every certificate against this machine's clock, and a node whose clock
// drifts starts refusing logins with nothing but "Certificate invalid" in
// its auth log.
func (r *Runner) checkClock() {
	now := r.cfg.Now()
	skew, ok := r.client().ClockSkew(now)
	if !ok || skew.Abs() <= maxClockSkew {
		return
	}
	dir := "behind"
	if skew < 0 {
		dir = "ahead of"
	}
	r.cfg.Log.Warn("this node's clock is "+api.SkewString(skew)+" "+dir+" the CA's: sshd checks certificates with this clock, "+
		"so logins are refused once the difference passes a few minutes; check NTP (timedatectl)",
		"node_clock", now.UTC().Format(time.RFC3339), "ca_clock", now.Add(skew).UTC().Format(time.RFC3339), "skew", skew.String())
}
