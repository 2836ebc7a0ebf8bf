package ca

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
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
