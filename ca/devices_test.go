package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// newDeviceKey makes a device key and its PEM public key, as the daemon
// will.
func newDeviceKey(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func keyhelperToken(t *testing.T, a *Authority, user string) string {
	t.Helper()
	resp, err := a.AddToken(context.Background(), api.AddTokenRequest{Role: TokenKeyhelper, User: user}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Secret
}

func TestRegisterDevice(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	addUser(t, a, "alice", []string{"alice"}, nil)
	addUser(t, a, "bob", []string{"bob"}, nil)
	_, pub := newDeviceKey(t)
	tok := keyhelperToken(t, a, "alice")

	id, err := a.RegisterDevice(ctx, api.RegisterDeviceRequest{Token: tok, User: "alice", PublicKey: pub}, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(id.Certificate))
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.keys.tls.cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("device certificate does not verify as a client certificate: %v", err)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "teleport://keyhelper/alice/"+id.DeviceID || cert.Subject.CommonName != "alice" {
		t.Errorf("device certificate names %v / %q", cert.URIs, cert.Subject.CommonName)
	}

	other := keyhelperToken(t, a, "alice")
	nodeTok, _ := a.AddToken(ctx, api.AddTokenRequest{Role: TokenNode}, "test")
	tests := []struct {
		name string
		req  api.RegisterDeviceRequest
		want error
	}{
		{"token reused", api.RegisterDeviceRequest{Token: tok, User: "alice", PublicKey: pub}, ErrBadToken},
		{"token of another user", api.RegisterDeviceRequest{Token: other, User: "bob", PublicKey: pub}, ErrBadToken},
		{"burnt by the wrong user", api.RegisterDeviceRequest{Token: other, User: "alice", PublicKey: pub}, ErrBadToken},
		{"node token", api.RegisterDeviceRequest{Token: nodeTok.Secret, User: "alice", PublicKey: pub}, ErrBadToken},
		{"not a key", api.RegisterDeviceRequest{Token: keyhelperToken(t, a, "alice"), User: "alice", PublicKey: "x"}, ErrInvalid},
	}
	for _, tt := range tests {
		if _, err := a.RegisterDevice(ctx, tt.req, "192.0.2.1"); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	devs, _ := a.Devices(ctx, "alice")
	if len(devs) != 1 || devs[0].ID != id.DeviceID {
		t.Fatalf("devices = %+v", devs)
	}
}

// deviceClient returns an HTTPS client presenting the device certificate.
func deviceClient(t *testing.T, a *Authority, key *ecdsa.PrivateKey, certPEM string) *http.Client {
	t.Helper()
	blk, _ := pem.Decode([]byte(certPEM))
	pool := x509.NewCertPool()
	pool.AddCert(a.keys.tls.cert)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:      pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{blk.Bytes}, PrivateKey: key}},
	}}}
}

func renew(t *testing.T, c *http.Client, base string) (int, api.DeviceIdentity, api.Error) {
	t.Helper()
	resp, err := c.Post(base+api.PathDeviceRenew, "application/json", nil)
	if err != nil {
		return 0, api.DeviceIdentity{}, api.Error{Message: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var id api.DeviceIdentity
	var e api.Error
	json.Unmarshal(b, &id)
	json.Unmarshal(b, &e)
	return resp.StatusCode, id, e
}

func TestDeviceRenewOverMTLS(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	addUser(t, a, "carol", []string{"carol"}, nil)
	_, base := startServer(t, a)
	key, pub := newDeviceKey(t)
	id, err := a.RegisterDevice(ctx, api.RegisterDeviceRequest{Token: keyhelperToken(t, a, "carol"), User: "carol", PublicKey: pub}, "test")
	if err != nil {
		t.Fatal(err)
	}
	c := deviceClient(t, a, key, id.Certificate)
	status, renewed, e := renew(t, c, base)
	if status != 200 || renewed.DeviceID != id.DeviceID || renewed.Certificate == id.Certificate {
		t.Fatalf("renew: %d %+v %+v", status, renewed, e)
	}

	// Without a client certificate: refused.
	plain := deviceClient(t, a, key, id.Certificate)
	plain.Transport.(*http.Transport).TLSClientConfig.Certificates = nil
	if status, _, _ := renew(t, plain, base); status != 403 {
		t.Fatalf("renew without a client certificate: %d", status)
	}

	// A certificate for the same device id but another key (as if the
	// root had been misused): refused by the key check.
	other, _ := newDeviceKey(t)
	forged := issueForTest(t, a, &other.PublicKey, id.DeviceID, "carol")
	if status, _, _ := renew(t, deviceClient(t, a, other, forged), base); status != 403 {
		t.Fatalf("renew with another key for the device: %d", status)
	}

	// Locked user: refused with the lock; unlocked: works again.
	if err := a.LockUser(ctx, "carol", api.LockRequest{}, "test"); err != nil {
		t.Fatal(err)
	}
	if status, _, e := renew(t, c, base); status != 403 || e.Code != api.CodeLocked {
		t.Fatalf("renew while locked: %d %+v", status, e)
	}
	a.UnlockUser(ctx, "carol", "test")
	if status, _, _ := renew(t, c, base); status != 200 {
		t.Fatalf("renew after unlock: %d", status)
	}

	// Revoked: refused at once, though the certificate is valid.
	if err := a.RevokeDevice(ctx, "carol", id.DeviceID, "test"); err != nil {
		t.Fatal(err)
	}
	if status, _, e := renew(t, c, base); status != 403 || e.Code != api.CodeDeviceRevoked || !strings.Contains(e.Message, "register the device again") {
		t.Fatalf("renew after revocation: %d %+v", status, e)
	}
}

func TestDeviceOfRemovedUserAndForeignCert(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	addUser(t, a, "dan", []string{"dan"}, nil)
	_, base := startServer(t, a)
	key, pub := newDeviceKey(t)
	id, err := a.RegisterDevice(ctx, api.RegisterDeviceRequest{Token: keyhelperToken(t, a, "dan"), User: "dan", PublicKey: pub}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveUser(ctx, "dan", "test"); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := renew(t, deviceClient(t, a, key, id.Certificate), base); status != 403 {
		t.Fatalf("device of a removed user: %d", status)
	}

	// A client certificate from another root fails the TLS handshake.
	b, _ := newTestAuthority(t, nil)
	foreign := issueForTest(t, b, &key.PublicKey, "x", "dan")
	if status, _, e := renew(t, deviceClient(t, a, key, foreign), base); status != 0 {
		t.Fatalf("foreign client certificate got an HTTP answer: %d %+v", status, e)
	}
}

// issueForTest signs a device-shaped client certificate with a's root.
func issueForTest(t *testing.T, a *Authority, pub any, id, user string) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: user},
		URIs:         []*url.URL{{Scheme: "teleport", Host: "keyhelper", Path: "/" + user + "/" + id}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.keys.tls.cert, pub, a.keys.tls.key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
