package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// joinProxyKey joins a proxy with a known host key and returns what its
// renewals need.
func joinProxyKey(t *testing.T, a *Authority, name string) (ssh.PublicKey, *x509.Certificate) {
	t.Helper()
	host := newPub(t)
	tlsPub, _ := tlsPubPEM(t)
	id, err := a.JoinProxy(context.Background(), api.ProxyJoinRequest{
		Token: nodeToken(t, a, TokenProxy, nil), Name: name, PublicAddr: name + ".example.com:3023", TunnelAddr: name + ".example.com:3024",
		HostPublicKey: authorizedKey(host), TLSPublicKey: tlsPub,
	}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(id.TLSCertificate))
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return host, leaf
}

// A proxy registers its session signer at renewal; nodes in mode proxy
// get it with their policy; a key that is not the proxy's own is refused
// (and audited), and removing the proxy withdraws it.
func TestProxySessionSigner(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	joinNode(t, a, "web1", map[string]string{"env": "prod"})
	host1, leaf1 := joinProxyKey(t, a, "proxy1")
	host2, leaf2 := joinProxyKey(t, a, "proxy2")
	signer := newPub(t)
	renew := func(host ssh.PublicKey, leaf *x509.Certificate, key string) error {
		_, err := a.RenewProxy(ctx, leaf, api.ProxyRenewRequest{HostPublicKey: authorizedKey(host), SessionSigner: key}, "127.0.0.1")
		return err
	}
	if err := renew(host1, leaf1, authorizedKey(signer)+" a comment"); err != nil {
		t.Fatalf("registering a session signer: %v", err)
	}
	p, err := a.buildNodePolicy(ctx, "web1")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, px := range p.Proxies {
		got[px.Name] = px.SessionSigner
	}
	if got["proxy1"] != authorizedKey(signer) || got["proxy2"] != "" {
		t.Fatalf("node policy signers = %q, want proxy1's key (without its comment) only", got)
	}

	ecdsaKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecdsaPub, _ := ssh.NewPublicKey(&ecdsaKey.PublicKey)
	for _, c := range []struct{ name, key, want string }{
		{"another proxy's signer", authorizedKey(signer), "another proxy"},
		{"the session CA key", authorizedKey(a.keys.session.PublicKey()), "not a CA key"},
		{"the user CA key", authorizedKey(a.keys.user.PublicKey()), "not a CA key"},
		{"its own host key", authorizedKey(host2), "host key"},
		{"not ed25519", authorizedKey(ecdsaPub), "ed25519"},
		{"garbage", "ssh-ed25519 AAAA", "key"},
	} {
		err := renew(host2, leaf2, c.key)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
	evs, err := a.Audit(ctx, AuditFilter{Type: "proxy.renew"})
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, e := range evs {
		if !e.Success {
			refused++
		}
	}
	if refused < 5 {
		t.Errorf("%d refused renewals audited, want at least 5", refused)
	}

	// Removing the proxy withdraws its signer from every node's policy.
	if err := a.RemoveProxy(ctx, "proxy1", "test"); err != nil {
		t.Fatal(err)
	}
	p, err = a.buildNodePolicy(ctx, "web1")
	if err != nil {
		t.Fatal(err)
	}
	for _, px := range p.Proxies {
		if px.SessionSigner != "" {
			t.Fatalf("signer of %s still in the node policy after proxy1 was removed", px.Name)
		}
	}
}
