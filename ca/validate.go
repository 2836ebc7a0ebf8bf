package ca

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"unicode/utf8"
)

// ErrInvalid marks a request the authority refuses because of its content.
// Errors wrapping it carry a message that names the field and the problem.
var ErrInvalid = errors.New("invalid request")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// DefaultLoginPattern is what a login (a local account name, the
// certificate principal for user certificates) must match unless the
// operator configures another pattern. It is the portable POSIX user name
// set that useradd accepts by default.
const DefaultLoginPattern = `^[a-z_][a-z0-9_-]{0,31}$`

var (
	userNameRE   = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,63}$`)
	roleNameRE   = regexp.MustCompile(`^[a-z0-9_][a-z0-9_.:-]{0,63}$`)
	hostLabelRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	labelKeyRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]{0,62}$`)
	labelValueRE = regexp.MustCompile(`^[A-Za-z0-9_./:-]{0,63}$`)
	groupNameRE  = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
)

// describeBad names the first character that makes s unsafe to hand to
// sshd or to put in a certificate: the characters that can inject options
// into authorized_keys or principals lines.
func describeBad(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, r := range s {
		switch {
		case r == ',':
			return "contains a comma"
		case r == '"' || r == '\'' || r == '`':
			return "contains a quote"
		case r == '\n' || r == '\r':
			return "contains a newline"
		case r == ' ' || r == '\t':
			return "contains white space"
		case r < 0x20 || r == 0x7f:
			return fmt.Sprintf("contains the control character %U", r)
		case r > 0x7e:
			return fmt.Sprintf("contains the non-ASCII character %q", r)
		}
	}
	return ""
}

func checkName(kind, s string, re *regexp.Regexp, want string) error {
	if s == "" {
		return invalidf("%s is empty", kind)
	}
	if bad := describeBad(s); bad != "" {
		return invalidf("%s %q %s", kind, s, bad)
	}
	if !re.MatchString(s) {
		return invalidf("%s %q is not valid: %s", kind, s, want)
	}
	return nil
}

// ValidateUserName checks a cluster user name. User names become
// certificate KeyIds, NSS names and audit fields.
func ValidateUserName(s string) error {
	return checkName("user name", s, userNameRE,
		"use lower-case letters, digits, '_', '.' and '-', starting with a letter or '_', at most 64 characters")
}

// ValidateRoleName checks a role name.
func ValidateRoleName(s string) error {
	return checkName("role name", s, roleNameRE,
		"use lower-case letters, digits, '_', '.', ':' and '-', at most 64 characters")
}

// LoginValidator checks logins against the configured pattern.
type LoginValidator struct{ re *regexp.Regexp }

// NewLoginValidator compiles pattern; empty means DefaultLoginPattern. The
// pattern must be anchored at both ends, and even a permissive pattern
// cannot admit the characters describeBad refuses.
func NewLoginValidator(pattern string) (LoginValidator, error) {
	if pattern == "" {
		pattern = DefaultLoginPattern
	}
	if !strings.HasPrefix(pattern, "^") || !strings.HasSuffix(pattern, "$") {
		return LoginValidator{}, fmt.Errorf("ca: login pattern %q must be anchored with ^ and $", pattern)
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return LoginValidator{}, fmt.Errorf("ca: login pattern: %w", err)
	}
	return LoginValidator{re: re}, nil
}

// Validate checks one login. The role placeholder "{user}" is not a login;
// expand it first.
func (v LoginValidator) Validate(s string) error {
	re := v.re
	if re == nil {
		re = defaultLoginRE
	}
	return checkName("login", s, re, "it must match "+re.String())
}

var defaultLoginRE = regexp.MustCompile(DefaultLoginPattern)

// ValidateHostPrincipal checks a host certificate principal: a DNS name
// (labels of letters, digits and '-', dot separated, optionally a leading
// "*." wildcard is NOT allowed) or an IP address.
func ValidateHostPrincipal(s string) error {
	if s == "" {
		return invalidf("host principal is empty")
	}
	if bad := describeBad(s); bad != "" {
		return invalidf("host principal %q %s", s, bad)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		// A zone ("fe80::1%eth0") names an interface of one machine, and
		// '%' is a token character in sshd_config and ssh_config.
		if a.Zone() != "" {
			return invalidf("host principal %q has an IPv6 zone", s)
		}
		return nil
	}
	if len(s) > 253 {
		return invalidf("host principal %q is longer than 253 characters", s)
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if !hostLabelRE.MatchString(l) {
			return invalidf("host principal %q is not a host name or IP address (label %q)", s, l)
		}
	}
	return nil
}

// ValidateLabel checks one node label.
func ValidateLabel(k, v string) error {
	if err := checkName("label key", k, labelKeyRE, "use letters, digits, '_', '.', '/' and '-', at most 63 characters"); err != nil {
		return err
	}
	if v == "" {
		return nil
	}
	if bad := describeBad(v); bad != "" {
		return invalidf("label %s value %q %s", k, v, bad)
	}
	if !labelValueRE.MatchString(v) {
		return invalidf("label %s value %q is not valid: use letters, digits, '_', '.', '/', ':' and '-', at most 63 characters", k, v)
	}
	return nil
}

// ValidateSourceAddress checks one entry of a source-address list: an
// address or a CIDR block (PROTOCOL.certkeys).
func ValidateSourceAddress(s string) error {
	if bad := describeBad(s); bad != "" {
		return invalidf("source address %q %s", s, bad)
	}
	if _, _, err := net.ParseCIDR(s); err == nil {
		return nil
	}
	if net.ParseIP(s) != nil {
		return nil
	}
	return invalidf("source address %q is not an IP address or CIDR block", s)
}

// ValidateKeyID checks a free-form KeyId: printable ASCII and spaces, no
// quotes or commas, since sshd logs it and %i hands it to commands.
func ValidateKeyID(s string) error {
	if s == "" {
		return invalidf("key id is empty")
	}
	if len(s) > 256 {
		return invalidf("key id is longer than 256 characters")
	}
	for _, r := range s {
		if r == ' ' {
			continue // spaces separate the fields of session KeyIds
		}
		if bad := describeBad(string(r)); bad != "" {
			return invalidf("key id %q %s", s, bad)
		}
	}
	return nil
}
