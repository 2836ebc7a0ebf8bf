package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// The tests in this file prove docs/SECURITY.md "Access: refused and
// audited" for the CA: every refusal listed there is refused over the
// real HTTPS API (or the admin socket), the caller gets a message that
// names the problem and nothing of the CA's internals, and the audit log
// holds an event for it.

// secCA is an authority served over HTTPS and an admin socket.
type secCA struct {
	t     *testing.T
	a     *Authority
	clk   *fakeClock
	https *http.Client
	base  string
	admin *http.Client
}

func newSecCA(t *testing.T) *secCA {
	t.Helper()
	a, clk := newTestAuthority(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "admin.sock")
	adm, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(a, ServerConfig{Listener: ln, AdminListener: adm})
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
	return &secCA{
		t: t, a: a, clk: clk, base: "https://" + ln.Addr().String(),
		https: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}},
		admin: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
		}},
	}
}

// mtls is an HTTPS client presenting a client certificate of the CA's
// TLS root (a node's or a proxy's identity).
func (c *secCA) mtls(key *ecdsa.PrivateKey, certPEM string) *http.Client {
	blk, _ := pem.Decode([]byte(certPEM))
	pool := x509.NewCertPool()
	pool.AddCert(c.a.keys.tls.cert)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{{Certificate: [][]byte{blk.Bytes}, PrivateKey: key}},
	}}}
}

// refusal is what a refused request returned.
type refusal struct {
	status int
	api.Error
}

// do sends body (a string, sent as is, or a value, sent as JSON) and
// returns the status and error body.
func (c *secCA) do(cl *http.Client, method, url, bearer string, body any) refusal {
	c.t.Helper()
	var b string
	switch v := body.(type) {
	case string:
		b = v
	case nil:
	default:
		j, err := json.Marshal(v)
		if err != nil {
			c.t.Fatal(err)
		}
		b = string(j)
	}
	req, err := http.NewRequest(method, url, strings.NewReader(b))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", api.BearerPrefix+bearer)
	}
	resp, err := cl.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e api.Error
	_ = json.Unmarshal(raw, &e)
	if resp.StatusCode < 400 {
		c.t.Fatalf("%s %s was not refused: %d %s", method, url, resp.StatusCode, raw)
	}
	return refusal{resp.StatusCode, e}
}

// want checks a refusal: its status, a message naming the problem, and
// no internals.
func (c *secCA) want(r refusal, status int, fragments ...string) {
	c.t.Helper()
	c.t.Logf("caller sees: %d %s: %s", r.status, r.Code, r.Message)
	if r.status != status {
		c.t.Errorf("status %d (%s: %q), want %d", r.status, r.Code, r.Message, status)
	}
	for _, f := range fragments {
		if !strings.Contains(r.Message, f) {
			c.t.Errorf("message %q does not say %q", r.Message, f)
		}
	}
	noInternals(c.t, r.Message, c.a.cfg.DataDir)
}

// noInternals fails t if a message for a client shows the CA's
// internals: its package prefix, a path of its data dir, store keys, Go
// types, source files or a stack.
func noInternals(t *testing.T, msg, dataDir string) {
	t.Helper()
	for _, bad := range []string{"ca: ", dataDir, "/var/lib", "users/", "tokens/", "audit/", "sessions/", "signin/", "nodes/",
		"Go struct", "Go value", "api.", ".go:", "goroutine", "panic", "bbolt", "state.db"} {
		if bad != "" && strings.Contains(msg, bad) {
			t.Errorf("message %q shows internals (%q)", msg, bad)
		}
	}
}

// event finds an audit event of typ that matches, or fails. (The
// test clock stands still, so events carry equal times: match on
// content, not order.)
func (c *secCA) event(typ string, match func(api.AuditEvent) bool) api.AuditEvent {
	c.t.Helper()
	evs, err := c.a.Audit(context.Background(), AuditFilter{Type: typ})
	if err != nil {
		c.t.Fatal(err)
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if match(evs[i]) {
			return evs[i]
		}
	}
	c.t.Errorf("no matching %s audit event among %d", typ, len(evs))
	return api.AuditEvent{}
}

func (c *secCA) count(typ string) int {
	evs, err := c.a.Audit(context.Background(), AuditFilter{Type: typ})
	if err != nil {
		c.t.Fatal(err)
	}
	return len(evs)
}

