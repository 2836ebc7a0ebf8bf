package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// startServer serves a over TLS on loopback and returns an HTTP client
// that trusts the CA's root, and the base URL.
func startServer(t *testing.T, a *Authority) (*http.Client, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(a, ServerConfig{Listener: ln})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	pool := x509.NewCertPool()
	pool.AddCert(a.keys.tls.cert)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	return c, "https://" + ln.Addr().String()
}

func post(t *testing.T, c *http.Client, url, ctype, bearer, body string) (int, api.Error, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if bearer != "" {
		req.Header.Set("Authorization", api.BearerPrefix+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e api.Error
	json.Unmarshal(b, &e)
	return resp.StatusCode, e, b
}

func TestAPIErrors(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	secret := addUser(t, a, "alice", []string{"alice"}, nil)
	c, base := startServer(t, a)
	const js = "application/json"
	code := oathtool(t, secret, clk.Now())
	status, _, body := post(t, c, base+api.PathLogin, js, "", `{"user":"alice","password":"`+pw+`","totp":"`+code+`"}`)
	if status != 200 {
		t.Fatalf("login: %d %s", status, body)
	}
	var lr api.LoginResponse
	json.Unmarshal(body, &lr)
	pub := authorizedKey(newPub(t))

	tests := []struct {
		name, path, ctype, bearer, body string
		wantStatus                      int
		wantCode, wantMsg               string
	}{
		{"unknown field", api.PathLogin, js, "", `{"user":"alice","pasword":"x"}`, 400, api.CodeBadRequest, `unknown field "pasword"`},
		{"trailing data", api.PathLogin, js, "", `{"user":"a"}{"user":"b"}`, 400, api.CodeBadRequest, "after the JSON object"},
		{"wrong content type", api.PathLogin, "text/plain", "", `{}`, 400, api.CodeBadRequest, "not application/json"},
		{"no content type", api.PathLogin, "", "", `{}`, 400, api.CodeBadRequest, "content type is missing"},
		{"bad credentials", api.PathLogin, js, "", `{"user":"alice","password":"nope","totp":"000000"}`, 401, api.CodeBadCredentials, "wrong user name, password or code"},
		{"no session", api.PathUserCert, js, "", `{"public_key":"` + pub + `"}`, 401, api.CodeSessionExpired, "sign in again"},
		{"bad session", api.PathUserCert, js, "forged", `{"public_key":"` + pub + `"}`, 401, api.CodeSessionExpired, "sign in again"},
		{"login not allowed", api.PathUserCert, js, lr.Session, `{"public_key":"` + pub + `","logins":["root"]}`, 403, api.CodeForbidden, `allows login "root" (allowed: alice)`},
		{"bad ttl", api.PathUserCert, js, lr.Session, `{"public_key":"` + pub + `","ttl":3600}`, 400, api.CodeBadRequest, "duration must be a string"},
		{"too large", api.PathLogin, js, "", `{"user":"` + strings.Repeat("a", 70<<10) + `"}`, 413, api.CodeTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, e, body := post(t, c, base+tt.path, tt.ctype, tt.bearer, tt.body)
			if status != tt.wantStatus || e.Code != tt.wantCode || !strings.Contains(e.Message, tt.wantMsg) {
				t.Fatalf("got %d %s, want %d %s containing %q", status, body, tt.wantStatus, tt.wantCode, tt.wantMsg)
			}
			if strings.HasPrefix(e.Message, "ca: ") {
				t.Errorf("message leaks the package prefix: %q", e.Message)
			}
		})
	}

	// A locked account gets a message that says until when.
	until := clk.Now().Add(time.Hour)
	if err := a.LockUser(context.Background(), "alice", api.LockRequest{Until: &until}, "test"); err != nil {
		t.Fatal(err)
	}
	status, e, _ := post(t, c, base+api.PathUserCert, js, lr.Session, `{"public_key":"`+pub+`"}`)
	if status != 403 || e.Code != api.CodeLocked || !strings.Contains(e.Message, until.Format(time.RFC3339)) {
		t.Fatalf("locked: %d %+v", status, e)
	}
}

func TestAPIIssueAndCA(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	secret := addUser(t, a, "bob", []string{"bob", "www"}, nil)
	c, base := startServer(t, a)
	_, _, body := post(t, c, base+api.PathLogin, "application/json", "", `{"user":"bob","password":"`+pw+`","totp":"`+oathtool(t, secret, clk.Now())+`"}`)
	var lr api.LoginResponse
	if err := json.Unmarshal(body, &lr); err != nil || lr.Session == "" {
		t.Fatalf("login: %s", body)
	}
	status, _, body := post(t, c, base+api.PathUserCert, "application/json", lr.Session, `{"public_key":"`+authorizedKey(newPub(t))+`","ttl":"10m","logins":["www"]}`)
	var cert api.Cert
	if status != 200 || json.Unmarshal(body, &cert) != nil {
		t.Fatalf("issue: %d %s", status, body)
	}
	if cert.KeyID != "bob" || len(cert.Principals) != 1 || cert.Principals[0] != "www" || cert.ValidBefore.Sub(clk.Now()) != 10*time.Minute {
		t.Errorf("cert %+v", cert)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cert.Certificate))
	sc, ok := k.(*ssh.Certificate)
	if err != nil || !ok {
		t.Fatalf("returned certificate does not parse: %v", err)
	}
	checker := ssh.CertChecker{
		IsUserAuthority: func(auth ssh.PublicKey) bool { return bytes.Equal(auth.Marshal(), a.keys.user.PublicKey().Marshal()) },
		Clock:           clk.Now,
	}
	if err := checker.CheckCert("www", sc); err != nil {
		t.Errorf("x/crypto CertChecker refuses the certificate for www: %v", err)
	}
	if err := checker.CheckCert("bob", sc); err == nil {
		t.Error("certificate narrowed to www also valid for bob")
	}
	resp, err := c.Get(base + api.PathCA)
	if err != nil {
		t.Fatal(err)
	}
	var info api.CAInfo
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if info.Pin != a.Pin() || !strings.HasPrefix(info.KnownHosts, "@cert-authority * ssh-ed25519 ") || info.RecordingMode != "proxy" {
		t.Errorf("CA info %+v", info)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", resp.Header.Get("Cache-Control"))
	}
	// Logout ends the session.
	if status, _, body := post(t, c, base+api.PathLogout, "application/json", lr.Session, ""); status != 200 {
		t.Fatalf("logout: %d %s", status, body)
	}
	if status, _, _ := post(t, c, base+api.PathUserCert, "application/json", lr.Session, `{"public_key":"`+authorizedKey(newPub(t))+`"}`); status != 401 {
		t.Fatalf("after logout: %d", status)
	}
}

