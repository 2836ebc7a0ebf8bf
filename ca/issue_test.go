//lint:file-ignore SA1019 DSA keys are made here only to test that the CA refuses them.

package ca

import (
	"context"
	"crypto/dsa"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// TestCertsReadBackBySSHKeygen issues every certificate type with every CA
// key type and checks each field as the real ssh-keygen -L reads it.
func TestCertsReadBackBySSHKeygen(t *testing.T) {
	for _, kt := range []KeyType{KeyEd25519, KeyECDSAP256, KeyECDSAP384, KeyRSA3072} {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			a, clk := newTestAuthority(t, func(c *Config) { c.KeyType = kt })
			ctx := context.Background()
			if _, err := a.AddRole(ctx, api.Role{
				Name: "ops", Logins: []string{"root", "{user}"}, NodeLabels: map[string][]string{"env": {"prod"}},
				MaxTTL: api.Duration(8 * time.Hour), PermitAgentForwarding: true, PermitPortForwarding: true,
				SourceAddress: []string{"10.0.0.0/8"},
			}, "test"); err != nil {
				t.Fatal(err)
			}
			addUser(t, a, "alice", nil, []string{"ops"})
			now := clk.Now()
			wantSig := map[KeyType]string{KeyEd25519: "ssh-ed25519", KeyECDSAP256: "ecdsa-sha2-nistp256", KeyECDSAP384: "ecdsa-sha2-nistp384", KeyRSA3072: "rsa-sha2-512"}[kt]

			user, err := a.IssueUserCert(ctx, UserCertRequest{User: "alice", PublicKey: newPub(t), TTL: 2 * time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			checkKeygen(t, user, keygenWant{
				typ: "user certificate", keyID: "alice", principals: []string{"alice", "root"},
				from: now.Add(-backdate), to: now.Add(2 * time.Hour), sig: wantSig,
				critical: []string{"source-address 10.0.0.0/8"},
				ext:      []string{"permit-agent-forwarding", "permit-port-forwarding", "permit-pty"},
			})

			host, err := a.IssueHostCert(ctx, HostCertRequest{Name: "node1", Principals: []string{"node1.example.com", "10.1.2.3"}, PublicKey: newPub(t)})
			if err != nil {
				t.Fatal(err)
			}
			checkKeygen(t, host, keygenWant{
				typ: "host certificate", keyID: "node1", principals: []string{"node1", "node1.example.com", "10.1.2.3"},
				from: now.Add(-backdate), to: now.Add(24 * time.Hour), sig: wantSig,
			})

			sess, err := a.IssueSessionCert(ctx, SessionCertRequest{User: "alice", Login: "root", Proxy: "proxy1", SessionID: "s-123", PublicKey: newPub(t), TTL: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			checkKeygen(t, sess, keygenWant{
				typ: "user certificate", keyID: "user=alice proxy=proxy1 session=s-123", principals: []string{"root"},
				from: now.Add(-backdate), to: now.Add(5 * time.Minute), sig: wantSig, // TTL clamped to 5m
				ext: []string{"permit-pty"},
			})
			if string(sess.SignatureKey.Marshal()) != string(a.keys.session.PublicKey().Marshal()) {
				t.Error("session certificate not signed by the session CA")
			}
			if string(user.SignatureKey.Marshal()) != string(a.keys.user.PublicKey().Marshal()) {
				t.Error("user certificate not signed by the user CA")
			}
			if string(host.SignatureKey.Marshal()) != string(a.keys.host.PublicKey().Marshal()) {
				t.Error("host certificate not signed by the host CA")
			}
		})
	}
}

type keygenWant struct {
	typ, keyID    string
	principals    []string
	from, to      time.Time
	sig           string
	critical, ext []string
}

func checkKeygen(t *testing.T, c *ssh.Certificate, w keygenWant) {
	t.Helper()
	out := keygenL(t, c)
	f := keygenFields(out)
	first := func(k string) string {
		if len(f[k]) == 0 {
			return ""
		}
		return f[k][0]
	}
	if got := first("Type"); !strings.HasSuffix(got, w.typ) {
		t.Errorf("Type = %q, want … %s\n%s", got, w.typ, out)
	}
	if got := first("Key ID"); got != strconv.Quote(w.keyID) {
		t.Errorf("Key ID = %s, want %q", got, w.keyID)
	}
	if got := first("Serial"); got == "0" || got != strconv.FormatUint(c.Serial, 10) {
		t.Errorf("Serial = %s, want non-zero %d", got, c.Serial)
	}
	if got := f["Principals"]; !slices.Equal(got, w.principals) {
		t.Errorf("Principals = %q, want %q", got, w.principals)
	}
	valid := fmt.Sprintf("from %s to %s", w.from.Local().Format("2006-01-02T15:04:05"), w.to.Local().Format("2006-01-02T15:04:05"))
	if got := first("Valid"); got != valid {
		t.Errorf("Valid = %q, want %q", got, valid)
	}
	if got := first("Signing CA"); !strings.HasSuffix(got, "(using "+w.sig+")") {
		t.Errorf("Signing CA = %q, want signature %s", got, w.sig)
	}
	if got := f["Critical Options"]; w.critical == nil && !slices.Equal(got, []string{"(none)"}) || w.critical != nil && !slices.Equal(got, w.critical) {
		t.Errorf("Critical Options = %q, want %q", got, w.critical)
	}
	if got := f["Extensions"]; w.ext == nil && !slices.Equal(got, []string{"(none)"}) || w.ext != nil && !slices.Equal(got, w.ext) {
		t.Errorf("Extensions = %q, want %q", got, w.ext)
	}
}

func TestParsePublicKeyRefusals(t *testing.T) {
	rsaKey := func(bits int) string {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := ssh.NewPublicKey(&k.PublicKey)
		return authorizedKey(p)
	}
	var dk dsa.PrivateKey
	if err := dsa.GenerateParameters(&dk.Parameters, rand.Reader, dsa.L1024N160); err != nil {
		t.Fatal(err)
	}
	if err := dsa.GenerateKey(&dk, rand.Reader); err != nil {
		t.Fatal(err)
	}
	dsaPub, err := ssh.NewPublicKey(&dk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	ecPub, _ := ssh.NewPublicKey(&ec.PublicKey)
	a, _ := newTestAuthority(t, nil)
	addUser(t, a, "bob", []string{"bob"}, nil)
	cert, err := a.IssueUserCert(context.Background(), UserCertRequest{User: "bob", PublicKey: newPub(t)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; "" means accepted
	}{
		{"ed25519", authorizedKey(newPub(t)), ""},
		{"ecdsa-p521", authorizedKey(ecPub), ""},
		{"rsa-3072", rsaKey(3072), ""},
		{"rsa-2048", rsaKey(2048), "2048 bits is too short"},
		{"dsa", authorizedKey(dsaPub), "DSA keys are refused"},
		{"certificate", authorizedKey(cert), "certificate was sent"},
		{"garbage", "ssh-ed25519 AAAA", "not in authorized_keys form"},
		{"two keys", authorizedKey(newPub(t)) + "\n" + authorizedKey(newPub(t)), "more than one key"},
		{"empty", "", "not in authorized_keys form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePublicKey(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestIssuePolicy(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	ctx := context.Background()
	mustRole := func(r api.Role) {
		t.Helper()
		if _, err := a.AddRole(ctx, r, "test"); err != nil {
			t.Fatal(err)
		}
	}
	all := map[string][]string{"*": {"*"}}
	mustRole(api.Role{Name: "short", Logins: []string{"deploy"}, NodeLabels: all, MaxTTL: api.Duration(30 * time.Minute)})
	mustRole(api.Role{Name: "x11", Logins: []string{"web"}, NodeLabels: all, PermitX11Forwarding: true, SourceAddress: []string{"192.0.2.1"}})
	mustRole(api.Role{Name: "wide", Logins: []string{"admin"}, NodeLabels: all, SourceAddress: []string{"198.51.100.0/24"}})
	mustRole(api.Role{Name: "gone", Logins: []string{"root"}, NodeLabels: all})
	addUser(t, a, "carol", nil, []string{"short", "x11", "wide", "gone"})
	addUser(t, a, "dave", nil, []string{"gone"})
	if err := a.RemoveRole(ctx, "gone", "test"); err != nil {
		t.Fatal(err)
	}
	now := clk.Now()

	tests := []struct {
		name           string
		user           string
		ttl            time.Duration
		logins         []string
		wantPrincipals []string
		wantTTL        time.Duration
		wantErr        error
	}{
		{"role cap wins", "carol", 10 * time.Hour, nil, []string{"admin", "deploy", "web"}, 30 * time.Minute, nil},
		{"default under cap", "carol", 0, []string{"web"}, []string{"web"}, 30 * time.Minute, nil},
		{"narrowed", "carol", time.Minute, []string{"deploy", "deploy"}, []string{"deploy"}, time.Minute, nil},
		{"login not allowed", "carol", 0, []string{"root"}, nil, 0, &PolicyError{}},
		{"bad login syntax", "carol", 0, []string{"ro,ot"}, nil, 0, ErrInvalid},
		{"negative ttl", "carol", -time.Second, nil, nil, 0, ErrInvalid},
		{"missing role grants nothing", "dave", 0, nil, nil, 0, &PolicyError{}},
		{"no such user", "nobody", 0, nil, nil, 0, ErrNotFound},
		{"bad user name", "Eve\n", 0, nil, nil, 0, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := a.IssueUserCert(ctx, UserCertRequest{User: tt.user, PublicKey: newPub(t), TTL: tt.ttl, Logins: tt.logins})
			if tt.wantErr != nil {
				var pe *PolicyError
				if _, isPolicy := tt.wantErr.(*PolicyError); isPolicy && errors.As(err, &pe) {
					return
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.ValidPrincipals, tt.wantPrincipals) {
				t.Errorf("principals = %q, want %q", c.ValidPrincipals, tt.wantPrincipals)
			}
			if got := time.Unix(int64(c.ValidBefore), 0).Sub(now); got != tt.wantTTL {
				t.Errorf("lifetime = %v, want %v", got, tt.wantTTL)
			}
			// Source address restrictions of any role apply (fail closed).
			if got := c.CriticalOptions[optSourceAddress]; got != "192.0.2.1,198.51.100.0/24" {
				t.Errorf("source-address = %q", got)
			}
			if _, ok := c.Extensions[extX11]; !ok {
				t.Errorf("X11 forwarding from role x11 missing: %v", c.Extensions)
			}
		})
	}
}

func TestHardCapAndLockedUser(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	addUser(t, a, "erin", []string{"erin"}, nil)
	c, err := a.IssueUserCert(ctx, UserCertRequest{User: "erin", PublicKey: newPub(t), TTL: 1000 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if life := time.Duration(c.ValidBefore-c.ValidAfter) * time.Second; life != HardMaxTTL+backdate {
		t.Errorf("lifetime with 1000h asked = %v, want hard cap %v (+%v backdate)", life, HardMaxTTL, backdate)
	}
	if err := a.LockUser(ctx, "erin", api.LockRequest{}, "test"); err != nil {
		t.Fatal(err)
	}
	var le *LockedError
	if _, err := a.IssueUserCert(ctx, UserCertRequest{User: "erin", PublicKey: newPub(t)}); !errors.As(err, &le) {
		t.Fatalf("locked user got a certificate: err = %v", err)
	}
	if err := a.RemoveUser(ctx, "erin", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.IssueUserCert(ctx, UserCertRequest{User: "erin", PublicKey: newPub(t)}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed user: err = %v, want ErrNotFound", err)
	}
}

// TestIssuanceRecorded checks that each certificate's record is stored
// with its serial, principals, validity and fingerprint, plus an audit
// event.
func TestIssuanceRecorded(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	addUser(t, a, "frank", []string{"frank", "www"}, nil)
	pub := newPub(t)
	c, err := a.IssueUserCert(ctx, UserCertRequest{User: "frank", PublicKey: pub, Requester: "admin(uid=0)"})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := a.IssuedCerts(ctx, "", strconv.FormatUint(c.Serial, 10))
	if err != nil || len(recs) != 1 {
		t.Fatalf("IssuedCerts = %v, %v", recs, err)
	}
	r := recs[0]
	if r.KeyID != "frank" || r.Type != "user" || !slices.Equal(r.Principals, []string{"frank", "www"}) ||
		r.Fingerprint != ssh.FingerprintSHA256(pub) || r.ValidBefore.Unix() != int64(c.ValidBefore) || r.Requester != "admin(uid=0)" {
		t.Errorf("record = %+v", r)
	}
	evs, err := a.Audit(ctx, AuditFilter{Type: "cert.issue"})
	if err != nil || len(evs) != 1 || evs[0].Fields["serial"] != r.Serial || evs[0].User != "frank" {
		t.Fatalf("audit = %+v, %v", evs, err)
	}
}

func TestCheckInvariants(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	addUser(t, a, "gina", []string{"gina"}, nil)
	good, err := a.IssueUserCert(context.Background(), UserCertRequest{User: "gina", PublicKey: newPub(t)})
	if err != nil {
		t.Fatal(err)
	}
	caKey := a.keys.user.PublicKey()
	if err := checkInvariants(good, kindUser, caKey); err != nil {
		t.Fatalf("good certificate: %v", err)
	}
	tests := []struct {
		name string
		kind certKind
		mod  func(c *ssh.Certificate)
	}{
		{"zero serial", kindUser, func(c *ssh.Certificate) { c.Serial = 0 }},
		{"empty key id", kindUser, func(c *ssh.Certificate) { c.KeyId = "" }},
		{"inverted validity", kindUser, func(c *ssh.Certificate) { c.ValidAfter = c.ValidBefore }},
		{"infinite", kindUser, func(c *ssh.Certificate) { c.ValidBefore = ssh.CertTimeInfinity }},
		{"too long", kindUser, func(c *ssh.Certificate) { c.ValidBefore = c.ValidAfter + uint64((31*time.Hour)/time.Second) }},
		{"no principals", kindUser, func(c *ssh.Certificate) { c.ValidPrincipals = nil }},
		{"wrong type", kindHost, func(c *ssh.Certificate) {}},
		{"wrong CA", kindUser, func(c *ssh.Certificate) { c.SignatureKey = a.keys.host.PublicKey() }},
		{"sha1", kindUser, func(c *ssh.Certificate) { c.Signature = &ssh.Signature{Format: ssh.KeyAlgoRSA} }},
		{"session with two logins", kindSession, func(c *ssh.Certificate) { c.ValidPrincipals = []string{"a", "b"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *good
			c.ValidPrincipals = slices.Clone(good.ValidPrincipals)
			tt.mod(&c)
			if err := checkInvariants(&c, tt.kind, caKey); !errors.Is(err, ErrInvariant) {
				t.Fatalf("err = %v, want ErrInvariant", err)
			}
		})
	}
}

func TestSerialsUniqueAndNonZero(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	addUser(t, a, "hal", []string{"hal"}, nil)
	seen := map[uint64]bool{}
	for range 50 {
		c, err := a.IssueUserCert(context.Background(), UserCertRequest{User: "hal", PublicKey: newPub(t)})
		if err != nil {
			t.Fatal(err)
		}
		if c.Serial == 0 || seen[c.Serial] {
			t.Fatalf("serial %d zero or repeated", c.Serial)
		}
		seen[c.Serial] = true
	}
}

// A failed add of an existing user leaves that user's access untouched.
func TestAddExistingUserKeepsRole(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	addUser(t, a, "ivy", []string{"ivy"}, nil)
	_, err := a.AddUser(ctx, api.AddUserRequest{Name: "ivy", Logins: []string{"root"}, Password: "another password"}, "test")
	if !errors.Is(err, ErrExists) {
		t.Fatalf("err = %v, want ErrExists", err)
	}
	r, _, err := a.getRole(ctx, personalRole("ivy"))
	if err != nil || !slices.Equal(r.Logins, []string{"ivy"}) {
		t.Fatalf("personal role after failed add = %+v, %v; want logins [ivy]", r, err)
	}
	if _, err := a.AddUser(ctx, api.AddUserRequest{Name: "jo", Logins: []string{"a b"}}, "test"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad login: %v", err)
	}
	if _, _, err := a.getUser(ctx, "jo"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("user with a refused login was created: %v", err)
	}
}
