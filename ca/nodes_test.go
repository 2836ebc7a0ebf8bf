package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

func tlsPubPEM(t testing.TB) (string, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), k
}

func nodeToken(t testing.TB, a *Authority, role string, labels map[string]string) string {
	t.Helper()
	resp, err := a.AddToken(context.Background(), api.AddTokenRequest{Role: role, Labels: labels}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Secret
}

// joinNode joins a node and returns its identity and leaf certificate.
func joinNode(t testing.TB, a *Authority, name string, labels map[string]string, addrs ...string) (api.NodeIdentity, *x509.Certificate) {
	t.Helper()
	tlsPub, _ := tlsPubPEM(t)
	id, err := a.JoinNode(context.Background(), api.NodeJoinRequest{
		Token: nodeToken(t, a, TokenNode, labels), Name: name, Addresses: addrs,
		HostPublicKey: authorizedKey(newPub(t)), TLSPublicKey: tlsPub,
	}, "127.0.0.1")
	if err != nil {
		t.Fatalf("JoinNode(%s): %v", name, err)
	}
	blk, _ := pem.Decode([]byte(id.TLSCertificate))
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return id, leaf
}

func TestJoinNode(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	ctx := context.Background()
	id, leaf := joinNode(t, a, "web1", map[string]string{"env": "prod"}, "10.0.0.5")
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(id.HostCertificate))
	if err != nil {
		t.Fatal(err)
	}
	cert := pub.(*ssh.Certificate)
	if cert.CertType != ssh.HostCert || !slices.Equal(cert.ValidPrincipals, []string{"web1", "10.0.0.5"}) || cert.KeyId != "web1" {
		t.Fatalf("host certificate: type %d principals %v key id %q", cert.CertType, cert.ValidPrincipals, cert.KeyId)
	}
	if id.Labels["env"] != "prod" || leaf.URIs[0].String() != "teleport://node/web1" {
		t.Fatalf("identity: labels %v uri %v", id.Labels, leaf.URIs)
	}
	if _, err := a.authenticateNode(ctx, leaf); err != nil {
		t.Fatalf("authenticateNode: %v", err)
	}

	tlsPub, _ := tlsPubPEM(t)
	req := func(token, name string) api.NodeJoinRequest {
		return api.NodeJoinRequest{Token: token, Name: name, HostPublicKey: authorizedKey(newPub(t)), TLSPublicKey: tlsPub}
	}
	// A used token, a keyhelper or proxy token, an expired token.
	used := nodeToken(t, a, TokenNode, nil)
	if _, err := a.JoinNode(ctx, req(used, "web2"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := a.JoinNode(ctx, req(used, "web3"), ""); !errors.Is(err, ErrBadToken) {
		t.Fatalf("used token: %v", err)
	}
	if _, err := a.JoinNode(ctx, req(nodeToken(t, a, TokenProxy, nil), "web3"), ""); !errors.Is(err, ErrBadToken) {
		t.Fatalf("proxy token: %v", err)
	}
	expiring := nodeToken(t, a, TokenNode, nil)
	clk.Advance(16 * time.Minute)
	if _, err := a.JoinNode(ctx, req(expiring, "web3"), ""); !errors.Is(err, ErrBadToken) {
		t.Fatalf("expired token: %v", err)
	}
	// Another node's name, as name or as an extra principal; the token
	// is not spent on a refused name.
	tok := nodeToken(t, a, TokenNode, nil)
	if _, err := a.JoinNode(ctx, req(tok, "web1"), ""); !errors.Is(err, ErrExists) {
		t.Fatalf("taken name: %v", err)
	}
	r := req(tok, "web4")
	r.FQDN = "web1"
	if _, err := a.JoinNode(ctx, r, ""); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `belongs to node "web1"`) {
		t.Fatalf("another node's name as FQDN: %v", err)
	}
	r = req(tok, "web4")
	r.Addresses = []string{"10.0.0.5"} // addresses may be shared
	if _, err := a.JoinNode(ctx, r, ""); err != nil {
		t.Fatalf("shared address: %v", err)
	}
	for _, bad := range []string{"Web5", "10.1.1.1", "a,b", "web5\nHostKey /etc/shadow", ""} {
		if _, err := a.JoinNode(ctx, req(nodeToken(t, a, TokenNode, nil), bad), ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	// Removal stops the identity.
	if err := a.RemoveNode(ctx, "web1", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.authenticateNode(ctx, leaf); !errors.Is(err, ErrBadNode) {
		t.Fatalf("removed node: %v", err)
	}
}

func TestRenewNodeKeepsKeyAndPrincipals(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	hostPub := newPub(t)
	tlsPub, _ := tlsPubPEM(t)
	id, err := a.JoinNode(ctx, api.NodeJoinRequest{Token: nodeToken(t, a, TokenNode, nil), Name: "db1", FQDN: "db1.example.com",
		HostPublicKey: authorizedKey(hostPub), TLSPublicKey: tlsPub}, "")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(id.TLSCertificate))
	leaf, _ := x509.ParseCertificate(blk.Bytes)
	got, err := a.RenewNode(ctx, leaf, api.NodeRenewRequest{HostPublicKey: authorizedKey(hostPub)}, "")
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(got.HostCertificate))
	if c := pub.(*ssh.Certificate); !slices.Equal(c.ValidPrincipals, []string{"db1", "db1.example.com"}) {
		t.Fatalf("renewed principals %v", c.ValidPrincipals)
	}
	if _, err := a.RenewNode(ctx, leaf, api.NodeRenewRequest{HostPublicKey: authorizedKey(newPub(t))}, ""); err == nil {
		t.Fatal("renewal for another host key accepted")
	}
}

func TestNodePolicy(t *testing.T) {
	a, clk := newTestAuthority(t, func(c *Config) { c.UIDMin, c.UIDMax = 70000, 70003 })
	ctx := context.Background()
	for _, r := range []api.Role{
		{Name: "prod-root", Logins: []string{"root"}, NodeLabels: map[string][]string{"env": {"prod"}}},
		{Name: "devs", Logins: []string{"{user}", "deploy"}, NodeLabels: map[string][]string{"env": {"staging", "prod"}, "team": {"*"}}, Groups: []string{"cluster-sudo"}},
	} {
		if _, err := a.AddRole(ctx, r, "test"); err != nil {
			t.Fatal(err)
		}
	}
	addUser(t, a, "alice", nil, []string{"prod-root", "devs"})
	addUser(t, a, "bob", nil, []string{"devs"})
	addUser(t, a, "carol", nil, []string{"prod-root"})
	_, leaf := joinNode(t, a, "web1", map[string]string{"env": "prod", "team": "x"})
	joinNode(t, a, "web2", map[string]string{"env": "staging"}) // no team label: devs does not match
	n, err := a.authenticateNode(ctx, leaf)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.NodePolicy(ctx, n, "", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]api.NodeUser{}
	for _, u := range p.Users {
		byName[u.Name] = u
	}
	if len(byName) != 3 || !slices.Equal(byName["alice"].Logins, []string{"alice", "deploy", "root"}) ||
		!slices.Equal(byName["bob"].Logins, []string{"bob", "deploy"}) || !slices.Equal(byName["carol"].Logins, []string{"root"}) {
		t.Fatalf("policy users: %+v", p.Users)
	}
	if byName["alice"].UID == 0 || byName["bob"].UID == 0 || byName["alice"].UID == byName["bob"].UID || byName["carol"].UID != 0 {
		t.Fatalf("uids: alice %d bob %d carol %d", byName["alice"].UID, byName["bob"].UID, byName["carol"].UID)
	}
	if !slices.Equal(byName["alice"].Groups, []string{"cluster-sudo"}) || p.Groups["cluster-sudo"] < 70000 {
		t.Fatalf("groups: %v %v", byName["alice"].Groups, p.Groups)
	}

	// Polling does not rewrite the node record each time (a write to
	// nodes/ wakes every waiting node).
	before, err := a.store.Get(ctx, nodeKey("web1"))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		n, _ := a.authenticateNode(ctx, leaf)
		if _, err := a.NodePolicy(ctx, n, "", 0, ""); err != nil {
			t.Fatal(err)
		}
	}
	if after, _ := a.store.Get(ctx, nodeKey("web1")); after.Revision != before.Revision {
		t.Fatalf("node record rewritten by policy polls: revision %d -> %d", before.Revision, after.Revision)
	}

	// Unchanged: a wait returns the same hash after the wait.
	start := time.Now()
	same, err := a.NodePolicy(ctx, n, p.Hash, 300*time.Millisecond, "")
	if err != nil || same.Hash != p.Hash || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("unchanged wait: hash %s (want %s) after %v, err %v", same.Hash, p.Hash, time.Since(start), err)
	}
	// A lock during the wait answers at once.
	go func() {
		time.Sleep(100 * time.Millisecond)
		if err := a.LockUser(ctx, "bob", api.LockRequest{}, "test"); err != nil {
			t.Error(err)
		}
	}()
	start = time.Now()
	locked, err := a.NodePolicy(ctx, n, p.Hash, 10*time.Second, "")
	if err != nil || locked.Hash == p.Hash || time.Since(start) > 5*time.Second {
		t.Fatalf("lock during wait: changed=%v after %v, err %v", locked.Hash != p.Hash, time.Since(start), err)
	}
	for _, u := range locked.Users {
		if u.Name == "bob" && !u.Locked {
			t.Fatal("bob not marked locked")
		}
	}

	// A uid is never handed out again: bob removed and re-added gets a
	// new one; the range then runs out with a clear error.
	bobUID := byName["bob"].UID
	if err := a.RemoveUser(ctx, "bob", "test"); err != nil {
		t.Fatal(err)
	}
	addUser(t, a, "bob", nil, []string{"devs"})
	clk.Advance(time.Second)
	p2, err := a.buildNodePolicy(ctx, "web1")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range p2.Users {
		if u.Name == "bob" && (u.UID == bobUID || u.UID == byName["alice"].UID) {
			t.Fatalf("re-added bob got a used uid %d", u.UID)
		}
	}
	addUser(t, a, "dave", nil, []string{"devs"})
	if _, err := a.buildNodePolicy(ctx, "web1"); err == nil || !strings.Contains(err.Error(), "used up") {
		t.Fatalf("exhausted uid range: %v", err)
	}
}

