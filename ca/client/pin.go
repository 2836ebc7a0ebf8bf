package client

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
)

// pinPrefix starts every pin.
const pinPrefix = "sha256:"

// ParsePin checks that s has the form "sha256:<64 hex digits>" and returns
// the SHA-256 digest it holds.
func ParsePin(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(s, pinPrefix)
	if !ok {
		return nil, fmt.Errorf("client: pin must start with %q (got %q)", pinPrefix, shorten(s))
	}
	if len(h) != 2*sha256.Size {
		return nil, fmt.Errorf("client: pin must have %d hex digits after %q, got %d", 2*sha256.Size, pinPrefix, len(h))
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("client: pin %q is not hexadecimal", shorten(s))
	}
	// Pins are also compared as text (PinOfPEM, a device's saved pin):
	// only the form PinOf writes may pass here.
	if hex.EncodeToString(b) != h {
		return nil, fmt.Errorf("client: pin %q must be written in lower case, as caadm ca show prints it", shorten(s))
	}
	return b, nil
}

// PinOf returns the pin of cert: "sha256:" and the hex SHA-256 of its
// SubjectPublicKeyInfo.
func PinOf(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return pinPrefix + hex.EncodeToString(sum[:])
}

// PinOfPEM returns the pin of the first certificate in a PEM text, or ""
// when there is none.
func PinOfPEM(s string) string {
	blk, _ := pem.Decode([]byte(s))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return ""
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return ""
	}
	return PinOf(c)
}

// PinMismatchError reports a server whose certificate chain holds no key
// with the expected pin.
type PinMismatchError struct {
	// Want holds the expected pins.
	Want []string
	// Got holds the pins of the certificates the server presented, leaf
	// first.
	Got []string
}

func (e *PinMismatchError) Error() string {
	return fmt.Sprintf("client: the server's TLS key does not match the pin: want %s, server presented %s; "+
		"check the pin with the teleport-ca administrator (caadm ca show)",
		strings.Join(e.Want, " or "), orNone(e.Got))
}

func orNone(pins []string) string {
	if len(pins) == 0 {
		return "no certificate"
	}
	return strings.Join(pins, ", ")
}

// verifyPinned accepts chain (leaf first) if one of its certificates has
// the pin, and the leaf chains to that certificate and is valid for host.
func verifyPinned(chain []*x509.Certificate, pin []byte, host string) error {
	pinned, got := findPinned(chain, pin)
	if pinned == nil {
		return &PinMismatchError{Want: []string{pinPrefix + hex.EncodeToString(pin)}, Got: got}
	}
	roots := x509.NewCertPool()
	roots.AddCert(pinned)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		DNSName:       host,
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("client: server certificate does not verify against the pinned key: %w", err)
	}
	return nil
}

// findPinned returns the certificate of chain with the pin, or nil and the
// pins of all of them.
func findPinned(chain []*x509.Certificate, pin []byte) (*x509.Certificate, []string) {
	var got []string
	for _, c := range chain {
		sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		if bytes.Equal(sum[:], pin) {
			return c, nil
		}
		got = append(got, PinOf(c))
	}
	return nil, got
}

func shorten(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
