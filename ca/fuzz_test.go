package ca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/authkeys"
	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// The fuzz targets cover every request decoder and validator. Seeds live in
// testdata/fuzz/<target>/ and run with every `go test`.

// safeName reports whether s can reach sshd output without injecting.
func safeName(s string) bool {
	return s != "" && !strings.ContainsAny(s, ",\"' \t\r\n`") && describeBad(s) == ""
}

func FuzzDecodeLoginRequest(f *testing.F) {
	f.Add([]byte(`{"user":"alice","password":"pw","totp":"123456"}`))
	f.Add([]byte(`{"user":"alice","extra":1}`))
	f.Add([]byte(`{"user":"alice"} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeBytes[api.LoginRequest](b)
		if err != nil {
			return
		}
		if ValidateUserName(req.User) == nil && !safeName(req.User) {
			t.Fatalf("unsafe user name %q validated", req.User)
		}
		matchTOTP("JBSWY3DPEHPK3PXP", req.TOTP, fixedNow)
	})
}

func FuzzDecodeSignUserRequest(f *testing.F) {
	f.Add([]byte(`{"public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHqZo7uYNQH7BkaVZPesxL3cdtEucY574XCwQZqAp0tm","ttl":"1h","logins":["root"]}`))
	f.Add([]byte(`{"ttl":5}`))
	f.Add([]byte(`{"ttl":"-1h"}`))
	lv := LoginValidator{}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeBytes[api.SignUserRequest](b)
		if err != nil {
			return
		}
		if pub, err := ParsePublicKey(req.PublicKey); err == nil {
			if _, isCert := pub.(*ssh.Certificate); isCert {
				t.Fatal("certificate accepted as a public key")
			}
		}
		for _, l := range req.Logins {
			if lv.Validate(l) == nil && !safeName(l) {
				t.Fatalf("unsafe login %q validated", l)
			}
		}
	})
}

func FuzzDecodeAddUserRequest(f *testing.F) {
	f.Add([]byte(`{"name":"alice","logins":["root","alice"],"roles":["ops"],"password":"secret123"}`))
	f.Add([]byte(`{"name":"al,ice"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeBytes[api.AddUserRequest](b)
		if err != nil {
			return
		}
		if ValidateUserName(req.Name) == nil && !safeName(req.Name) {
			t.Fatalf("unsafe name %q validated", req.Name)
		}
		checkNewPassword(req.Password)
	})
}

func FuzzDecodeRole(f *testing.F) {
	f.Add([]byte(`{"name":"ops","logins":["root","{user}"],"node_labels":{"env":["prod","*"]},"max_ttl":"8h","source_address":["10.0.0.0/8"]}`))
	f.Add([]byte(`{"name":"all","logins":["x"],"node_labels":{"*":["*"]}}`))
	f.Add([]byte(`{"name":"bad","logins":["a,b"],"node_labels":{"e nv":["x"]}}`))
	a := &Authority{}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeBytes[api.Role](b)
		if err != nil {
			return
		}
		if a.validateRole(&r) != nil {
			return
		}
		for _, l := range r.Logins {
			if l != UserLoginPlaceholder && !safeName(l) {
				t.Fatalf("unsafe login %q in valid role", l)
			}
		}
		for k, vs := range r.NodeLabels {
			for _, v := range vs {
				if !safeName(k) || v != "" && describeBad(v) != "" {
					t.Fatalf("unsafe label %q=%q in valid role", k, v)
				}
			}
		}
	})
}