// refusedEvent matches an event of a refusal whose reason holds frag.
func refusedEvent(user, frag string) func(api.AuditEvent) bool {
	return func(ev api.AuditEvent) bool {
		return !ev.Success && (user == "" || ev.User == user) && strings.Contains(ev.Fields["reason"], frag)
	}
}

func (c *secCA) login(user, secret string) string {
	c.t.Helper()
	resp, err := c.a.Login(context.Background(), api.LoginRequest{User: user, Password: pw, TOTP: oathtool(c.t, secret, c.clk.Now())}, "127.0.0.1")
	if err != nil {
		c.t.Fatalf("login %s: %v", user, err)
	}
	c.clk.Advance(30 * time.Second) // the next sign-in needs the next code
	return resp.Session
}

// TestSecurityCASignIn: a replayed TOTP code and brute force past the
// lockout are refused over the API, with a message and an audit event.
func TestSecurityCASignIn(t *testing.T) {
	c := newSecCA(t)
	secret := addUser(t, c.a, "alice", []string{"alice"}, nil)

	t.Run("replayed TOTP code", func(t *testing.T) {
		code := oathtool(t, secret, c.clk.Now())
		body := api.LoginRequest{User: "alice", Password: pw, TOTP: code}
		if _, err := c.a.Login(context.Background(), body, "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		r := c.do(c.https, "POST", c.base+api.PathLogin, "", body)
		c.want(r, http.StatusUnauthorized, "wrong user name, password or code")
		c.event("user.login", refusedEvent("alice", "code already used"))
		c.clk.Advance(30 * time.Second)
	})

	t.Run("brute force past the lockout", func(t *testing.T) {
		bruce := addUser(t, c.a, "bruce", []string{"bruce"}, nil)
		for range 5 {
			r := c.do(c.https, "POST", c.base+api.PathLogin, "", api.LoginRequest{User: "bruce", Password: "guess-guess", TOTP: "123456"})
			if r.status == http.StatusForbidden {
				break
			}
			c.want(r, http.StatusUnauthorized, "wrong user name, password or code")
		}
		// Now even the right password and code are refused.
		r := c.do(c.https, "POST", c.base+api.PathLogin, "", api.LoginRequest{User: "bruce", Password: pw, TOTP: oathtool(t, bruce, c.clk.Now())})
		c.want(r, http.StatusForbidden, "account is locked", "5 failed sign-ins in a row", "until")
		if r.Code != api.CodeLocked {
			t.Errorf("code %q, want %q", r.Code, api.CodeLocked)
		}
		c.event("user.lock", func(ev api.AuditEvent) bool { return ev.User == "bruce" && ev.Actor == "ca" })
		c.event("user.login", refusedEvent("bruce", "wrong password"))
		c.event("user.login", refusedEvent("bruce", "account locked"))
	})

	t.Run("crafted user name", func(t *testing.T) {
		r := c.do(c.https, "POST", c.base+api.PathLogin, "", api.LoginRequest{User: "alice\nMatch all", Password: pw, TOTP: "123456"})
		c.want(r, http.StatusUnauthorized, "wrong user name, password or code")
		ev := c.event("user.login", refusedEvent("", "malformed user name"))
		if ev.User != "" || !strings.Contains(ev.Fields["user_given"], `\n`) {
			t.Errorf("the crafted name is not kept quoted apart: %+v", ev)
		}
	})
}

// TestSecurityCACertificates: a locked user and a login no role gives
// are refused certificates within a sign-in session, and a crafted login
// is refused as invalid; each is audited.
func TestSecurityCACertificates(t *testing.T) {
	c := newSecCA(t)
	secret := addUser(t, c.a, "alice", []string{"alice"}, nil)
	sess := c.login("alice", secret)
	pub := authorizedKey(newPub(t))

	t.Run("a login the role does not give", func(t *testing.T) {
		r := c.do(c.https, "POST", c.base+api.PathUserCert, sess, api.SignUserRequest{PublicKey: pub, Logins: []string{"root"}})
		c.want(r, http.StatusForbidden, `allows login "root" (allowed: alice)`)
		c.event("cert.refused", refusedEvent("alice", `login "root"`))
	})

	t.Run("crafted login", func(t *testing.T) {
		for _, l := range []string{`root,command="sh"`, "root\nPermitRootLogin yes", `alice" ssh-ed25519 AAAA`} {
			before := c.count("api.refused")
			r := c.do(c.https, "POST", c.base+api.PathUserCert, sess, api.SignUserRequest{PublicKey: pub, Logins: []string{l}})
			c.want(r, http.StatusBadRequest, "login")
			if c.count("api.refused") != before+1 {
				t.Errorf("login %q: refusal not audited as api.refused", l)
			}
		}
		c.event("api.refused", func(ev api.AuditEvent) bool {
			return ev.Fields["path"] == api.PathUserCert && ev.Remote == "127.0.0.1" && strings.Contains(ev.Fields["reason"], "login")
		})
	})

	t.Run("locked user", func(t *testing.T) {
		if err := c.a.LockUser(context.Background(), "alice", api.LockRequest{Reason: "stolen laptop"}, "test"); err != nil {
			t.Fatal(err)
		}
		r := c.do(c.https, "POST", c.base+api.PathUserCert, sess, api.SignUserRequest{PublicKey: pub})
		c.want(r, http.StatusForbidden, "account is locked (stolen laptop)")
		c.event("cert.refused", refusedEvent("alice", "account is locked"))
		r = c.do(c.https, "POST", c.base+api.PathLogin, "", api.LoginRequest{User: "alice", Password: pw, TOTP: oathtool(t, secret, c.clk.Now())})
		c.want(r, http.StatusForbidden, "account is locked (stolen laptop)")
		c.event("user.login", refusedEvent("alice", "account locked"))
	})
}

// TestSecurityCAJoin: used, expired and wrong-role join tokens, a node
// joining under another node's name, and crafted names are refused over
// the API and audited.
func TestSecurityCAJoin(t *testing.T) {
	c := newSecCA(t)
	joinNode(t, c.a, "web1", map[string]string{"env": "prod"})
	tlsPub, _ := tlsPubPEM(t)
	join := func(token, name string) api.NodeJoinRequest {
		return api.NodeJoinRequest{Token: token, Name: name, HostPublicKey: authorizedKey(newPub(t)), TLSPublicKey: tlsPub}
	}
	badToken := func(t *testing.T, req api.NodeJoinRequest) {
		t.Helper()
		r := c.do(c.https, "POST", c.base+api.PathNodeJoin, "", req)
		c.want(r, http.StatusForbidden, "token is unknown, expired, already used or for another role")
		c.event("node.join", func(ev api.AuditEvent) bool {
			return !ev.Success && ev.Fields["node"] == req.Name && ev.Fields["reason"] == "bad token"
		})
	}
	t.Run("used token", func(t *testing.T) {
		used := nodeToken(t, c.a, TokenNode, nil)
		if _, err := c.a.JoinNode(context.Background(), join(used, "web2"), "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		badToken(t, join(used, "web3"))
	})
	t.Run("expired token", func(t *testing.T) {
		tok := nodeToken(t, c.a, TokenNode, nil)
		c.clk.Advance(16 * time.Minute)
		badToken(t, join(tok, "web4"))
	})
	t.Run("wrong-role token", func(t *testing.T) {
		badToken(t, join(nodeToken(t, c.a, TokenProxy, nil), "web5"))
		addUser(t, c.a, "kim", []string{"kim"}, nil)
		kh, err := c.a.AddToken(context.Background(), api.AddTokenRequest{Role: TokenKeyhelper, User: "kim"}, "test")
		if err != nil {
			t.Fatal(err)
		}
		badToken(t, join(kh.Secret, "web6"))
	})
	t.Run("another node's name", func(t *testing.T) {
		tok := nodeToken(t, c.a, TokenNode, nil)
		r := c.do(c.https, "POST", c.base+api.PathNodeJoin, "", join(tok, "web1"))
		c.want(r, http.StatusConflict, `"web1"`)
		c.event("node.join", func(ev api.AuditEvent) bool { return !ev.Success && ev.Fields["node"] == "web1" })
		req := join(tok, "web7")
		req.FQDN = "web1"
		r = c.do(c.https, "POST", c.base+api.PathNodeJoin, "", req)
		c.want(r, http.StatusBadRequest, `belongs to node "web1"`)
		c.event("node.join", refusedEvent("", `belongs to node "web1"`))
		// The refused joins did not spend the token.
		if _, err := c.a.JoinNode(context.Background(), join(tok, "web7"), "127.0.0.1"); err != nil {
			t.Fatalf("the token was spent by refused joins: %v", err)
		}
	})
	t.Run("crafted names", func(t *testing.T) {
		for _, tc := range []struct{ name, fqdn, addr, want string }{
			{name: "web8\nHostKey /etc/shadow", want: "newline"},
			{name: "web8", fqdn: `web8.example.com,command="sh"`, want: "comma"},
			{name: "web8", addr: `10.0.0.8 "x"`, want: "host principal"},
			{name: `web8" principals="root`, want: "quote"},
		} {
			req := join(nodeToken(t, c.a, TokenNode, map[string]string{"env": "prod"}), tc.name)
			req.FQDN = tc.fqdn
			if tc.addr != "" {
				req.Addresses = []string{tc.addr}
			}
			before := c.count("api.refused")
			r := c.do(c.https, "POST", c.base+api.PathNodeJoin, "", req)
			c.want(r, http.StatusBadRequest, tc.want)
			if c.count("api.refused") != before+1 {
				t.Errorf("join %q: not audited", tc.name)
			}
		}
		c.event("api.refused", func(ev api.AuditEvent) bool {
			return ev.Fields["path"] == api.PathNodeJoin && strings.Contains(ev.Fields["reason"], `\nHostKey`)
		})
	})
}

// TestSecurityCAAdmin: a crafted role login, label or user name given to
// caadm is refused on the admin socket and audited (actor: the admin).
func TestSecurityCAAdmin(t *testing.T) {
	c := newSecCA(t)
	for _, tc := range []struct {
		name, path string
		body       any
		want       string
	}{
		{"login with an option", api.PathAdminRoles, api.Role{Name: "r1", Logins: []string{`root,command="sh"`}}, "comma"},
		{"login with a line", api.PathAdminRoles, api.Role{Name: "r1", Logins: []string{"root\nPermitRootLogin yes"}}, "newline"},
		{"label with a line", api.PathAdminRoles, api.Role{Name: "r1", Logins: []string{"root"}, NodeLabels: map[string][]string{"env": {"prod\nMatch all"}}}, "label"},
		{"token label with a quote", api.PathAdminTokens, api.AddTokenRequest{Role: TokenNode, Labels: map[string]string{"env": `prod" x`}}, "label"},
		{"user name with a quote", api.PathAdminUsers, api.AddUserRequest{Name: `bob"`, Logins: []string{"bob"}}, "user name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := c.count("api.refused")
			r := c.do(c.admin, "POST", "http://admin"+tc.path, "", tc.body)
			c.want(r, http.StatusBadRequest, tc.want)
			if c.count("api.refused") != before+1 {
				t.Fatal("not audited")
			}
			ev := c.event("api.refused", func(ev api.AuditEvent) bool { return ev.Fields["reason"] == r.Message })
			if !strings.HasPrefix(ev.Actor, "admin(uid=") || ev.Fields["path"] != tc.path {
				t.Errorf("event %+v: want the admin as actor and the path", ev)
			}
		})
	}
}

// TestSecurityCAIDs: path traversal in recording and session ids is
// refused at the API and audited; nothing is written outside the
// recordings directory.
func TestSecurityCAIDs(t *testing.T) {
	c := newSecCA(t)
	ctx := context.Background()
	joinNode(t, c.a, "web1", map[string]string{"env": "prod"})
	if _, err := c.a.AddRole(ctx, api.Role{Name: "prod", Logins: []string{"root"}, NodeLabels: map[string][]string{"env": {"prod"}}}, "test"); err != nil {
		t.Fatal(err)
	}
	addUser(t, c.a, "alice", nil, []string{"prod"})
	tlsPub, key := tlsPubPEM(t)
	id, err := c.a.JoinProxy(ctx, api.ProxyJoinRequest{
		Token: nodeToken(t, c.a, TokenProxy, nil), Name: "proxy1", PublicAddr: "proxy1:3023", TunnelAddr: "proxy1:3024",
		HostPublicKey: authorizedKey(newPub(t)), TLSPublicKey: tlsPub,
	}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	proxy := c.mtls(key, id.TLSCertificate)
	cast := `{"version":2,"width":80,"height":24,"timestamp":1700000000}` + "\n"

	for _, bad := range []string{"..%2F..%2F..%2Ftmp%2Fowned", "..%2Fstate", ".hidden", "a%00b"} {
		r := c.do(proxy, "PUT", c.base+api.PathProxyRecording+bad, "", cast)
		c.want(r, http.StatusBadRequest, "recording id", "is not valid")
		c.event("api.refused", func(ev api.AuditEvent) bool {
			return ev.Fields["method"] == "PUT" && strings.HasSuffix(ev.Fields["path"], bad)
		})
		r = c.do(c.admin, "GET", "http://admin"+api.PathAdminRecording+"/"+bad, "", nil)
		c.want(r, http.StatusBadRequest, "recording id")
	}
	if _, err := os.Stat("/tmp/owned.cast"); err == nil {
		t.Fatal("a recording was written outside the recordings directory")
	}
	if entries, _ := os.ReadDir(c.a.recordingsDir()); len(entries) != 0 {
		t.Fatalf("refused uploads left %d files", len(entries))
	}

	for _, sid := range []string{"../../x", "a b", "s\nid"} {
		r := c.do(proxy, "POST", c.base+api.PathProxySessionCert, "", api.SessionCertRequest{
			User: "alice", Login: "root", Node: "web1", SessionID: sid, PublicKey: authorizedKey(newPub(t)), TTL: api.Duration(2 * time.Minute),
		})
		c.want(r, http.StatusBadRequest, "session id")
		c.event("api.refused", func(ev api.AuditEvent) bool {
			return ev.Fields["path"] == api.PathProxySessionCert && strings.Contains(ev.Fields["reason"], "session id")
		})
	}
}

// TestSecurityCABodies: oversized and malformed API bodies are refused
// with a message that names the problem in the request's terms (no Go
// types), and audited — up to a bound per client, so a flood cannot grow
// the audit log without end.
func TestSecurityCABodies(t *testing.T) {
	c := newSecCA(t)
	for _, tc := range []struct {
		name, body string
		status     int
		want       []string
	}{
		{"oversized", `{"user":"` + strings.Repeat("a", 2<<20) + `"}`, http.StatusRequestEntityTooLarge, []string{"request body is larger than the 65536 bytes allowed"}},
		{"not JSON", `user=alice&password=x`, http.StatusBadRequest, []string{"not JSON"}},
		{"cut short", `{"user":"alice"`, http.StatusBadRequest, []string{"ends early"}},
		{"wrong type", `{"user":5}`, http.StatusBadRequest, []string{`field "user" must be a string, not number`}},
		{"not an object", `[1,2]`, http.StatusBadRequest, []string{"must be a JSON object, not array"}},
		{"unknown field", `{"user":"a","admin":true}`, http.StatusBadRequest, []string{`unknown field "admin"`}},
		{"two objects", `{"user":"a"}{"user":"b"}`, http.StatusBadRequest, []string{"after the JSON object"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := c.count("api.refused")
			r := c.do(c.https, "POST", c.base+api.PathLogin, "", tc.body)
			c.want(r, tc.status, tc.want...)
			if c.count("api.refused") != before+1 {
				t.Fatal("not audited as api.refused")
			}
			ev := c.event("api.refused", func(ev api.AuditEvent) bool { return ev.Fields["reason"] == r.Message })
			if ev.Fields["status"] != strconv.Itoa(tc.status) || ev.Remote != "127.0.0.1" {
				t.Errorf("event %+v", ev)
			}
		})
	}

	t.Run("a flood is audited up to the bound", func(t *testing.T) {
		c := newSecCA(t)
		for range refusalAuditLimit + 10 {
			c.do(c.https, "POST", c.base+api.PathLogin, "", `{`)
		}
		evs, _ := c.a.Audit(context.Background(), AuditFilter{Type: "api.refused"})
		limited := 0
		for _, ev := range evs {
			if ev.Fields["audit_limited_until"] != "" {
				limited++
			}
		}
		if len(evs) != refusalAuditLimit || limited != 1 {
			t.Fatalf("%d api.refused events after %d refusals, %d saying the rest are not audited; want %d and 1",
				len(evs), refusalAuditLimit+10, limited, refusalAuditLimit)
		}
		c.clk.Advance(refusalAuditWindow)
		c.do(c.https, "POST", c.base+api.PathLogin, "", `{`)
		if n := c.count("api.refused"); n != refusalAuditLimit+1 {
			t.Fatalf("after the window: %d events, want %d", n, refusalAuditLimit+1)
		}
	})
}
