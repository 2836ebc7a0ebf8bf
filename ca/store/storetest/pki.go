package storetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a throwaway certificate authority with one server certificate
// (for 127.0.0.1 and localhost) and one client certificate, written as PEM
// files (keys mode 0600) in Dir.
type PKI struct {
	Dir                    string
	CAFile                 string
	ServerCert, ServerKey  string
	ClientCert, ClientKey  string
	caCert                 *x509.Certificate
	caKey                  *ecdsa.PrivateKey
	serialNumber, notAfter int64
}

// NewPKI makes a PKI in a new directory under t.TempDir().
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p, err := newPKI(t.TempDir())
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return p
}

func newPKI(dir string) (*PKI, error) {
	p := &PKI{
		Dir:        dir,
		CAFile:     filepath.Join(dir, "ca.crt"),
		ServerCert: filepath.Join(dir, "server.crt"), ServerKey: filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.crt"), ClientKey: filepath.Join(dir, "client.key"),
		notAfter: time.Now().Add(24 * time.Hour).Unix(),
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := p.template("storetest CA")
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	if p.caCert, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	p.caKey = key
	if err := writePEM(p.CAFile, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	server := p.template("127.0.0.1")
	server.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	server.DNSNames = []string{"localhost"}
	server.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if err := p.issue(server, p.ServerCert, p.ServerKey); err != nil {
		return nil, err
	}
	client := p.template("storetest client")
	client.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return p, p.issue(client, p.ClientCert, p.ClientKey)
}

func (p *PKI) template(cn string) *x509.Certificate {
	p.serialNumber++
	return &x509.Certificate{
		SerialNumber: big.NewInt(p.serialNumber),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Unix(p.notAfter, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

// issue signs tmpl with the CA for a new key and writes both.
func (p *PKI) issue(tmpl *x509.Certificate, certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(certFile, "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writePEM(keyFile, "PRIVATE KEY", kder, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

func (p *PKI) pool() (*x509.CertPool, error) {
	b, err := os.ReadFile(p.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("storetest: no certificate in %s", p.CAFile)
	}
	return pool, nil
}

// ClientTLS returns the TLS configuration of a client that trusts the PKI's
// CA and presents its client certificate.
func (p *PKI) ClientTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
	if err != nil {
		return nil, err
	}
	pool, err := p.pool()
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
