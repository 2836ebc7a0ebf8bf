package main

import (
	"bytes"
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
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/internal/testbin"
)

// rootPool returns a pool holding the CA's TLS root, as the admin API
// reports it.
func rootPool(t *testing.T, c *testbin.CA) *x509.CertPool {
	t.Helper()
	info, err := c.Admin().AdminCA(bg(t))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(parsePEMCert(t, []byte(info.TLSRoot)))
	return pool
}

// The pinned client reaches the API; a client with another pin is told
// the server is not the one it pinned.
func TestHTTPSPin(t *testing.T) {
	t.Parallel()
	c := testbin.StartCA(t)
	ctx := bg(t)
	hc := c.HTTPS()
	if _, err := hc.Ping(ctx); err != nil {
		t.Fatalf("Ping with the printed pin: %v", err)
	}
	info, err := hc.CA(ctx)
	if err != nil {
		t.Fatalf("CA with the printed pin: %v", err)
	}
	adm, err := c.Admin().AdminCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(info, adm) {
		t.Errorf("HTTPS CA info %+v differs from admin CA info %+v", info, adm)
	}
	if info.Pin != c.Pin || !strings.HasPrefix(info.UserCA, "ssh-ed25519 ") {
		t.Errorf("CA info = %+v, want pin %s and an ed25519 user CA", info, c.Pin)
	}

	wrong := "sha256:" + strings.Repeat("00", 32)
	wc, err := client.New(c.URL(), client.Options{Pin: wrong})
	if err != nil {
		t.Fatal(err)
	}
	_, err = wc.Ping(ctx)
	var pe *client.PinMismatchError
	if !errors.As(err, &pe) {
		t.Fatalf("Ping with a wrong pin: err = %v (%T), want *client.PinMismatchError", err, err)
	}
	if !slices.Contains(pe.Got, c.Pin) {
		t.Errorf("server presented %q, want the root %s among them", pe.Got, c.Pin)
	}
}

// selfSigned writes a self-signed server certificate for 127.0.0.1 and its
// key, and returns their paths and the certificate's DER.
func selfSigned(t *testing.T) (certFile, keyFile string, der []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: "operator's own certificate"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})))
	return certFile, keyFile, der
}

// With --tls-cert and --tls-key the server presents the operator's
// certificate instead of one from its own TLS root.
func TestOperatorTLSCert(t *testing.T) {
	t.Parallel()
	certFile, keyFile, der := selfSigned(t)
	c := testbin.StartCA(t, "--tls-cert", certFile, "--tls-key", keyFile)
	pool := x509.NewCertPool()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(cert)

	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", c.Listen,
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake trusting only the operator's certificate: %v", err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if !bytes.Equal(leaf.Raw, der) {
		t.Errorf("server presented %q, not the operator's certificate", leaf.Subject)
	}

	ctx := bg(t)
	hc, err := client.New(c.URL(), client.Options{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hc.Ping(ctx); err != nil {
		t.Errorf("Ping trusting the operator's certificate: %v", err)
	}
	// The CA's own root is not in that chain, so its pin does not match.
	_, err = c.HTTPS().Ping(ctx)
	var pe *client.PinMismatchError
	if !errors.As(err, &pe) {
		t.Errorf("Ping with the CA root pin: err = %v, want *client.PinMismatchError", err)
	}
}

// A request body over api.MaxBodyBytes is answered 413.
func TestBodyLimit(t *testing.T) {
	t.Parallel()
	c := testbin.StartCA(t)
	hc := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: rootPool(t, c)}},
		Timeout:   10 * time.Second,
	}
	t.Cleanup(hc.CloseIdleConnections)
	for _, tt := range []struct {
		name string
		size int
		want int
	}{
		{"just under the limit", api.MaxBodyBytes - 100, http.StatusUnauthorized},
		{"over the limit", api.MaxBodyBytes + 1024, http.StatusRequestEntityTooLarge},
		{"far over the limit", 1 << 20, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"user":"alice","password":"` + strings.Repeat("p", tt.size-40) + `","totp":"123456"}`
			req, err := http.NewRequestWithContext(bg(t), http.MethodPost, c.URL()+api.PathLogin, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("POST %d bytes: %v", len(body), err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			if resp.StatusCode != tt.want {
				t.Fatalf("POST %d bytes: status %d, want %d; body %s", len(body), resp.StatusCode, tt.want, b)
			}
			if tt.want == http.StatusRequestEntityTooLarge {
				var e api.Error
				if err := json.Unmarshal(b, &e); err != nil || e.Code != api.CodeTooLarge {
					t.Errorf("413 body = %s, want an api.Error with code %q", b, api.CodeTooLarge)
				}
			}
		})
	}
}

// A client that sends part of its request headers and stalls is
// disconnected after the server's ReadHeaderTimeout (5 s), as is one that
// never starts TLS, and other clients are served meanwhile.
func TestSlowHeaders(t *testing.T) {
	t.Parallel()
	c := testbin.StartCA(t)
	pool := rootPool(t, c)
	hc := c.HTTPS()

	const stalled = 10
	start := time.Now()
	conns := make([]net.Conn, stalled, stalled+1)
	for i := range conns {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", c.Listen,
			&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "POST /v1/login HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
		conns[i] = conn
	}

	// A client that opens TCP and never starts TLS is dropped as well.
	raw, err := net.DialTimeout("tcp", c.Listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	// Meanwhile the API answers others, repeatedly.
	for range 5 {
		t0 := time.Now()
		if _, err := hc.Ping(bg(t)); err != nil {
			t.Fatalf("Ping while %d clients stall: %v", stalled, err)
		}
		if d := time.Since(t0); d > 2*time.Second {
			t.Errorf("Ping while %d clients stall took %v", stalled, d)
		}
		time.Sleep(200 * time.Millisecond)
	}

	conns = append(conns, raw)
	for i, conn := range conns {
		if err := conn.SetReadDeadline(start.Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(conn)
		elapsed := time.Since(start)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection %d: server kept a stalled connection open for %v", i, elapsed)
		}
		if elapsed > 8*time.Second {
			t.Errorf("connection %d: closed by the server only after %v, want within 8 s", i, elapsed)
		}
		if i == 0 && elapsed < 3*time.Second {
			t.Errorf("connection %d: closed after %v, before the header timeout (err %v, read %q)", i, elapsed, err, got)
		}
		if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 4") {
			t.Errorf("connection %d: server answered a partial request with %q", i, got)
		}
	}
}
