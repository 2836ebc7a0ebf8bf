package keyhelper

import (
	"fmt"
	"math"
	"time"

	"golang.org/x/crypto/ssh"
)

// ExpiredError reports a certificate whose validity has ended.
type ExpiredError struct {
	ValidBefore time.Time
	// Skew, when not zero, is how far the CA's clock is ahead of this
	// machine's (negative: behind), set when it is known to be off by
	// more than a minute: the certificate may be fine, the clock is not.
	Skew time.Duration
}

func (e *ExpiredError) Error() string {
	msg := fmt.Sprintf("keyhelper: the certificate expired at %s", e.ValidBefore.Format(time.RFC3339))
	if e.Skew != 0 {
		msg += " by this machine's clock, which is " + skewPhrase(e.Skew)
	}
	return msg
}

// AgentLifetime returns the agent lifetime, in seconds, of a certificate
// valid before validBefore (Unix seconds, as in the certificate) at now:
// the whole seconds left, so that the agent entry never outlives the
// certificate, clamped to [1, math.MaxUint32] (PROTOCOL.agent carries the
// lifetime as a uint32). A certificate without an end
// (ssh.CertTimeInfinity) gets the maximum. A certificate that has expired
// is an *ExpiredError: it must not be added at all.
func AgentLifetime(validBefore uint64, now time.Time) (uint32, error) {
	if validBefore > maxUnix {
		// Far beyond what a uint32 can count from any present time;
		// time.Unix would overflow on the largest values.
		return math.MaxUint32, nil
	}
	end := time.Unix(int64(validBefore), 0)
	left := end.Sub(now) // saturates instead of wrapping
	if left <= 0 {
		return 0, &ExpiredError{ValidBefore: end}
	}
	secs := int64(left / time.Second)
	switch {
	case secs < 1:
		return 1, nil
	case secs > math.MaxUint32:
		return math.MaxUint32, nil
	}
	return uint32(secs), nil
}

// maxUnix is the last second of year 9999, where CertEnd stops.
const maxUnix = 253402300799

// CertEnd returns when cert stops being valid; a certificate without an
// end gives the year 9999.
func CertEnd(cert *ssh.Certificate) time.Time {
	return time.Unix(int64(min(cert.ValidBefore, maxUnix)), 0)
}