func FuzzDecodeAddTokenRequest(f *testing.F) {
	f.Add([]byte(`{"role":"node","labels":{"env":"prod"},"ttl":"15m"}`))
	f.Add([]byte(`{"role":"keyhelper","user":"alice","reusable":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeBytes[api.AddTokenRequest](b)
		if err != nil {
			return
		}
		for k, v := range req.Labels {
			if ValidateLabel(k, v) == nil && (!safeName(k) || v != "" && !safeName(v)) {
				t.Fatalf("unsafe label %q=%q validated", k, v)
			}
		}
	})
}

func FuzzDecodeAdminSignRequest(f *testing.F) {
	f.Add([]byte(`{"host":true,"name":"node1","principals":["10.0.0.1","node1.example.com"],"public_key":"ssh-ed25519 AAAA"}`))
	f.Add([]byte(`{"name":"bot","logins":["deploy"],"ttl":"1h"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeBytes[api.AdminSignRequest](b)
		if err != nil {
			return
		}
		for _, p := range append([]string{req.Name}, req.Principals...) {
			if ValidateHostPrincipal(p) == nil && !safeName(p) {
				t.Fatalf("unsafe host principal %q validated", p)
			}
		}
	})
}

func FuzzDecodeLockRequest(f *testing.F) {
	f.Add([]byte(`{"until":"2026-11-21T10:00:00Z","reason":"left the company"}`))
	f.Add([]byte(`{"until":"yesterday"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeBytes[api.LockRequest](b)
	})
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHqZo7uYNQH7BkaVZPesxL3cdtEucY574XCwQZqAp0tm alice@laptop")
	f.Add("ssh-dss AAAAB3NzaC1kc3M=")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := ParsePublicKey(s)
		if err == nil && CheckPublicKey(pub) != nil {
			t.Fatal("ParsePublicKey accepted a key CheckPublicKey refuses")
		}
	})
}

func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=65536,t=3,p=2$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$m=99999999,t=3,p=2$AAAA$AAAA")
	f.Add("$argon2i$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		p, _, _, err := parsePHC(s)
		if err == nil && (p.MemoryKiB > maxArgonMemoryKiB || p.Time > maxArgonTime) {
			t.Fatalf("parsePHC accepted out-of-range parameters %+v", p)
		}
	})
}

func FuzzValidators(f *testing.F) {
	for _, s := range []string{"root", "a,b", "node1.example.com", "10.0.0.0/8", "user=a proxy=b", "x\ny", "ö"} {
		f.Add(s)
	}
	lv := LoginValidator{}
	f.Fuzz(func(t *testing.T, s string) {
		for name, fn := range map[string]func(string) error{
			"login": lv.Validate, "user": ValidateUserName, "role": ValidateRoleName,
			"host": ValidateHostPrincipal, "source": ValidateSourceAddress,
		} {
			if fn(s) == nil && !safeName(s) {
				t.Fatalf("%s validator accepted unsafe %q", name, s)
			}
		}
		if ValidateKeyID(s) == nil && strings.ContainsAny(s, ",\"\n\r") {
			t.Fatalf("key id validator accepted %q", s)
		}
	})
}

func FuzzDecodeUpdateUserRequest(f *testing.F) {
	f.Add([]byte(`{"roles":["dev","ops"],"logins":["alice"]}`))
	f.Add([]byte(`{"roles":[],"logins":[]}`))
	f.Add([]byte(`{"roles":null}`))
	a := &Authority{}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeBytes[api.UpdateUserRequest](b)
		if err != nil || req.Logins == nil {
			return
		}
		r := api.Role{Name: "user:x", Logins: *req.Logins, NodeLabels: map[string][]string{"*": {"*"}}}
		if a.validateRole(&r) == nil {
			for _, l := range r.Logins {
				if l != UserLoginPlaceholder && !safeName(l) {
					t.Fatalf("unsafe login %q validated", l)
				}
			}
		}
	})
}

func FuzzDecodeResetUserRequest(f *testing.F) {
	f.Add([]byte(`{"password":"a new password"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeBytes[api.ResetUserRequest](b)
		if err == nil && req.Password != "" && checkNewPassword(req.Password) == nil && strings.ContainsAny(req.Password, "\n\x00") {
			t.Fatalf("password with newline or NUL accepted: %q", req.Password)
		}
	})
}

// Machine requests: nodes, proxies and keyhelper devices. The decoders
// are the same generic decodeJSON; the targets below check that what it
// accepts survives a round trip, and that the validators behind each
// endpoint agree with the consumers of what they accept.

// fuzzSeedKey is a fixed ed25519 key for seeds, so that the committed
// corpus does not change from run to run.
func fuzzSeedKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func fuzzSeedSSHKey(t testing.TB, seed byte) string {
	t.Helper()
	p, err := ssh.NewPublicKey(fuzzSeedKey(seed).Public())
	if err != nil {
		t.Fatal(err)
	}
	return authorizedKey(p)
}

func fuzzSeedTLSKey(t testing.TB, seed byte) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(fuzzSeedKey(seed).Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// roundTrip decodes b as a T and, when that succeeds, checks that the
// value marshals to JSON that decodes to the same value.
func roundTrip[T any](t *testing.T, b []byte) {
	t.Helper()
	v, err := decodeBytes[T](b)
	if err != nil {
		var mbe *http.MaxBytesError
		if !errors.Is(err, ErrInvalid) && !errors.As(err, &mbe) && len(b) <= api.MaxBodyBytes {
			t.Fatalf("%T: error %v is not ErrInvalid", v, err)
		}
		return
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%T: accepted %+v, which does not marshal: %v", v, v, err)
	}
	v2, err := decodeBytes[T](out)
	if err != nil {
		t.Fatalf("%T: re-marshalled %s does not decode: %v", v, out, err)
	}
	if out2, _ := json.Marshal(v2); !bytes.Equal(out, out2) {
		t.Fatalf("%T: round trip changed the value:\n%s\n%s", v, out, out2)
	}
}

// FuzzDecodeMachineRequests: every request body of the node, proxy and
// device endpoints (the first byte picks the type) is refused with
// ErrInvalid or decodes to a value that survives a JSON round trip.
func FuzzDecodeMachineRequests(f *testing.F) {
	for i, s := range []string{
		`{"token":"t","name":"web1","fqdn":"web1.example.com","addresses":["10.0.0.1"],"ssh_addr":"10.0.0.1:22","host_public_key":"ssh-ed25519 AAAA","tls_public_key":"-----BEGIN PUBLIC KEY-----"}`,
		`{"host_public_key":"ssh-ed25519 AAAA"}`,
		`{"token":"t","name":"proxy1","public_addr":"proxy1:3023","tunnel_addr":"proxy1:3024","host_public_key":"","tls_public_key":""}`,
		`{"host_public_key":"k","public_addr":"[::1]:3023"}`,
		`{"user":"alice","login":"root","node":"web1","session_id":"s1","public_key":"k","ttl":"2m","source_address":["10.0.0.9"]}`,
		`{"node":"web1","public_key":"k","ttl":"6h"}`,
		`{"sessions":[{"id":"s1","proxy":"p","user":"alice","login":"root","node":"web1","started":"2026-11-21T07:00:00Z","recorded":true,"channels":["shell"]}],"ttl":"30s"}`,
		`[{"time":"2026-11-21T07:00:00.5+01:00","type":"session.start","user":"alice","success":true,"fields":{"node":"web1"},"id":"e1"}]`,
		`{"token":"t","user":"alice","public_key":"-----BEGIN PUBLIC KEY-----"}`,
		`{"public_key":"ssh-ed25519 AAAA","ttl":"1h"}`,
		`{"serial":"12345","reason":"lost laptop"}`,
		`[{"id":"d1","time":"2026-11-21T07:00:00Z","login":"root","key_id":"user=bob proxy=p1 session=s1","serial":"42","reason":"user \"bob\" is locked"}]`,
	} {
		f.Add(append([]byte{byte(i)}, s...))
	}
	f.Add([]byte("\x06{\"sessions\":null,\"ttl\":5}"))
	f.Add([]byte("\x07[{\"time\":\"10000-01-01T00:00:00Z\"}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		body := b[1:]
		switch b[0] % 12 {
		case 0:
			roundTrip[api.NodeJoinRequest](t, body)
		case 1:
			roundTrip[api.NodeRenewRequest](t, body)
		case 2:
			roundTrip[api.ProxyJoinRequest](t, body)
		case 3:
			roundTrip[api.ProxyRenewRequest](t, body)
		case 4:
			roundTrip[api.SessionCertRequest](t, body)
		case 5:
			roundTrip[api.TargetCertRequest](t, body)
		case 6:
			roundTrip[api.ActiveSessions](t, body)
		case 7:
			roundTrip[[]api.ProxyEvent](t, body)
		case 8:
			roundTrip[api.RegisterDeviceRequest](t, body)
		case 9:
			roundTrip[api.DeviceCertRequest](t, body)
		case 10:
			roundTrip[api.RevokeRequest](t, body)
		case 11:
			roundTrip[[]api.NodeDenial](t, body)
		}
	})
}

// nodeRecordExists reports whether the store holds key.
func recordExists(t *testing.T, a *Authority, key string) bool {
	t.Helper()
	_, err := a.store.Get(context.Background(), key)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("store get %s: %v", key, err)
	}
	return err == nil
}

// checkHostCertText checks a host certificate the CA issued: every
// principal validates and is safe to hand to sshd, the first is name.
func checkHostCertText(t *testing.T, text, name string) *ssh.Certificate {
	t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		t.Fatalf("issued host certificate does not parse: %v", err)
	}
	c, ok := pub.(*ssh.Certificate)
	if !ok || c.CertType != ssh.HostCert || len(c.ValidPrincipals) == 0 || c.ValidPrincipals[0] != name || c.KeyId != name {
		t.Fatalf("issued host certificate %+v for %q", c, name)
	}
	for _, p := range c.ValidPrincipals {
		if ValidateHostPrincipal(p) != nil || !safeName(p) {
			t.Fatalf("host certificate of %q carries principal %q", name, p)
		}
	}
	return c
}

// checkNodeNameInCache: a node name the CA accepts is one the node can
// write into its policy cache (authkeys refuses to marshal other names,
// and a node that cannot write its cache denies every login).
func checkNodeNameInCache(t *testing.T, name string) {
	t.Helper()
	ca, err := ssh.NewPublicKey(fuzzSeedKey(9).Public())
	if err != nil {
		t.Fatal(err)
	}
	c := &authkeys.Cache{Node: name, Mode: authkeys.ModeOff, TrustedCA: ca, Hash: "00", Users: map[string]authkeys.Access{}}
	if _, err := c.Marshal(); err != nil {
		t.Fatalf("node name %q accepted by the CA cannot go into the node's cache: %v", name, err)
	}
}

// FuzzJoinNode: a join the CA accepts issues a host certificate whose
// principals all validate, under a name the node can use; a refused join
// leaves no node record.
func FuzzJoinNode(f *testing.F) {
	host, tlsKey := fuzzSeedSSHKey(f, 1), fuzzSeedTLSKey(f, 2)
	f.Add("web1", "web1.example.com", "10.0.0.1,fe80::1", "10.0.0.1:22", host, tlsKey)
	f.Add("web1", "", "", "", host, tlsKey)
	f.Add("Web1", "", "", "", host, tlsKey)
	f.Add("10.0.0.1", "", "", "", host, tlsKey)
	f.Add("web1", "a,b", "", "", host, tlsKey)
	f.Add("web1", "", "fe80::1%eth0", "[fe80::1%eth0]:22", host, tlsKey)
	f.Add("web1", "", "", "web1:022", host, tlsKey)
	f.Add("web1", "", "", "", fuzzSeedSSHKey(f, 1)+" x\nssh-ed25519 AAAA", tlsKey)
	a, _ := newTestAuthority(f, nil)
	tok, err := a.AddToken(context.Background(), api.AddTokenRequest{Role: TokenNode, Reusable: true, Labels: map[string]string{"env": "prod"}}, "test")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, fqdn, addrs, sshAddr, hostKey, tlsKey string) {
		ctx := context.Background()
		var addresses []string
		if addrs != "" {
			addresses = strings.Split(addrs, ",")
		}
		req := api.NodeJoinRequest{Token: tok.Secret, Name: name, FQDN: fqdn, Addresses: addresses, SSHAddr: sshAddr, HostPublicKey: hostKey, TLSPublicKey: tlsKey}
		id, err := a.JoinNode(ctx, req, "127.0.0.1")
		if err != nil {
			if recordExists(t, a, nodeKey(name)) {
				t.Fatalf("refused join (%v) left node record %q", err, name)
			}
			return
		}
		defer func() {
			if err := a.RemoveNode(ctx, name, "test"); err != nil {
				t.Fatalf("RemoveNode(%q): %v", name, err)
			}
		}()
		if ValidateNodeName(name) != nil || !safeName(name) || id.Name != name {
			t.Fatalf("join accepted node name %q (identity %q)", name, id.Name)
		}
		checkNodeNameInCache(t, name)
		checkHostCertText(t, id.HostCertificate, name)
		if sshAddr != "" {
			h, _, err := net.SplitHostPort(sshAddr)
			if err != nil || ValidateHostPrincipal(h) != nil || !safeName(sshAddr) {
				t.Fatalf("join accepted sshd address %q", sshAddr)
			}
		}
	})
}

