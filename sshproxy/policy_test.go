package sshproxy

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func authorized(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// testPolicy is a policy with users alice (roles prod, dev), bob
// (locked), nodes web1 (env=prod) and db1/db2 (env=staging, team=db).
func testPolicy(t *testing.T, userCA, hostCA ssh.PublicKey) *policy {
	t.Helper()
	pol, err := newPolicy(api.ProxyPolicy{
		RecordingMode: "proxy", UserCA: authorized(userCA), HostCA: authorized(hostCA),
		Users: []api.ProxyUser{{Name: "alice", Roles: []string{"prod", "dev"}}, {Name: "bob", Roles: []string{"prod"}, Locked: true}},
		Roles: []api.Role{
			{Name: "prod", Logins: []string{"root"}, NodeLabels: map[string][]string{"env": {"prod"}}, PermitPortForwarding: true},
			{Name: "dev", Logins: []string{"{user}", "postgres"}, NodeLabels: map[string][]string{"env": {"staging"}}, PermitAgentForwarding: true},
		},
		Nodes: []api.ProxyNode{
			{Name: "web1", Labels: map[string]string{"env": "prod"}, Principals: []string{"web1", "web1.example.com", "10.0.0.1"}},
			{Name: "db1", Labels: map[string]string{"env": "staging", "team": "db"}, Principals: []string{"db1"}},
			{Name: "db2", Labels: map[string]string{"env": "staging", "team": "db"}, Principals: []string{"db2"}},
		},
		Revoked: []api.RevokedSerial{{Serial: "77", CA: "user"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

func TestPolicyAllow(t *testing.T) {
	pol := testPolicy(t, newSigner(t).PublicKey(), newSigner(t).PublicKey())
	for _, c := range []struct {
		user, login, node string
		ok                bool
		port, agent       bool
	}{
		{"alice", "root", "web1", true, true, false},
		{"alice", "alice", "db1", true, false, true},
		{"alice", "postgres", "db1", true, false, true},
		{"alice", "root", "db1", false, false, false},      // prod role does not select staging
		{"alice", "postgres", "web1", false, false, false}, // dev role does not select prod
		{"bob", "root", "web1", false, false, false},       // locked
		{"mallory", "root", "web1", false, false, false},   // unknown
	} {
		perms, err := pol.allow(c.user, c.login, pol.nodes[c.node])
		if (err == nil) != c.ok {
			t.Errorf("%s as %s on %s: err %v, want ok=%v", c.user, c.login, c.node, err, c.ok)
			continue
		}
		if c.ok && (perms.PortForwarding != c.port || perms.AgentForwarding != c.agent || !perms.PTY) {
			t.Errorf("%s as %s on %s: permissions %+v", c.user, c.login, c.node, perms)
		}
		var de *deniedError
		if !c.ok && !errors.As(err, &de) {
			t.Errorf("%s as %s on %s: error %T is not a denial", c.user, c.login, c.node, err)
		}
	}
	if got := strings.Join(pol.loginsOn("alice", pol.nodes["db1"]), ","); got != "alice,postgres" {
		t.Errorf("alice's logins on db1: %s", got)
	}
	if !pol.isRevoked("user", 77) || pol.isRevoked("session", 77) || pol.isRevoked("user", 78) {
		t.Error("revoked serials are not indexed per CA")
	}
}

func TestPolicyResolve(t *testing.T) {
	pol := testPolicy(t, newSigner(t).PublicKey(), newSigner(t).PublicKey())
	for _, c := range []struct {
		target, want, errPart string
	}{
		{"web1", "web1", ""},
		{"web1.example.com", "web1", ""},
		{"10.0.0.1", "web1", ""},
		{"env=prod", "web1", ""},
		{"env=staging,team=db", "", "2 nodes have the labels env=staging,team=db: db1, db2"},
		{"env=qa", "", "no node has the labels env=qa"},
		{"=x", "", "label queries look like"},
		{"web9", "", ""},
	} {
		n, err := pol.resolve(c.target)
		switch {
		case c.want != "" && (err != nil || n.Name != c.want):
			t.Errorf("resolve(%q) = %q, %v; want %q", c.target, n.Name, err, c.want)
		case c.want == "" && c.errPart != "" && (err == nil || !strings.Contains(publicMessage(err), c.errPart)):
			t.Errorf("resolve(%q): %v; want a message with %q", c.target, err, c.errPart)
		case c.want == "" && c.errPart == "" && !errors.Is(err, errUnknownNode):
			t.Errorf("resolve(%q): %v; want errUnknownNode", c.target, err)
		}
	}
	if got := pol.suggestions("alice", "web9"); len(got) != 1 || got[0] != "web1" {
		t.Errorf("suggestions for web9: %v", got)
	}
	if got := pol.suggestions("bob", "web9"); len(got) != 0 {
		t.Errorf("a locked user gets suggestions: %v", got)
	}
}

func TestSplitTarget(t *testing.T) {
	for _, c := range []struct{ in, login, target string }{
		{"root@web1", "root", "web1"},
		{"a@b@web1", "a@b", "web1"},
		{"alice", "", ""},
		{"@web1", "", ""},
		{"root@", "", ""},
	} {
		l, tg, ok := splitTarget(c.in)
		if l != c.login || tg != c.target || ok != (c.login != "") {
			t.Errorf("splitTarget(%q) = %q, %q, %v", c.in, l, tg, ok)
		}
	}
}

type fakeConn struct{ user string }

func (f fakeConn) User() string          { return f.user }
func (f fakeConn) SessionID() []byte     { return []byte("x") }
func (f fakeConn) ClientVersion() []byte { return []byte("SSH-2.0-test") }
func (f fakeConn) ServerVersion() []byte { return []byte("SSH-2.0-test") }
func (f fakeConn) RemoteAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000} }
func (f fakeConn) LocalAddr() net.Addr   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3023} }

// TestAuthUser covers what the proxy accepts as a user: a certificate from
// the user CA, valid now, not revoked, of a user in the policy.
func TestAuthUser(t *testing.T) {
	userCA, hostCA, sessionCA := newSigner(t), newSigner(t), newSigner(t)
	now := time.Now()
	p := &Proxy{cfg: Config{Clock: func() time.Time { return now }}, log: slog.New(slog.DiscardHandler)}
	p.events = newAuditQueue(p)
	pol := testPolicy(t, userCA.PublicKey(), hostCA.PublicKey())
	key := newSigner(t).PublicKey()
	cert := func(signer ssh.Signer, typ uint32, keyID string, serial uint64, after, before time.Time, opts map[string]string) ssh.PublicKey {
		c := &ssh.Certificate{
			Key: key, Serial: serial, CertType: typ, KeyId: keyID, ValidPrincipals: []string{"root"},
			ValidAfter: uint64(after.Unix()), ValidBefore: uint64(before.Unix()),
			Permissions: ssh.Permissions{CriticalOptions: opts, Extensions: map[string]string{"permit-pty": ""}},
		}
		if err := c.SignCert(rand.Reader, signer); err != nil {
			t.Fatal(err)
		}
		return c
	}
	hour := time.Hour
	for _, c := range []struct {
		name string
		key  ssh.PublicKey
		user string
		ok   bool
		deny bool
	}{
		{"valid", cert(userCA, ssh.UserCert, "alice", 1, now.Add(-hour), now.Add(hour), nil), "alice", true, false},
		{"valid, single hop", cert(userCA, ssh.UserCert, "alice", 1, now.Add(-hour), now.Add(hour), nil), "root@web1", true, false},
		{"login not in certificate: accepted, then refused with a message", cert(userCA, ssh.UserCert, "alice", 1, now.Add(-hour), now.Add(hour), nil), "postgres@db1", true, true},
		{"plain key", key, "alice", false, false},
		{"expired", cert(userCA, ssh.UserCert, "alice", 1, now.Add(-2*hour), now.Add(-hour), nil), "alice", false, false},
		{"not yet valid", cert(userCA, ssh.UserCert, "alice", 1, now.Add(hour), now.Add(2*hour), nil), "alice", false, false},
		{"unknown CA", cert(newSigner(t), ssh.UserCert, "alice", 1, now.Add(-hour), now.Add(hour), nil), "alice", false, false},
		{"session CA certificate", cert(sessionCA, ssh.UserCert, "alice", 1, now.Add(-hour), now.Add(hour), nil), "alice", false, false},
		{"host certificate as user certificate", cert(userCA, ssh.HostCert, "alice", 1, now.Add(-hour), now.Add(hour), nil), "alice", false, false},
		{"revoked serial", cert(userCA, ssh.UserCert, "alice", 77, now.Add(-hour), now.Add(hour), nil), "alice", false, false},
		{"locked user", cert(userCA, ssh.UserCert, "bob", 1, now.Add(-hour), now.Add(hour), nil), "bob", false, false},
		{"removed user", cert(userCA, ssh.UserCert, "carol", 1, now.Add(-hour), now.Add(hour), nil), "carol", false, false},
		{"unknown critical option", cert(userCA, ssh.UserCert, "alice", 1, now.Add(-hour), now.Add(hour), map[string]string{"force-command": "ls"}), "alice", false, false},
		{"source-address elsewhere", cert(userCA, ssh.UserCert, "alice", 1, now.Add(-hour), now.Add(hour), map[string]string{"source-address": "10.9.9.9/32"}), "alice", false, false},
		{"source-address matching", cert(userCA, ssh.UserCert, "alice", 1, now.Add(-hour), now.Add(hour), map[string]string{"source-address": "127.0.0.1/32"}), "alice", true, false},
	} {
		perms, err := p.authUser(pol, fakeConn{user: c.user}, c.key, "")
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v, want ok=%v", c.name, err, c.ok)
			continue
		}
		if c.ok {
			_, deny := perms.Extensions[extDeny]
			if deny != c.deny || perms.Extensions[extUser] == "" {
				t.Errorf("%s: permissions %v", c.name, perms.Extensions)
			}
		}
	}
	// The inner connection of ssh -J must be the same user.
	alice := cert(userCA, ssh.UserCert, "alice", 1, now.Add(-hour), now.Add(hour), nil)
	if _, err := p.authUser(pol, fakeConn{user: "root"}, alice, "mallory"); err == nil {
		t.Error("inner connection of another user accepted")
	}
	if _, err := p.authUser(pol, fakeConn{user: "root"}, alice, "alice"); err != nil {
		t.Errorf("inner connection of the same user: %v", err)
	}
	if n := p.events.len(); n == 0 {
		t.Error("refusals were not audited")
	}
}

// TestEnforce: a new policy ends exactly the sessions it no longer
// allows, including a session registered after the change (add checks
// once), and keeps a DNS-fallback session while a role still selects
// every node.
func TestEnforce(t *testing.T) {
	userCA, hostCA := newSigner(t).PublicKey(), newSigner(t).PublicKey()
	p := &Proxy{cfg: Config{Clock: time.Now}, log: slog.New(slog.DiscardHandler)}
	p.events = newAuditQueue(p)
	p.sessions = newRegistry(p)
	pol := testPolicy(t, userCA, hostCA)
	pol.roles["all"] = api.Role{Name: "all", Logins: []string{"root"}, NodeLabels: map[string][]string{"*": {"*"}}}
	u := pol.users["alice"]
	u.Roles = append(u.Roles, "all")
	pol.users["alice"] = u
	p.pol.Store(pol)
	ended := map[string]bool{}
	add := func(id, login, node string, unregistered bool) {
		p.sessions.add(api.Session{ID: id, User: "alice", Login: login, Node: node}, "1", unregistered, func() { ended[id] = true })
	}
	add("web", "root", "web1", false)
	add("db", "postgres", "db1", false)
	add("dns", "", "far.example.com", true)
	add("gone", "root", "web9", false) // not in the policy: ended at once
	if !ended["gone"] || ended["web"] || ended["db"] || ended["dns"] {
		t.Fatalf("after add: ended %v", ended)
	}
	p.sessions.enforce(pol) // nothing changed: nothing ends
	if ended["web"] || ended["db"] || ended["dns"] {
		t.Fatalf("an unchanged policy ended sessions: %v", ended)
	}
	// alice loses the role that selects every node and the dev role.
	u.Roles = []string{"prod"}
	pol.users["alice"] = u
	p.sessions.enforce(pol)
	if ended["web"] || !ended["db"] || !ended["dns"] {
		t.Fatalf("after the change: ended %v", ended)
	}
	pol.revoked["user/1"] = true
	p.sessions.enforce(pol)
	if !ended["web"] {
		t.Fatal("a session of a revoked certificate goes on")
	}
}
