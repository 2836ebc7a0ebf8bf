package sshproxy_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/opensshca/suite/ca"
	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/sshproxy/tunnel"
)

// TestSecurityProxy proves docs/SECURITY.md "Access: refused and
// audited" at the proxy: the CA and the proxy run in-process, one node is
// a real sshd behind teleport-node and its tunnel, and the client is
// x/crypto/ssh, so that a test can offer what ssh would not (a host
// certificate as a user's, a session certificate). For each refusal the
// client gets a message that names the problem (an authentication banner
// before authentication, the session's stderr or the channel's refusal
// after it), and the CA's audit log gets the proxy's event.
func TestSecurityProxy(t *testing.T) {
	ic := newInprocCluster(t, ca.ServerConfig{}, nil)
	a, ctx := ic.authority, context.Background()
	for _, r := range []api.Role{
		{Name: "prod", Logins: []string{"root"}, NodeLabels: map[string][]string{"env": {"prod"}}},
		{Name: "db", Logins: []string{"postgres"}, NodeLabels: map[string][]string{"env": {"staging"}}},
	} {
		if _, err := a.AddRole(ctx, r, "test"); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		if _, err := a.AddUser(ctx, api.AddUserRequest{Name: u, Roles: []string{"prod", "db"}, Password: "correct horse battery"}, "test"); err != nil {
			t.Fatal(err)
		}
	}
	node := ic.startNode("node1", map[string]string{"env": "prod"})
	// db1 is registered (env=staging) but runs nothing: the refusals
	// below come before the proxy dials it.
	db1Key := newHostKey(t)
	db1, err := a.JoinNode(ctx, api.NodeJoinRequest{
		Token: ic.token("node", map[string]string{"env": "staging"}), Name: "db1",
		HostPublicKey: string(ssh.MarshalAuthorizedKey(db1Key.PublicKey())), TLSPublicKey: tlsPublicKey(t),
	}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	waitTunnel(t, ic.user("alice"), "root", node, 20*time.Second)

	userKey := newHostKey(t) // any ed25519 signer
	sign := func(t *testing.T, user string, ttl time.Duration) *ssh.Certificate {
		t.Helper()
		c, err := a.IssueUserCert(ctx, ca.UserCertRequest{User: user, PublicKey: userKey.PublicKey(), TTL: ttl, Requester: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	hostCA, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(ic.hostCA))
	p := &proxyClient{t: t, addr: ic.proxyAddr, hostCA: hostCA, key: userKey}

	// audited waits for the proxy's event at the CA.
	audited := func(t *testing.T, typ string, match func(api.AuditEvent) bool) api.AuditEvent {
		t.Helper()
		var got api.AuditEvent
		eventually(t, 10*time.Second, "a "+typ+" event at the CA", func() bool {
			evs, err := a.Audit(ctx, ca.AuditFilter{Type: typ})
			if err != nil {
				t.Fatal(err)
			}
			for _, ev := range evs {
				if !ev.Success && ev.Actor == "proxy:proxy1" && match(ev) {
					got = ev
					return true
				}
			}
			return false
		})
		return got
	}
	reason := func(user, frag string) func(api.AuditEvent) bool {
		return func(ev api.AuditEvent) bool {
			return ev.User == user && strings.Contains(ev.Fields["reason"], frag)
		}
	}

	// Refused at authentication: the banner says why, the event holds
	// the checker's reason.
	for _, tc := range []struct {
		name       string
		cert       func(t *testing.T) *ssh.Certificate
		setup      func(t *testing.T)
		banner     string
		user, why  string
		shownToSSH bool
	}{
		{name: "expired certificate", cert: func(t *testing.T) *ssh.Certificate {
			ic.caClock.set(-3 * time.Hour)
			defer ic.caClock.set(0)
			return sign(t, "alice", time.Hour)
		}, banner: "your certificate expired at", user: "alice", why: "expired"},
		{name: "not-yet-valid certificate", cert: func(t *testing.T) *ssh.Certificate {
			ic.caClock.set(3 * time.Hour)
			defer ic.caClock.set(0)
			return sign(t, "alice", time.Hour)
		}, banner: "your certificate is valid from", user: "alice", why: "not yet valid"},
		{name: "certificate from an unknown CA", cert: func(t *testing.T) *ssh.Certificate {
			c := sign(t, "alice", time.Hour)
			if err := c.SignCert(rand.Reader, newHostKey(t)); err != nil {
				t.Fatal(err)
			}
			return c
		}, banner: `certificate "alice" is not signed by this cluster's user CA`, user: "alice", why: "certificate signed by unrecognized authority"},
		{name: "host certificate used as a user certificate", cert: func(t *testing.T) *ssh.Certificate {
			c, err := a.IssueHostCert(ctx, ca.HostCertRequest{Name: "alice", PublicKey: userKey.PublicKey(), TTL: time.Hour, Requester: "test"})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}, banner: "a host certificate was offered as a user certificate", user: "alice", why: "cert has type 2"},
		{name: "session-CA certificate presented by a user", cert: func(t *testing.T) *ssh.Certificate {
			c, err := a.IssueSessionCert(ctx, ca.SessionCertRequest{User: "alice", Login: "root", Proxy: "proxy1", SessionID: "s1", PublicKey: userKey.PublicKey(), TTL: 5 * time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}, banner: "is not signed by this cluster's user CA", why: "certificate signed by unrecognized authority"},
		{name: "revoked serial", cert: func(t *testing.T) *ssh.Certificate {
			c := sign(t, "bob", time.Hour)
			if _, err := a.Revoke(ctx, api.RevokeRequest{Serial: strconv.FormatUint(c.Serial, 10), Reason: "test"}, "test"); err != nil {
				t.Fatal(err)
			}
			return c
		}, banner: "was revoked; get a new one", user: "bob", why: "revoked"},
		{name: "locked user", cert: func(t *testing.T) *ssh.Certificate {
			c := sign(t, "carol", time.Hour)
			if err := a.LockUser(ctx, "carol", api.LockRequest{Reason: "test"}, "test"); err != nil {
				t.Fatal(err)
			}
			return c
		}, banner: "access denied: your account is locked", user: "carol", why: "is locked"},
		{name: "removed user with a valid certificate", cert: func(t *testing.T) *ssh.Certificate {
			c := sign(t, "dave", time.Hour)
			if err := a.RemoveUser(ctx, "dave", "test"); err != nil {
				t.Fatal(err)
			}
			return c
		}, banner: "access denied: user dave is not a user of this cluster", user: "dave", why: "not in the policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := tc.cert(t)
			var banner string
			var err error
			// A revocation, lock or removal reaches the proxy with its
			// next policy (a long poll: at once).
			eventually(t, 10*time.Second, "the proxy refusing", func() bool {
				banner, err = p.offer("root@node1", cert)
				return err != nil && strings.Contains(banner, tc.banner)
			})
			t.Logf("caller sees: %q", banner)
			wantPublic(t, banner)
			ev := audited(t, "proxy.auth", reason(tc.user, tc.why))
			if ev.Fields["stage"] != "" && ev.Fields["stage"] != "certificate" && ev.Fields["stage"] != "policy" {
				t.Errorf("event %+v", ev)
			}
		})
	}

	// Refused after authentication: the session's stderr says why.
	for _, tc := range []struct {
		name, user, msg, why string
	}{
		{"a login the role does not give", "postgres@node1",
			`access denied: no role of yours allows login "postgres" on node "node1"`, `allows login "postgres" on node "node1"`},
		{"a node whose labels the role does not match", "root@db1",
			`access denied: no role of yours allows login "root" on node "db1"`, `allows login "root" on node "db1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := p.run(tc.user, sign(t, "alice", time.Hour), "true")
			var ee *ssh.ExitError
			if !errors.As(err, &ee) || ee.ExitStatus() != 1 || !strings.Contains(out, "teleport-proxy: "+tc.msg) {
				t.Fatalf("err %v, output %q; want exit 1 and %q", err, out, tc.msg)
			}
			t.Logf("caller sees: %q", out)
			wantPublic(t, out)
			audited(t, "proxy.auth", reason("alice", tc.why))
		})
	}

	t.Run("agent and port forwarding the role does not permit", func(t *testing.T) {
		client, err := p.dial("root@node1", sign(t, "alice", time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		if _, err := client.Dial("tcp", "127.0.0.1:22"); err == nil || !strings.Contains(err.Error(), "port forwarding not permitted") {
			t.Errorf("direct-tcpip: %v, want a refusal naming port forwarding", err)
		}
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := agent.RequestAgentForwarding(s); err == nil {
			t.Error("agent forwarding request accepted")
		}
		out, err := s.CombinedOutput("echo ran")
		if err != nil || !strings.Contains(string(out), "teleport-proxy: agent forwarding not permitted by your roles on this node") || !strings.Contains(string(out), "ran") {
			t.Errorf("session: %v, output %q; want the command run and a line about agent forwarding", err, out)
		}
		for _, kind := range []string{"direct-tcpip", "auth-agent"} {
			audited(t, "session.forward", func(ev api.AuditEvent) bool { return ev.User == "alice" && ev.Fields["kind"] == kind })
		}
	})

	// Tunnels: the node's host certificate must be from the cluster's
	// host CA and name the node it claims to be.
	t.Run("tunnel from a host CA that is not trusted", func(t *testing.T) {
		rogueCA, key := newHostKey(t), newHostKey(t)
		cert := &ssh.Certificate{Key: key.PublicKey(), Serial: 1, CertType: ssh.HostCert, KeyId: "node1", ValidPrincipals: []string{"node1"},
			ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
		if err := cert.SignCert(rand.Reader, rogueCA); err != nil {
			t.Fatal(err)
		}
		wantTunnelRefused(t, ic.tunAddr, hostCA, "node1", cert, key)
		audited(t, "tunnel.refused", func(ev api.AuditEvent) bool {
			return ev.Fields["node"] == "node1" && strings.Contains(ev.Fields["reason"], "not a host CA")
		})
	})
	t.Run("user certificate used as a host certificate", func(t *testing.T) {
		// tunnel.Client will not even offer one: a raw client does.
		_, err := p.offerAt(ic.tunAddr, "node1", sign(t, "alice", time.Hour))
		if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Fatalf("a user certificate on the tunnel listener: %v", err)
		}
		audited(t, "tunnel.refused", func(ev api.AuditEvent) bool {
			return ev.Fields["node"] == "node1" && strings.Contains(ev.Fields["reason"], "user certificate, not a host certificate")
		})
	})
	t.Run("a node registering under another node's name", func(t *testing.T) {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(db1.HostCertificate))
		if err != nil {
			t.Fatal(err)
		}
		wantTunnelRefused(t, ic.tunAddr, hostCA, "node1", pub.(*ssh.Certificate), db1Key)
		audited(t, "tunnel.refused", func(ev api.AuditEvent) bool {
			return ev.Fields["node"] == "node1" && strings.Contains(ev.Fields["reason"], `"node1" is not among the certificate's principals`)
		})
		// node1's own tunnel still carries node1's sessions.
		if out, code := ic.user("alice").run(t, nil, "ssh", "root@node1", "true"); code != 0 {
			t.Fatalf("node1 after the impostor: exit %d\n%s", code, out)
		}
	})
}

// proxyClient logs in to the proxy with x/crypto/ssh, verifying its host
// certificate against the host CA.
type proxyClient struct {
	t      *testing.T
	addr   string
	hostCA ssh.PublicKey
	key    ssh.Signer
}

func (p *proxyClient) config(user string, cert *ssh.Certificate, banners *strings.Builder) *ssh.ClientConfig {
	signer, err := ssh.NewCertSigner(cert, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	checker := &ssh.CertChecker{IsHostAuthority: func(k ssh.PublicKey, _ string) bool {
		return string(k.Marshal()) == string(p.hostCA.Marshal())
	}}
	return &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: checker.CheckHostKey,
		BannerCallback:  func(m string) error { banners.WriteString(m); return nil },
		Timeout:         10 * time.Second,
	}
}

func (p *proxyClient) dial(user string, cert *ssh.Certificate) (*ssh.Client, error) {
	var b strings.Builder
	return ssh.Dial("tcp", p.addr, p.config(user, cert, &b))
}

// offer authenticates with cert and returns the banners the proxy sent.
func (p *proxyClient) offer(user string, cert *ssh.Certificate) (string, error) {
	return p.offerAt(p.addr, user, cert)
}

func (p *proxyClient) offerAt(addr, user string, cert *ssh.Certificate) (string, error) {
	var b strings.Builder
	c, err := ssh.Dial("tcp", addr, p.config(user, cert, &b))
	if err == nil {
		c.Close()
	}
	return b.String(), err
}

// run runs cmd in a session and returns its output.
func (p *proxyClient) run(user string, cert *ssh.Certificate, cmd string) (string, error) {
	c, err := p.dial(user, cert)
	if err != nil {
		return "", err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	out, err := s.CombinedOutput(cmd)
	return string(out), err
}

// wantPublic fails t if a message for a user shows the proxy's
// internals: Go error prefixes, paths, stack traces.
func wantPublic(t *testing.T, msg string) {
	t.Helper()
	for _, bad := range []string{"ssh: ", "/var/lib", "/tmp/", ".go:", "goroutine", "panic", "policy.json"} {
		if strings.Contains(msg, bad) {
			t.Errorf("message %q shows internals (%q)", msg, bad)
		}
	}
}

// wantTunnelRefused runs a tunnel client for node with cert and fails t
// unless the proxy refuses it.
func wantTunnelRefused(t *testing.T, addr string, hostCA ssh.PublicKey, node string, cert *ssh.Certificate, key ssh.Signer) {
	t.Helper()
	states := make(chan error, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := &tunnel.Client{
		Node: node, ProxyAddr: addr, Target: "127.0.0.1:1",
		Signer:  func() (ssh.Signer, error) { return ssh.NewCertSigner(cert, key) },
		HostCAs: func() []ssh.PublicKey { return []ssh.PublicKey{hostCA} },
		OnState: func(up bool, err error) {
			if up {
				err = errors.New("connected")
			}
			select {
			case states <- err:
			default:
			}
		},
	}
	go func() { _ = cl.Run(ctx) }()
	select {
	case err := <-states:
		if !errors.Is(err, tunnel.ErrNodeRefused) {
			t.Fatalf("tunnel as %s: %v, want ErrNodeRefused", node, err)
		}
	case <-ctx.Done():
		t.Fatal("no answer from the proxy")
	}
}

func newHostKey(t *testing.T) ssh.Signer {
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

// tlsPublicKey is a PEM PKIX ed25519 public key for a join request.
func tlsPublicKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}
