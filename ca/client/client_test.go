package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// testPKI is a root CA and a server certificate it signed.
type testPKI struct {
	root, leaf *x509.Certificate
	serving    tls.Certificate // leaf then root
}

func newPKI(t *testing.T, hosts ...string) *testPKI {
	t.Helper()
	rootKey := newKey(t)
	rootTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	root := createCert(t, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	leafKey := newKey(t)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "test server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			leafTmpl.IPAddresses = append(leafTmpl.IPAddresses, ip)
		} else {
			leafTmpl.DNSNames = append(leafTmpl.DNSNames, h)
		}
	}
	leaf := createCert(t, leafTmpl, root, &leafKey.PublicKey, rootKey)
	return &testPKI{
		root: root,
		leaf: leaf,
		serving: tls.Certificate{
			Certificate: [][]byte{leaf.Raw, root.Raw},
			PrivateKey:  leafKey,
		},
	}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func createCert(t *testing.T, tmpl, parent *x509.Certificate, pub, priv any) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newTLSServer serves h over TLS with the PKI's chain.
func newTLSServer(t *testing.T, p *testPKI, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.serving}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// newUnixServer serves h on a Unix socket and returns its path.
func newUnixServer(t *testing.T, h http.Handler) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return path
}

func pingHandler(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != api.PathPing {
		writeJSON(w, http.StatusNotFound, api.Error{Code: api.CodeNotFound, Message: "no such path"})
		return
	}
	writeJSON(w, http.StatusOK, api.Ping{Version: "test"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func newTLSClient(t *testing.T, url string, opts Options) *Client {
	t.Helper()
	c, err := New(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRootCAs(t *testing.T) {
	p := newPKI(t, "127.0.0.1")
	srv := newTLSServer(t, p, http.HandlerFunc(pingHandler))
	pool := x509.NewCertPool()
	pool.AddCert(p.root)
	c := newTLSClient(t, srv.URL, Options{RootCAs: pool})
	got, err := c.Ping(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != "test" {
		t.Errorf("Ping = %+v, want version test", got)
	}

	// Without the root, the system pool does not know the server.
	c = newTLSClient(t, srv.URL, Options{})
	_, err = c.Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot reach teleport-ca at "+srv.URL) {
		t.Errorf("Ping with system pool: err = %v, want cannot reach", err)
	}
}

func TestPinMatch(t *testing.T) {
	p := newPKI(t, "127.0.0.1")
	srv := newTLSServer(t, p, http.HandlerFunc(pingHandler))
	for name, cert := range map[string]*x509.Certificate{"root": p.root, "leaf": p.leaf} {
		t.Run(name, func(t *testing.T) {
			c := newTLSClient(t, srv.URL, Options{Pin: PinOf(cert)})
			if _, err := c.Ping(context.Background()); err != nil {
				t.Fatalf("Ping with %s pin: %v", name, err)
			}
		})
	}
}

func TestPinMismatch(t *testing.T) {
	p := newPKI(t, "127.0.0.1")
	srv := newTLSServer(t, p, http.HandlerFunc(pingHandler))
	other := newPKI(t, "127.0.0.1")
	want := PinOf(other.root)
	c := newTLSClient(t, srv.URL, Options{Pin: want})
	_, err := c.Ping(context.Background())
	var pe *PinMismatchError
	if !errors.As(err, &pe) {
		t.Fatalf("Ping: err = %v (%T), want *PinMismatchError", err, err)
	}
	if len(pe.Want) != 1 || pe.Want[0] != want {
		t.Errorf("Want = %q, want [%q]", pe.Want, want)
	}
	if len(pe.Got) != 2 || pe.Got[0] != PinOf(p.leaf) || pe.Got[1] != PinOf(p.root) {
		t.Errorf("Got = %q, want leaf and root pins", pe.Got)
	}
	for _, s := range []string{"does not match the pin", "caadm ca show"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

// A matching pin does not excuse a certificate for another host.
func TestPinWrongHost(t *testing.T) {
	p := newPKI(t, "ca.example.com")
	srv := newTLSServer(t, p, http.HandlerFunc(pingHandler))
	c := newTLSClient(t, srv.URL, Options{Pin: PinOf(p.root)})
	_, err := c.Ping(context.Background())
	if err == nil {
		t.Fatal("Ping succeeded with a certificate for another host")
	}
	var pe *PinMismatchError
	if errors.As(err, &pe) {
		t.Errorf("err = %v, want a verification error, not a pin mismatch", err)
	}
	var he x509.HostnameError
	if !errors.As(err, &he) {
		t.Errorf("err = %v, want an x509.HostnameError", err)
	}
}

func TestParsePin(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	if b, err := ParsePin(good); err != nil || len(b) != 32 {
		t.Errorf("ParsePin(%q) = %x, %v", good, b, err)
	}
	for _, s := range []string{
		"",
		strings.Repeat("ab", 32),
		"sha1:" + strings.Repeat("ab", 32),
		"SHA256:" + strings.Repeat("ab", 32),
		"sha256:" + strings.Repeat("ab", 31),
		"sha256:" + strings.Repeat("ab", 33),
		"sha256:" + strings.Repeat("zz", 32),
		"sha256: " + strings.Repeat("ab", 32),
	} {
		if _, err := ParsePin(s); err == nil {
			t.Errorf("ParsePin(%q) succeeded", s)
		}
	}
	if _, err := New("https://127.0.0.1:1", Options{Pin: "sha256:00"}); err == nil {
		t.Error("New accepted a bad pin")
	}
}

func TestNewBadURL(t *testing.T) {
	for _, u := range []string{"", "http://ca.example.com", "ca.example.com:3025", "https://", "https://h/?a=b"} {
		if _, err := New(u, Options{}); err == nil {
			t.Errorf("New(%q) succeeded", u)
		}
	}
}

func TestBearer(t *testing.T) {
	p := newPKI(t, "127.0.0.1")
	var (
		mu      sync.Mutex
		gotAuth string
		gotReq  api.SignUserRequest
	)
	srv := newTLSServer(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != api.PathUserCert {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		gotAuth = r.Header.Get("Authorization")
		if r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("Content-Type = %q", r.Header.Get("Content-Type"))
		}
		if err := json.NewDecoder(r.Body).Decode(&gotReq); err != nil {
			t.Error(err)
		}
		writeJSON(w, http.StatusOK, api.Cert{Certificate: "ssh-ed25519-cert-v01@openssh.com AAAA", Serial: "7"})
	}))
	c := newTLSClient(t, srv.URL, Options{Pin: PinOf(p.root)})
	cert, err := c.SignUser(context.Background(), "s3cret", api.SignUserRequest{
		PublicKey: "ssh-ed25519 AAAA",
		TTL:       api.Duration(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if gotAuth != "Bearer s3cret" {
		t.Errorf("Authorization = %q, want %q", gotAuth, "Bearer s3cret")
	}
	if gotReq.PublicKey != "ssh-ed25519 AAAA" || gotReq.TTL != api.Duration(time.Hour) {
		t.Errorf("server got %+v", gotReq)
	}
	if cert.Serial != "7" {
		t.Errorf("cert = %+v", cert)
	}
}

func TestAPIError(t *testing.T) {
	path := newUnixServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusConflict, api.Error{Code: api.CodeExists, Message: "user alice exists"})
	}))
	_, err := NewAdmin(path).AddUser(context.Background(), api.AddUserRequest{Name: "alice"})
	var ae *api.Error
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v (%T), want *api.Error", err, err)
	}
	if ae.Code != api.CodeExists || ae.Status != http.StatusConflict || ae.Message != "user alice exists" {
		t.Errorf("err = %+v", ae)
	}
}

func TestNonJSONError(t *testing.T) {
	path := newUnixServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream exploded\nstack trace", http.StatusBadGateway)
	}))
	_, err := NewAdmin(path).Users(context.Background())
	var ae *api.Error
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v (%T), want *api.Error", err, err)
	}
	if ae.Code != api.CodeInternal || ae.Status != http.StatusBadGateway {
		t.Errorf("err = %+v", ae)
	}
	if !strings.Contains(ae.Message, "502 Bad Gateway") || !strings.Contains(ae.Message, "upstream exploded") ||
		strings.Contains(ae.Message, "\n") {
		t.Errorf("message = %q", ae.Message)
	}
}

