package api

import "time"

// CertBackdate is how far before its own clock's "now" the CA starts every
// certificate it signs (ValidAfter = now - CertBackdate), so that a
// verifier whose clock is behind the CA's by up to this much accepts a
// new certificate at once. ValidBefore is not moved: the lifetime a
// certificate is asked for still counts from the CA's now. A client can
// estimate the CA's clock at signing time as ValidAfter + CertBackdate.
//
// Five minutes covers the ±2 minutes of skew the suite promises between
// the CA, the proxies and the nodes with room to spare (docs/SECURITY.md,
// Issuance rules).
const CertBackdate = 5 * time.Minute

// SkewString writes a clock difference for people: its absolute value,
// rounded to the minute from a minute up ("1h0m", "2m") and to the second
// below ("40s").
func SkewString(d time.Duration) string {
	d = d.Abs()
	if d < time.Minute {
		return d.Round(time.Second).String()
	}
	s := d.Round(time.Minute).String()
	return s[:len(s)-2] // "1h0m0s" -> "1h0m"
}

// RenewAt is when a certificate valid from validAfter to validBefore is
// due for renewal: at two thirds of the life it was issued for, which
// starts at the CA's clock at signing, ValidAfter + CertBackdate, not at
// ValidAfter (counting the backdating in would renew short-lived
// certificates at once).
func RenewAt(validAfter, validBefore time.Time) time.Time {
	issued := validAfter.Add(CertBackdate)
	if !issued.Before(validBefore) {
		issued = validAfter
	}
	return issued.Add(validBefore.Sub(issued) * 2 / 3)
}