// FuzzJoinProxy: a proxy join the CA accepts has addresses the proxy can
// listen on and that ssh_config can carry, and a host
// certificate whose principals validate; a refused join leaves no record.
func FuzzJoinProxy(f *testing.F) {
	host, tlsKey := fuzzSeedSSHKey(f, 1), fuzzSeedTLSKey(f, 2)
	f.Add("proxy1", "proxy1.example.com:3023", "10.0.0.2:3024", host, tlsKey)
	f.Add("proxy1", "[::1]:3023", "[fe80::1%25eth0]:3024", host, tlsKey)
	f.Add("proxy1", "[fe80::1%eth0]:3023", "proxy1:3024", host, tlsKey)
	f.Add("proxy1", "PROXY1.example.com.:3023", "proxy1:3024", host, tlsKey)
	f.Add("proxy1", "proxy1:+3023", "proxy1:3024", host, tlsKey)
	f.Add("proxy1", "proxy1:3023", "proxy1:0", host, tlsKey)
	a, _ := newTestAuthority(f, nil)
	tok, err := a.AddToken(context.Background(), api.AddTokenRequest{Role: TokenProxy, Reusable: true}, "test")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, publicAddr, tunnelAddr, hostKey, tlsKey string) {
		ctx := context.Background()
		req := api.ProxyJoinRequest{Token: tok.Secret, Name: name, PublicAddr: publicAddr, TunnelAddr: tunnelAddr, HostPublicKey: hostKey, TLSPublicKey: tlsKey}
		id, err := a.JoinProxy(ctx, req, "127.0.0.1")
		if err != nil {
			if recordExists(t, a, proxyKey(name)) {
				t.Fatalf("refused join (%v) left proxy record %q", err, name)
			}
			return
		}
		defer func() {
			if err := a.RemoveProxy(ctx, name, "test"); err != nil {
				t.Fatalf("RemoveProxy(%q): %v", name, err)
			}
		}()
		if ValidateNodeName(name) != nil || id.Name != name {
			t.Fatalf("join accepted proxy name %q", name)
		}
		checkHostCertText(t, id.HostCertificate, name)
		for _, addr := range []string{publicAddr, tunnelAddr} {
			if !safeName(addr) {
				t.Fatalf("join accepted address %q", addr)
			}
			h, port, err := net.SplitHostPort(addr)
			if err != nil || ValidateHostPrincipal(h) != nil {
				t.Fatalf("accepted address %q does not split into a valid host: %v", addr, err)
			}
			if _, err := net.LookupPort("tcp", port); err != nil {
				t.Fatalf("accepted address %q has port %q: %v", addr, port, err)
			}
		}
		// Keyhelper writes the public address into ssh_config, where '%'
		// starts a token, and refuses it (keyhelper.CheckProxyAddr).
		if strings.Contains(publicAddr, "%") {
			t.Fatalf("the CA accepted public address %q, which keyhelper refuses", publicAddr)
		}
	})
}