func TestAdminRequests(t *testing.T) {
	type seen struct{ method, path, query, body string }
	var (
		mu  sync.Mutex
		got []seen
	)
	path := newUnixServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, strings.TrimSpace(string(b))})
		mu.Unlock()
		switch r.URL.Path {
		case api.PathAdminUsers:
			writeJSON(w, http.StatusOK, []api.User{{Name: "alice", Status: "active"}})
		case api.PathAdminAudit:
			writeJSON(w, http.StatusOK, []api.AuditEvent{{Type: "user.login"}})
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	c := NewAdmin(path)
	ctx := context.Background()
	users, err := c.Users(ctx)
	if err != nil || len(users) != 1 || users[0].Name != "alice" {
		t.Fatalf("Users = %+v, %v", users, err)
	}
	if err := c.RemoveUser(ctx, "a/b c"); err != nil {
		t.Fatal(err)
	}
	until := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := c.LockUser(ctx, "bob", api.LockRequest{Until: &until, Reason: "left"}); err != nil {
		t.Fatal(err)
	}
	since := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	if _, err := c.Audit(ctx, AuditFilter{User: "bob", Since: since, Limit: 5}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []seen{
		{"GET", api.PathAdminUsers, "", ""},
		{"DELETE", api.PathAdminUser + "a%2Fb%20c", "", ""},
		{"POST", api.PathAdminUser + "bob/lock", "", `{"until":"2030-01-02T03:04:05Z","reason":"left"}`},
		{"GET", api.PathAdminAudit, "limit=5&since=2024-05-06T07%3A08%3A09Z&user=bob", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("server saw %d requests, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if err := c.RemoveRole(ctx, ""); err == nil {
		t.Error("RemoveRole accepted an empty name")
	}
	if err := c.RemoveToken(ctx, ".."); err == nil {
		t.Error("RemoveToken accepted ..")
	}
}

func TestAdminUnreachable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.sock")
	_, err := NewAdmin(path).Users(context.Background())
	if err == nil {
		t.Fatal("Users succeeded without a server")
	}
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("err = %v, want ENOENT in the chain", err)
	}
	if !strings.HasPrefix(err.Error(), "client: cannot reach teleport-ca at "+path+": ") {
		t.Errorf("err = %q", err)
	}
}