func TestRevokeInPolicy(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	ctx := context.Background()
	addUser(t, a, "alice", []string{"root"}, nil)
	c, err := a.IssueUserCert(ctx, UserCertRequest{User: "alice", PublicKey: newPub(t), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	serial := CertView(c).Serial
	if _, err := a.Revoke(ctx, api.RevokeRequest{Serial: "12345"}, "test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoking an unknown serial: %v", err)
	}
	rc, err := a.Revoke(ctx, api.RevokeRequest{Serial: serial, Reason: "stolen laptop"}, "test")
	if err != nil || rc.Type != "user" || rc.KeyID != "alice" {
		t.Fatalf("Revoke: %+v %v", rc, err)
	}
	if _, err := a.Revoke(ctx, api.RevokeRequest{Serial: serial}, "test"); !errors.Is(err, ErrExists) {
		t.Fatalf("second revoke: %v", err)
	}
	joinNode(t, a, "web1", nil)
	p, err := a.buildNodePolicy(ctx, "web1")
	if err != nil || len(p.Revoked) != 1 || p.Revoked[0].Serial != serial || p.Revoked[0].CA != "user" {
		t.Fatalf("policy revoked: %+v %v", p.Revoked, err)
	}
	// Once the certificate has expired the revocation is dropped.
	clk.Advance(2 * time.Hour)
	if n, err := a.Sweep(ctx); err != nil || n == 0 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if rs, _ := a.Revoked(ctx); len(rs) != 0 {
		t.Fatalf("expired revocation kept: %v", rs)
	}
}

func TestMatchLabels(t *testing.T) {
	for _, c := range []struct {
		sel    map[string][]string
		labels map[string]string
		want   bool
	}{
		{nil, map[string]string{"env": "prod"}, false},
		{map[string][]string{"*": {"*"}}, nil, true},
		{map[string][]string{"env": {"prod"}}, map[string]string{"env": "prod"}, true},
		{map[string][]string{"env": {"prod"}}, map[string]string{"env": "staging"}, false},
		{map[string][]string{"env": {"*"}}, map[string]string{"env": "x"}, true},
		{map[string][]string{"env": {"*"}}, nil, false},
		{map[string][]string{"env": {"prod"}, "team": {"a"}}, map[string]string{"env": "prod"}, false},
	} {
		if got := matchLabels(c.sel, c.labels); got != c.want {
			t.Errorf("matchLabels(%v, %v) = %v", c.sel, c.labels, got)
		}
	}
}

func TestRoleGroupsNeedPersonalLogin(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	_, err := a.AddRole(context.Background(), api.Role{Name: "x", Logins: []string{"root"}, NodeLabels: map[string][]string{"*": {"*"}}, Groups: []string{"wheel"}}, "test")
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("groups without {user}: %v", err)
	}
	_, err = a.AddRole(context.Background(), api.Role{Name: "y", Logins: []string{"{user}"}, NodeLabels: map[string][]string{"*": {"*"}}, Groups: []string{"a:b"}}, "test")
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad group name: %v", err)
	}
}