func TestAdminPolicy(t *testing.T) {
	self := os.Getpid()
	groups, err := procGroups(self)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		ap   adminPolicy
		p    peer
		want bool
	}{
		{"root", adminPolicy{selfUID: 1000, groupGID: -1}, peer{UID: 0}, true},
		{"ca's own uid", adminPolicy{selfUID: 1000, groupGID: -1}, peer{UID: 1000}, true},
		{"stranger", adminPolicy{selfUID: 1000, groupGID: -1}, peer{UID: 65534, GID: 65534, PID: self}, false},
		{"primary group", adminPolicy{selfUID: 1000, groupGID: 4242}, peer{UID: 65534, GID: 4242}, true},
		{"other group", adminPolicy{selfUID: 1000, groupGID: 4242}, peer{UID: 65534, GID: 65534, PID: self}, false},
	}
	if len(groups) > 0 {
		tests = append(tests, struct {
			name string
			ap   adminPolicy
			p    peer
			want bool
		}{"supplementary group", adminPolicy{selfUID: 1000, groupGID: groups[0]}, peer{UID: 65534, GID: 65534, PID: self}, true})
	}
	for _, tt := range tests {
		if got := tt.ap.allows(tt.p); got != tt.want {
			t.Errorf("%s: allows = %v, want %v", tt.name, got, tt.want)
		}
	}
}