// FuzzPutProxySessions: whatever a proxy reports, the sessions the CA
// lists afterwards are the reporter's, and their ids, users and nodes
// validate; a session that does not is left out, not stored.
func FuzzPutProxySessions(f *testing.F) {
	f.Add([]byte(`{"sessions":[{"id":"s1","user":"alice","login":"root","node":"web1","started":"2026-11-21T07:00:00Z"}],"ttl":"30s"}`))
	f.Add([]byte(`{"sessions":[{"id":"../x","proxy":"other","user":"Alice","node":"web 1"},{"id":"s2","proxy":"other","user":"bob","node":"10.0.0.1"}],"ttl":"-1s"}`))
	f.Add([]byte(`{"sessions":[],"ttl":"1000h"}`))
	a, _ := newTestAuthority(f, nil)
	_, p := joinProxy(f, a, "proxy1", "proxy1:3023", "proxy1:3024")
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeBytes[api.ActiveSessions](b)
		if err != nil {
			return
		}
		ctx := context.Background()
		if err := a.PutProxySessions(ctx, p, req); err != nil {
			if len(req.Sessions) <= maxSessionsPerPut {
				t.Fatalf("PutProxySessions refused %d sessions: %v", len(req.Sessions), err)
			}
			return
		}
		got, err := a.Sessions(ctx)
		if err != nil {
			t.Fatalf("Sessions after a put: %v", err)
		}
		if len(got) > len(req.Sessions) {
			t.Fatalf("%d sessions listed after a put of %d", len(got), len(req.Sessions))
		}
		for _, s := range got {
			if s.Proxy != "proxy1" || checkName("session id", s.ID, labelKeyRE, "") != nil || ValidateUserName(s.User) != nil || ValidateHostPrincipal(s.Node) != nil {
				t.Fatalf("listed session %+v", s)
			}
		}
	})
}

