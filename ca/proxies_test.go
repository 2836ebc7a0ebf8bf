package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// joinProxy joins a proxy and returns its authenticated form.
func joinProxy(t testing.TB, a *Authority, name, public, tunnel string) (api.ProxyIdentity, *authenticatedProxy) {
	t.Helper()
	tlsPub, _ := tlsPubPEM(t)
	id, err := a.JoinProxy(context.Background(), api.ProxyJoinRequest{
		Token: nodeToken(t, a, TokenProxy, nil), Name: name, PublicAddr: public, TunnelAddr: tunnel,
		HostPublicKey: authorizedKey(newPub(t)), TLSPublicKey: tlsPub,
	}, "127.0.0.1")
	if err != nil {
		t.Fatalf("JoinProxy(%s): %v", name, err)
	}
	blk, _ := pem.Decode([]byte(id.TLSCertificate))
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.authenticateProxy(context.Background(), leaf)
	if err != nil {
		t.Fatalf("authenticateProxy: %v", err)
	}
	return id, p
}

func TestJoinProxy(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	joinNode(t, a, "web1", map[string]string{"env": "prod"})
	id, p := joinProxy(t, a, "proxy1", "bastion.example.com:3023", "10.0.0.9:3024")
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(id.HostCertificate))
	if err != nil {
		t.Fatal(err)
	}
	cert := pub.(*ssh.Certificate)
	if cert.CertType != ssh.HostCert || !slices.Equal(cert.ValidPrincipals, []string{"proxy1", "bastion.example.com", "10.0.0.9"}) {
		t.Fatalf("proxy host certificate: type %d principals %v", cert.CertType, cert.ValidPrincipals)
	}
	// A node token does not join a proxy, and neither name may be taken
	// by the other kind.
	tlsPub, _ := tlsPubPEM(t)
	for _, c := range []struct {
		name, public, role, want string
	}{
		{"proxy2", "p2.example.com:3023", TokenNode, "token"},
		{"web1", "p2.example.com:3023", TokenProxy, `belongs to node "web1"`},
		{"proxy2", "web1:3023", TokenProxy, `belongs to node "web1"`},
		{"proxy2", "p2.example.com", TokenProxy, "not host:port"},
	} {
		_, err := a.JoinProxy(ctx, api.ProxyJoinRequest{
			Token: nodeToken(t, a, c.role, nil), Name: c.name, PublicAddr: c.public, TunnelAddr: "p2.example.com:3024",
			HostPublicKey: authorizedKey(newPub(t)), TLSPublicKey: tlsPub,
		}, "127.0.0.1")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("join %s at %s with a %s token: err %v, want %q", c.name, c.public, c.role, err, c.want)
		}
	}
	if _, err := a.JoinNode(ctx, api.NodeJoinRequest{
		Token: nodeToken(t, a, TokenNode, nil), Name: "bastion.example.com",
		HostPublicKey: authorizedKey(newPub(t)), TLSPublicKey: tlsPub,
	}, "127.0.0.1"); err == nil || !strings.Contains(err.Error(), `belongs to proxy "proxy1"`) {
		t.Errorf("a node named like the proxy's public name: %v", err)
	}
	info := a.InfoWithProxies(ctx)
	if info.ProxyAddr != "bastion.example.com:3023" || len(info.Proxies) != 1 || info.Proxies[0].TunnelAddr != "10.0.0.9:3024" {
		t.Fatalf("info: proxy addr %q proxies %+v", info.ProxyAddr, info.Proxies)
	}
	// Proxies may share a public name (several behind one DNS name or
	// load balancer), but not another proxy's own name.
	if _, err := a.JoinProxy(ctx, api.ProxyJoinRequest{
		Token: nodeToken(t, a, TokenProxy, nil), Name: "proxy3", PublicAddr: "bastion.example.com:3023", TunnelAddr: "bastion.example.com:3024",
		HostPublicKey: authorizedKey(newPub(t)), TLSPublicKey: tlsPub,
	}, "127.0.0.1"); err != nil {
		t.Fatalf("a second proxy behind the same public name: %v", err)
	}
	if _, err := a.JoinProxy(ctx, api.ProxyJoinRequest{
		Token: nodeToken(t, a, TokenProxy, nil), Name: "proxy4", PublicAddr: "proxy1:3023", TunnelAddr: "p4.example.com:3024",
		HostPublicKey: authorizedKey(newPub(t)), TLSPublicKey: tlsPub,
	}, "127.0.0.1"); err == nil || !strings.Contains(err.Error(), `belongs to proxy "proxy1"`) {
		t.Fatalf("a proxy taking another proxy's name as its address: %v", err)
	}
	if err := a.RemoveProxy(ctx, "proxy3", "test"); err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveProxy(ctx, "proxy1", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.authenticateProxy(ctx, mustLeaf(t, id.TLSCertificate)); !errors.Is(err, ErrBadProxy) {
		t.Fatalf("removed proxy authenticates: %v", err)
	}
	_ = p
}

