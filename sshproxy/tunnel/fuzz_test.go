package tunnel

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// FuzzDecodeDialRequest checks that any channel extra data a proxy may send
// is either refused with ErrBadDialRequest or decodes to fields within the
// limits that re-encode to the same bytes.
func FuzzDecodeDialRequest(f *testing.F) {
	for _, tt := range wireTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := decodeDialRequest(in)
		if err != nil {
			if !errors.Is(err, ErrBadDialRequest) {
				t.Fatalf("error %v does not wrap ErrBadDialRequest", err)
			}
			return
		}
		if err := r.validate(); err != nil {
			t.Fatalf("accepted %+v, which does not validate: %v", r, err)
		}
		again, err := encodeDialRequest(r)
		if err != nil {
			t.Fatalf("accepted %+v, which does not encode: %v", r, err)
		}
		if !bytes.Equal(again, in) {
			t.Fatalf("re-encoded %x, want %x", again, in)
		}
	})
}

// fuzzSigner is a fixed ed25519 signer, so that the seeds are stable.
func fuzzSigner(t testing.TB, seed byte) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fuzzCert is a certificate for key seed 3, signed by ca with a zero
// nonce (so that its bytes are stable).
func fuzzCert(t testing.TB, ca ssh.Signer, certType uint32, principals ...string) []byte {
	t.Helper()
	c := &ssh.Certificate{
		Key: fuzzSigner(t, 3).PublicKey(), Serial: 1, CertType: certType, KeyId: "web1",
		ValidPrincipals: principals, ValidAfter: uint64(fuzzNow.Add(-time.Hour).Unix()), ValidBefore: uint64(fuzzNow.Add(time.Hour).Unix()),
	}
	if err := c.SignCert(zeroReader{}, ca); err != nil {
		t.Fatal(err)
	}
	return c.Marshal()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

var fuzzNow = time.Date(2026, 11, 21, 7, 0, 0, 0, time.UTC)

// FuzzCheckHostCert: the key a node (or proxy) offers when the tunnel
// is set up is accepted only as a host certificate that names the
// principal, signed by the host CA with an accepted algorithm, valid now,
// with no critical option, and whose signature verifies.
func FuzzCheckHostCert(f *testing.F) {
	ca, other := fuzzSigner(f, 1), fuzzSigner(f, 2)
	f.Add("web1", fuzzCert(f, ca, ssh.HostCert, "web1", "10.0.0.1"))
	f.Add("web2", fuzzCert(f, ca, ssh.HostCert, "web1"))
	f.Add("web1", fuzzCert(f, ca, ssh.HostCert))
	f.Add("web1", fuzzCert(f, ca, ssh.UserCert, "web1"))
	f.Add("web1", fuzzCert(f, other, ssh.HostCert, "web1"))
	f.Add("web1", fuzzSigner(f, 3).PublicKey().Marshal())
	f.Add("", []byte{})
	cas := [][]byte{ca.PublicKey().Marshal()}
	clock := func() time.Time { return fuzzNow }
	f.Fuzz(func(t *testing.T, principal string, blob []byte) {
		key, err := ssh.ParsePublicKey(blob)
		if err != nil {
			return
		}
		cert, err := checkHostCert(principal, key, cas, clock)
		if err != nil {
			if cert != nil {
				t.Fatalf("refused (%v) but returned a certificate", err)
			}
			return
		}
		if cert != key || cert.CertType != ssh.HostCert || !slices.Contains(cert.ValidPrincipals, principal) ||
			!bytes.Equal(cert.SignatureKey.Marshal(), cas[0]) || len(cert.CriticalOptions) != 0 ||
			!slices.Contains(signatureAlgorithms, cert.Signature.Format) {
			t.Fatalf("accepted %+v for %q", cert, principal)
		}
		now := uint64(fuzzNow.Unix())
		if now < cert.ValidAfter || now >= cert.ValidBefore {
			t.Fatalf("accepted a certificate valid %d to %d at %d", cert.ValidAfter, cert.ValidBefore, now)
		}
		// Verify the signature independently of CheckCert.
		c2 := *cert
		c2.Signature = nil
		body := c2.Marshal()
		if err := cert.SignatureKey.Verify(body[:len(body)-4], cert.Signature); err != nil {
			t.Fatalf("accepted a certificate whose signature does not verify: %v", err)
		}
	})
}
