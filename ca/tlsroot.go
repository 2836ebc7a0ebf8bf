package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opensshca/suite/internal/atomicfile"
)

// TLS root files. The root is ECDSA P-256 whatever the SSH CA key type:
// browsers do not accept ed25519 server certificates.
const (
	fileTLSRootKey    = "tls_root.key"
	fileTLSRootCert   = "tls_root.crt"
	fileTLSServerKey  = "tls_server.key"
	fileTLSServerCert = "tls_server.crt"

	tlsRootLifetime   = 10 * 365 * 24 * time.Hour
	tlsServerLifetime = 90 * 24 * time.Hour
)

// tlsRoot is the X.509 root that issues the API's server certificate and
// the client identities of nodes, proxies and keyhelper devices.
type tlsRoot struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// Pin returns "sha256:<hex>" of the root's SubjectPublicKeyInfo, the value
// clients pass as --ca-pin.
func (r *tlsRoot) Pin() string { return PinOf(r.cert) }

// PinOf returns the pin of a certificate.
func PinOf(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// PEM returns the root certificate in PEM form.
func (r *tlsRoot) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.cert.Raw})
}

// randomSerial returns a positive, non-zero 127-bit X.509 serial.
func randomSerial(r io.Reader) (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	b[0] |= 0x01 // positive and non-zero
	return new(big.Int).SetBytes(b), nil
}

func createTLSRoot(dir string, r io.Reader) error {
	keyPEM, certPEM, err := newTLSRoot(r)
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, fileTLSRootKey), keyPEM, 0o600); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, fileTLSRootCert), certPEM, 0o600)
}

// newTLSRoot makes a root key and its self-signed certificate, both PEM.
func newTLSRoot(r io.Reader) (keyPEM, certPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), r)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial(r)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "teleport-ca root", Organization: []string{"teleport-ca"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(tlsRootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(r, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: creating TLS root: %w", err)
	}
	if keyPEM, err = marshalPKCS8(key); err != nil {
		return nil, nil, fmt.Errorf("ca: encoding the TLS root key: %w", err)
	}
	return keyPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func writePKCS8(path string, k crypto.Signer) error {
	b, err := marshalPKCS8(k)
	if err != nil {
		return fmt.Errorf("ca: encoding %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

func marshalPKCS8(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func readPKCS8(path string) (crypto.Signer, error) {
	b, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	return parsePKCS8(b, path)
}

// parsePKCS8 parses a PEM PKCS#8 private key; path says where it came from.
func parsePKCS8(b []byte, path string) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("ca: private key %s is damaged (no PKCS#8 PEM block); restore it from backup", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: private key %s is damaged (%v); restore it from backup", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca: private key %s has unsupported type %T", path, k)
	}
	return s, nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return parseCertPEM(b, path)
}

// parseCertPEM parses a PEM certificate; path says where it came from.
func parseCertPEM(b []byte, path string) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("ca: certificate %s is damaged (no CERTIFICATE PEM block)", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ca: certificate %s is damaged: %w", path, err)
	}
	return c, nil
}

func loadTLSRoot(dir string) (*tlsRoot, error) {
	key, err := readPKCS8(filepath.Join(dir, fileTLSRootKey))
	if err != nil {
		return nil, err
	}
	cert, err := readCert(filepath.Join(dir, fileTLSRootCert))
	if err != nil {
		return nil, err
	}
	return checkTLSRoot(key, cert)
}

// checkTLSRoot checks that cert is a CA certificate for key.
func checkTLSRoot(key crypto.Signer, cert *x509.Certificate) (*tlsRoot, error) {
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("ca: %s does not belong to %s; restore the pair from backup", fileTLSRootCert, fileTLSRootKey)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("ca: %s is not a CA certificate", fileTLSRootCert)
	}
	return &tlsRoot{cert: cert, key: key}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// issueServerCert makes a server certificate for names (DNS names or IP
// addresses).
func (r *tlsRoot) issueServerCert(names []string, now time.Time, rnd io.Reader) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rnd)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial(rnd)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "teleport-ca"},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(tlsServerLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rnd, tmpl, r.cert, key.Public(), r.key)
	if err != nil {
		return nil, fmt.Errorf("ca: issuing TLS server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, r.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// serverCerts hands out the API's TLS server certificate, reissuing it from
// the root when a third of its life remains, so a long-running CA never
// serves an expired certificate.
type serverCerts struct {
	root  *tlsRoot
	names []string
	dir   string
	clock func() time.Time
	rand  io.Reader

	mu  sync.Mutex
	cur *tls.Certificate
}

func (s *serverCerts) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	if s.cur != nil && !needsRenewal(s.cur.Leaf, now) {
		return s.cur, nil
	}
	if s.cur == nil {
		if c, err := s.loadSaved(); err == nil && !needsRenewal(c.Leaf, now) && sameNames(c.Leaf, s.names) {
			s.cur = c
			return c, nil
		}
	}
	c, err := s.root.issueServerCert(s.names, now, s.rand)
	if err != nil {
		return nil, err
	}
	if err := s.save(c); err != nil {
		return nil, err
	}
	s.cur = c
	return c, nil
}

func needsRenewal(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return now.After(c.NotAfter.Add(-life/3)) || now.Before(c.NotBefore)
}

func sameNames(c *x509.Certificate, names []string) bool {
	have := map[string]bool{}
	for _, n := range c.DNSNames {
		have[n] = true
	}
	for _, ip := range c.IPAddresses {
		have[ip.String()] = true
	}
	if len(have) != len(names) {
		return false
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			n = ip.String()
		}
		if !have[n] {
			return false
		}
	}
	return true
}

func (s *serverCerts) loadSaved() (*tls.Certificate, error) {
	key, err := readPKCS8(filepath.Join(s.dir, fileTLSServerKey))
	if err != nil {
		return nil, err
	}
	leaf, err := readCert(filepath.Join(s.dir, fileTLSServerCert))
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		return nil, errors.New("ca: saved server certificate does not match its key")
	}
	if err := leaf.CheckSignatureFrom(s.root.cert); err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw, s.root.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func (s *serverCerts) save(c *tls.Certificate) error {
	if err := writePKCS8(filepath.Join(s.dir, fileTLSServerKey), c.PrivateKey.(crypto.Signer)); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(s.dir, fileTLSServerCert),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600)
}