func mustLeaf(t testing.TB, pemText string) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode([]byte(pemText))
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func TestProxyIdentityIsNotANodeIdentity(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	nid, nleaf := joinNode(t, a, "web1", nil)
	pid, _ := joinProxy(t, a, "proxy1", "proxy1:3023", "proxy1:3024")
	if _, err := a.authenticateProxy(ctx, nleaf); !errors.Is(err, ErrBadProxy) {
		t.Fatalf("node identity accepted as proxy: %v", err)
	}
	if _, err := a.authenticateNode(ctx, mustLeaf(t, pid.TLSCertificate)); !errors.Is(err, ErrBadNode) {
		t.Fatalf("proxy identity accepted as node: %v", err)
	}
	_ = nid
}

func TestProxySessionCertChecksPolicy(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	ctx := context.Background()
	if _, err := a.AddRole(ctx, api.Role{Name: "prod-root", Logins: []string{"root", "{user}"}, NodeLabels: map[string][]string{"env": {"prod"}}}, "test"); err != nil {
		t.Fatal(err)
	}
	addUser(t, a, "alice", nil, []string{"prod-root"})
	joinNode(t, a, "web1", map[string]string{"env": "prod"})
	joinNode(t, a, "db1", map[string]string{"env": "staging"})
	_, p := joinProxy(t, a, "proxy1", "proxy1:3023", "proxy1:3024")
	req := func(user, login, node string) api.SessionCertRequest {
		return api.SessionCertRequest{User: user, Login: login, Node: node, SessionID: "s-1", PublicKey: authorizedKey(newPub(t)), TTL: api.Duration(time.Minute)}
	}
	c, err := a.ProxySessionCert(ctx, p, req("alice", "root", "web1"))
	if err != nil {
		t.Fatal(err)
	}
	if c.CertType != ssh.UserCert || c.KeyId != "user=alice proxy=proxy1 session=s-1" || !slices.Equal(c.ValidPrincipals, []string{"root"}) {
		t.Fatalf("session cert: %d %q %v", c.CertType, c.KeyId, c.ValidPrincipals)
	}
	if life := time.Duration(c.ValidBefore-uint64(clk.Now().Unix())) * time.Second; life > 5*time.Minute {
		t.Fatalf("session certificate lives %v", life)
	}
	if !bytes.Equal(c.SignatureKey.Marshal(), a.keys.session.PublicKey().Marshal()) {
		t.Fatal("session certificate not signed by the session CA")
	}
	if _, ok := c.Extensions[extPortForwarding]; ok {
		t.Fatalf("session cert permits port forwarding the role does not: %v", c.Extensions)
	}
	if _, err := a.ProxySessionCert(ctx, p, req("alice", "alice", "web1")); err != nil {
		t.Fatalf("personal login: %v", err)
	}
	// The forwarding the matching roles permit is carried to the node.
	if _, err := a.AddRole(ctx, api.Role{Name: "fwd", Logins: []string{"root"}, NodeLabels: map[string][]string{"env": {"prod"}}, PermitPortForwarding: true, PermitAgentForwarding: true}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.UpdateUser(ctx, "alice", api.UpdateUserRequest{Roles: &[]string{"prod-root", "fwd"}}, "test"); err != nil {
		t.Fatal(err)
	}
	c, err = a.ProxySessionCert(ctx, p, req("alice", "root", "web1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Extensions[extPortForwarding]; !ok {
		t.Fatalf("session cert lacks the role's port forwarding: %v", c.Extensions)
	}
	if _, ok := c.Extensions[extX11]; ok {
		t.Fatalf("session cert permits X11 no role gives: %v", c.Extensions)
	}
	var pe *PolicyError
	for _, c := range []struct{ user, login, node string }{
		{"alice", "postgres", "web1"}, // login not in the role
		{"alice", "root", "db1"},      // labels do not match
		{"mallory", "root", "web1"},   // no such user
	} {
		if _, err := a.ProxySessionCert(ctx, p, req(c.user, c.login, c.node)); !errors.As(err, &pe) {
			t.Errorf("%s as %s on %s: %v, want a policy error", c.user, c.login, c.node, err)
		}
	}
	if _, err := a.ProxySessionCert(ctx, p, req("alice", "root", "nosuch")); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown node: %v", err)
	}
	if err := a.LockUser(ctx, "alice", api.LockRequest{Reason: "test"}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ProxySessionCert(ctx, p, req("alice", "root", "web1")); !errors.As(err, &pe) {
		t.Errorf("locked user: %v", err)
	}
}

func TestProxyTargetCert(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	joinNode(t, a, "web1", nil, "10.1.2.3")
	_, p := joinProxy(t, a, "proxy1", "proxy1:3023", "proxy1:3024")
	c, err := a.ProxyTargetCert(ctx, p, api.TargetCertRequest{Node: "web1", PublicKey: authorizedKey(newPub(t)), TTL: api.Duration(100 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if c.CertType != ssh.HostCert || !slices.Equal(c.ValidPrincipals, []string{"web1", "10.1.2.3"}) {
		t.Fatalf("target cert: %d %v", c.CertType, c.ValidPrincipals)
	}
	if life := time.Duration(c.ValidBefore-c.ValidAfter) * time.Second; life > maxTargetCertTTL+backdate {
		t.Fatalf("target certificate lives %v", life)
	}
	if _, err := a.ProxyTargetCert(ctx, p, api.TargetCertRequest{Node: "../x", PublicKey: authorizedKey(newPub(t))}); err == nil {
		t.Fatal("bad node name accepted")
	}
}

func TestProxyPolicyFollowsChanges(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.followPolicyInputs(ctx)
	if _, err := a.AddRole(ctx, api.Role{Name: "r", Logins: []string{"root"}, NodeLabels: map[string][]string{"*": {"*"}}}, "test"); err != nil {
		t.Fatal(err)
	}
	addUser(t, a, "alice", nil, []string{"r"})
	joinNode(t, a, "web1", map[string]string{"env": "prod"})
	_, p := joinProxy(t, a, "proxy1", "proxy1:3023", "proxy1:3024")
	pol, err := a.ProxyPolicy(ctx, p, "", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(pol.Users) != 1 || pol.Users[0].Name != "alice" || len(pol.Nodes) != 1 || pol.Nodes[0].Labels["env"] != "prod" ||
		len(pol.Roles) != 1 || len(pol.Proxies) != 1 || pol.RecordingMode != "proxy" {
		t.Fatalf("policy: %+v", pol)
	}
	got := make(chan api.ProxyPolicy, 1)
	go func() {
		p2, _ := a.ProxyPolicy(ctx, p, pol.Hash, 10*time.Second, "")
		got <- p2
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := a.LockUser(ctx, "alice", api.LockRequest{Reason: "test"}, "test"); err != nil {
		t.Fatal(err)
	}
	p2 := <-got
	if !p2.Users[0].Locked || time.Since(start) > 5*time.Second {
		t.Fatalf("lock reached the proxy after %v: %+v", time.Since(start), p2.Users)
	}
}

func TestProxySessionsAndAudit(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	ctx := context.Background()
	_, p := joinProxy(t, a, "proxy1", "proxy1:3023", "proxy1:3024")
	s := api.Session{ID: "abc-1", User: "alice", Login: "root", Node: "web1", Started: clk.Now(), Recorded: true}
	if err := a.PutProxySessions(ctx, p, api.ActiveSessions{Sessions: []api.Session{s}, TTL: api.Duration(30 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	got, err := a.Sessions(ctx)
	if err != nil || len(got) != 1 || got[0].Proxy != "proxy1" || got[0].Login != "root" {
		t.Fatalf("sessions: %+v %v", got, err)
	}
	clk.Advance(31 * time.Second)
	if got, _ := a.Sessions(ctx); len(got) != 0 {
		t.Fatalf("a silent proxy's sessions still listed: %+v", got)
	}
	bad := s
	bad.ID, bad.Node = "abc-2", "web1\nfoo"
	if err := a.PutProxySessions(ctx, p, api.ActiveSessions{Sessions: []api.Session{bad, s}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Sessions(ctx); len(got) != 1 || got[0].ID != "abc-1" {
		t.Fatalf("a session with a bad node name was stored, or hid the good one: %+v", got)
	}

	ev := api.ProxyEvent{ID: "e1", Time: clk.Now(), Type: "session.exec", User: "alice", Success: true, Fields: map[string]string{"command": "ls"}}
	for range 2 { // a retried batch is stored once
		if err := a.ProxyAudit(ctx, p, []api.ProxyEvent{ev}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := a.Audit(ctx, AuditFilter{Type: "session.exec"})
	if err != nil || len(evs) != 1 || evs[0].Actor != "proxy:proxy1" || evs[0].Fields["command"] != "ls" {
		t.Fatalf("audit: %+v %v", evs, err)
	}
	// Content never makes a batch fail (the proxy would retry it
	// forever): it is cleaned and kept.
	odd := api.ProxyEvent{ID: "../../x", Type: "bad type\n", User: "Mallory\n", Success: false,
		Fields: map[string]string{"command": strings.Repeat("x", 10000)}}
	if err := a.ProxyAudit(ctx, p, []api.ProxyEvent{odd}); err != nil {
		t.Fatal(err)
	}
	evs, err = a.Audit(ctx, AuditFilter{Type: "proxy.event"})
	if err != nil || len(evs) != 1 || evs[0].User != "" || evs[0].Fields["user_given"] == "" ||
		evs[0].Fields["type_given"] == "" || len(evs[0].Fields["command"]) > 4100 {
		t.Fatalf("odd event: %+v %v", evs, err)
	}
}

func TestStoreRecording(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	_, p := joinProxy(t, a, "proxy1", "proxy1:3023", "proxy1:3024")
	cast := `{"version":2,"width":80,"height":24,"timestamp":1700000000,"user":"alice","login":"root","node":"web1","session_id":"s1"}` + "\n" +
		`[0.5,"o","hello\r\n"]` + "\n"
	rec, err := a.StoreRecording(ctx, p, "s1-0", strings.NewReader(cast))
	if err != nil {
		t.Fatal(err)
	}
	if rec.User != "alice" || rec.Node != "web1" || rec.Size != int64(len(cast)) || rec.Proxy != "proxy1" {
		t.Fatalf("recording: %+v", rec)
	}
	// Idempotent: a retry after a lost answer succeeds and changes nothing.
	if _, err := a.StoreRecording(ctx, p, "s1-0", strings.NewReader(cast)); err != nil {
		t.Fatal(err)
	}
	f, err := a.OpenRecording(ctx, "s1-0")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != cast {
		t.Fatalf("stored %q", b)
	}
	if fi, err := os.Stat(a.recordingPath("s1-0")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("recording file mode: %v %v", fi.Mode(), err)
	}
	list, err := a.Recordings(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("recordings: %+v %v", list, err)
	}
	for _, c := range []struct{ id, body string }{
		{"../etc", cast},
		{".hidden", cast},
		{"s2", "not json\n"},
		{"s3", `{"version":1}` + "\n"},
		{"s4", `{"version":2}`}, // no complete line
	} {
		if _, err := a.StoreRecording(ctx, p, c.id, strings.NewReader(c.body)); err == nil {
			t.Errorf("recording %q with body %.20q accepted", c.id, c.body)
		}
	}
	if _, err := a.OpenRecording(ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown recording: %v", err)
	}
	entries, _ := os.ReadDir(a.recordingsDir())
	if len(entries) != 1 {
		t.Fatalf("recordings dir holds %d entries after refused uploads", len(entries))
	}
}

func TestJoinNodeSSHAddr(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	tlsPub, _ := tlsPubPEM(t)
	for _, bad := range []string{"10.0.0.1", "host:22,x", "a b:22", ":22"} {
		_, err := a.JoinNode(ctx, api.NodeJoinRequest{
			Token: nodeToken(t, a, TokenNode, nil), Name: "web1", SSHAddr: bad,
			HostPublicKey: authorizedKey(newPub(t)), TLSPublicKey: tlsPub,
		}, "127.0.0.1")
		if err == nil {
			t.Errorf("sshd address %q accepted", bad)
		}
	}
	if _, err := a.JoinNode(ctx, api.NodeJoinRequest{
		Token: nodeToken(t, a, TokenNode, nil), Name: "web1", SSHAddr: "10.0.0.1:2222",
		HostPublicKey: authorizedKey(newPub(t)), TLSPublicKey: tlsPub,
	}, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	_, p := joinProxy(t, a, "proxy1", "proxy1:3023", "proxy1:3024")
	pol, err := a.ProxyPolicy(ctx, p, "", 0, "")
	if err != nil || len(pol.Nodes) != 1 || pol.Nodes[0].Addr != "10.0.0.1:2222" {
		t.Fatalf("policy nodes: %+v %v", pol.Nodes, err)
	}
}
