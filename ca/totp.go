package ca

import (
	"crypto/subtle"
	"io"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// TOTP settings (RFC 6238 as authenticator apps implement it): SHA-1,
// 6 digits, 30 second steps, one step of skew either way.
const (
	totpPeriod = 30
	totpDigits = otp.DigitsSix
	totpSkew   = 1
)

// newTOTP makes a secret for account and returns it with the otpauth URI
// an authenticator app scans.
func newTOTP(issuer, account string, r io.Reader) (secret, uri string, err error) {
	k, err := totp.Generate(totp.GenerateOpts{
		Issuer:      issuer,
		AccountName: account,
		Period:      totpPeriod,
		SecretSize:  20,
		Digits:      totpDigits,
		Algorithm:   otp.AlgorithmSHA1,
		Rand:        r,
	})
	if err != nil {
		return "", "", err
	}
	return k.Secret(), k.URL(), nil
}

// matchTOTP returns the time-step counter whose code equals code, within
// the allowed skew, and whether one did. Callers refuse a counter at or
// below the last one accepted: a code works once.
func matchTOTP(secret, code string, now time.Time) (uint64, bool) {
	if len(code) != 6 {
		return 0, false
	}
	cur := uint64(now.Unix()) / totpPeriod
	found, ok := uint64(0), false
	for d := -totpSkew; d <= totpSkew; d++ {
		c := uint64(int64(cur) + int64(d))
		want, err := hotp.GenerateCodeCustom(secret, c, hotp.ValidateOpts{Digits: totpDigits, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return 0, false
		}
		// Compare every candidate so timing does not reveal which matched.
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			found, ok = c, true
		}
	}
	return found, ok
}
