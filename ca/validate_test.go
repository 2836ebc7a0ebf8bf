package ca

import (
	"errors"
	"strings"
	"testing"
)

func TestValidators(t *testing.T) {
	lv, err := NewLoginValidator("")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		fn      func(string) error
		in      string
		wantErr string // substring; "" = valid
	}{
		{"login ok", lv.Validate, "root", ""},
		{"login underscore dash", lv.Validate, "_svc-x1", ""},
		{"login 32 chars", lv.Validate, strings.Repeat("a", 32), ""},
		{"login 33 chars", lv.Validate, strings.Repeat("a", 33), "must match"},
		{"login upper", lv.Validate, "Root", "must match"},
		{"login leading digit", lv.Validate, "1root", "must match"},
		{"login comma", lv.Validate, "root,admin", "comma"},
		{"login quote", lv.Validate, `root"`, "quote"},
		{"login space", lv.Validate, "ro ot", "white space"},
		{"login newline", lv.Validate, "root\nadmin", "newline"},
		{"login control", lv.Validate, "ro\x01ot", "control character"},
		{"login non-ascii", lv.Validate, "rööt", "non-ASCII"},
		{"login invalid utf8", lv.Validate, "ro\xffot", "UTF-8"},
		{"login empty", lv.Validate, "", "empty"},
		{"user ok", ValidateUserName, "alice.smith", ""},
		{"user at", ValidateUserName, "alice@corp", "not valid"},
		{"user comma", ValidateUserName, "a,b", "comma"},
		{"user 65", ValidateUserName, "a" + strings.Repeat("b", 64), "not valid"},
		{"host name", ValidateHostPrincipal, "node1.example.com", ""},
		{"host ipv4", ValidateHostPrincipal, "10.0.0.1", ""},
		{"host ipv6", ValidateHostPrincipal, "2001:db8::1", ""},
		{"host wildcard", ValidateHostPrincipal, "*.example.com", "not a host name"},
		{"host underscore", ValidateHostPrincipal, "a_b", "not a host name"},
		{"host comma", ValidateHostPrincipal, "a,b", "comma"},
		{"host empty label", ValidateHostPrincipal, "a..b", "not a host name"},
		{"role ok", ValidateRoleName, "user:alice", ""},
		{"role space", ValidateRoleName, "my role", "white space"},
		{"source cidr", ValidateSourceAddress, "10.0.0.0/8", ""},
		{"source ip", ValidateSourceAddress, "::1", ""},
		{"source name", ValidateSourceAddress, "example.com", "not an IP"},
		{"source comma", ValidateSourceAddress, "10.0.0.1,10.0.0.2", "comma"},
		{"keyid spaces ok", ValidateKeyID, "user=a proxy=b", ""},
		{"keyid quote", ValidateKeyID, `a"b`, "quote"},
		{"keyid newline", ValidateKeyID, "a\nb", "newline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.fn(tt.in)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("%q refused: %v", tt.in, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("%q: err = %v, want ErrInvalid mentioning %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestLabels(t *testing.T) {
	tests := []struct {
		k, v string
		ok   bool
	}{
		{"env", "prod", true},
		{"team/db", "a:b", true},
		{"env", "", true},
		{"env", "pr od", false},
		{"env", "a,b", false},
		{"e=v", "x", false},
		{"", "x", false},
		{"env", `"x"`, false},
	}
	for _, tt := range tests {
		if err := ValidateLabel(tt.k, tt.v); (err == nil) != tt.ok {
			t.Errorf("ValidateLabel(%q, %q) = %v, want ok=%v", tt.k, tt.v, err, tt.ok)
		}
	}
}

func TestLoginPattern(t *testing.T) {
	if _, err := NewLoginValidator("[a-z]+"); err == nil {
		t.Fatal("unanchored pattern accepted")
	}
	lv, err := NewLoginValidator(`^.+$`)
	if err != nil {
		t.Fatal(err)
	}
	// Even a permissive pattern cannot admit injection characters.
	for _, bad := range []string{"a,b", "a b", "a\"b", "a\nb"} {
		if lv.Validate(bad) == nil {
			t.Errorf("permissive pattern admitted %q", bad)
		}
	}
	if err := lv.Validate("Admin.User"); err != nil {
		t.Errorf("permissive pattern refused a plain login: %v", err)
	}
}