// FuzzSanitizeProxyEvent: any event a proxy reports is cleaned into one
// the audit log can hold: a valid id and type, a valid user or none,
// bounded fields, and a time.
func FuzzSanitizeProxyEvent(f *testing.F) {
	f.Add([]byte(`{"time":"2026-11-21T07:00:00Z","type":"session.start","user":"alice","success":true,"remote":"10.0.0.9:5000","fields":{"node":"web1"},"id":"e1"}`))
	f.Add([]byte(`{"type":"a b","user":"Alice\n","id":"../..","fields":{"x":"\u00e9\u00e9"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeBytes[api.ProxyEvent](b)
		if err != nil {
			return
		}
		got := sanitizeProxyEvent(e, 3, fixedNow)
		if checkName("event id", got.ID, labelKeyRE, "") != nil || checkName("event type", got.Type, labelKeyRE, "") != nil {
			t.Fatalf("sanitized id %q, type %q", got.ID, got.Type)
		}
		if got.User != "" && ValidateUserName(got.User) != nil {
			t.Fatalf("sanitized user %q", got.User)
		}
		if got.Time.IsZero() || len(got.Remote) > 128+len("…") || len(got.Fields) > 32+3 {
			t.Fatalf("sanitized event %+v", got)
		}
		for k, v := range got.Fields {
			if len(k) > 64+len("…") || len(v) > 4096+len("…") {
				t.Fatalf("field %.40q of %d bytes, value of %d bytes", k, len(k), len(v))
			}
		}
		if _, err := json.Marshal(got); err != nil {
			t.Fatalf("sanitized event does not marshal: %v", err)
		}
	})
}

// FuzzStoreRecording: an upload the CA accepts is stored byte for byte
// inside the recordings directory and listed; a refused one leaves
// neither a file nor a record.
func FuzzStoreRecording(f *testing.F) {
	header := `{"version":2,"width":80,"height":24,"timestamp":1700000000,"user":"alice","login":"root","node":"web1","session_id":"s1"}` + "\n"
	f.Add("s1-0", []byte(header+`[0.5,"o","hi"]`+"\n"))
	f.Add("../etc", []byte(header))
	f.Add("s1", []byte(`{"version":2}`))
	f.Add("s1", []byte(`{"version":2,"timestamp":-99999999999999999}`+"\n"))
	f.Add("s1", []byte("{\"version\":2,\"user\":\"a\\nb\"}\n"))
	a, _ := newTestAuthority(f, nil)
	_, p := joinProxy(f, a, "proxy1", "proxy1:3023", "proxy1:3024")
	f.Fuzz(func(t *testing.T, id string, body []byte) {
		ctx := context.Background()
		if ValidateRecordingID(id) == nil {
			rel, err := filepath.Rel(a.recordingsDir(), a.recordingPath(id))
			if err != nil || strings.Contains(rel, string(filepath.Separator)) || strings.HasPrefix(rel, ".") {
				t.Fatalf("recording id %q gives path %q", id, rel)
			}
		}
		existed := ValidateRecordingID(id) == nil && recordExists(t, a, recordingKey(id))
		rec, err := a.StoreRecording(ctx, p, id, bytes.NewReader(body))
		if err != nil {
			if existed {
				t.Fatalf("upload of an existing recording refused: %v", err)
			}
			if ValidateRecordingID(id) == nil {
				if recordExists(t, a, recordingKey(id)) {
					t.Fatalf("refused upload (%v) left a record", err)
				}
				if _, serr := os.Stat(a.recordingPath(id)); serr == nil {
					t.Fatalf("refused upload (%v) left a file", err)
				}
			}
			return
		}
		if existed {
			return
		}
		defer func() {
			_ = a.store.Delete(ctx, recordingKey(id))
			_ = os.Remove(a.recordingPath(id))
		}()
		if ValidateRecordingID(id) != nil || rec.ID != id || rec.Proxy != "proxy1" {
			t.Fatalf("stored recording %+v under id %q", rec, id)
		}
		stored, err := os.ReadFile(a.recordingPath(id))
		if err != nil || !bytes.Equal(stored, body) || rec.Size != int64(len(body)) {
			t.Fatalf("stored %d bytes (%v), size %d; uploaded %d", len(stored), err, rec.Size, len(body))
		}
		if _, err := json.Marshal(rec); err != nil {
			t.Fatalf("recording record does not marshal: %v", err)
		}
	})
}

// FuzzParseDevicePublicKey: a TLS public key the CA accepts from a node,
// proxy or device is ECDSA P-256 or ed25519 and its PKIX encoding round
// trips, so that the SPKI hash the CA stores is the one the client's
// certificate will carry.
func FuzzParseDevicePublicKey(f *testing.F) {
	f.Add(fuzzSeedTLSKey(f, 2))
	f.Add(fuzzSeedTLSKey(f, 2) + "trailing")
	f.Add("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		pub, der, err := parseDevicePublicKey(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		switch k := pub.(type) {
		case ed25519.PublicKey:
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				t.Fatalf("accepted curve %s", k.Curve.Params().Name)
			}
		default:
			t.Fatalf("accepted a %T", pub)
		}
		again, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatalf("accepted key does not marshal: %v", err)
		}
		pub2, der2, err := parseDevicePublicKey(string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: again})))
		if err != nil || !publicKeysEqual(pub, pub2) {
			t.Fatalf("re-encoded key refused or changed: %v", err)
		}
		// The CA stores the hash of the key as sent; the certificate it
		// signs carries the key as Go encodes it. They must be the same
		// bytes, or the client could never authenticate.
		if !bytes.Equal(der, again) || !bytes.Equal(der2, again) {
			t.Fatalf("accepted a non-canonical SPKI %x (canonical %x)", der, again)
		}
	})
}
