package nss

import (
	"fmt"
	"math"
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// User is a cluster user with a local account.
type User struct {
	Name  string
	UID   uint32
	GID   uint32 // primary group: the user's private group (same name), GID given by the CA
	Gecos string // optional; validated (no ':' ',' newline or control chars)
	Home  string // default "/home/<name>" when empty
	Shell string // default "/bin/bash" when empty
}

// Group is a supplementary group and the users in it. A group that also
// exists on the machine (see [LocalGroups]) should carry the machine's GID;
// initgroups(3) then gives members that group, because it collects groups
// from every NSS module. That works only for a GID of at least [MinID]:
// membership of sudo (GID 27 on Debian) cannot be given through these
// files.
type Group struct {
	Name    string
	GID     uint32
	Members []string // user names, not necessarily of users in this file
}

// Defaults for the empty fields of a [User].
const (
	DefaultHomeParent = "/home"
	DefaultShell      = "/bin/bash"
)

// namePattern is what the NSS files accept as a user, group or member name:
// the conservative subset of useradd(8)'s names that no passwd(5) or
// group(5) separator can hide in. Go's $ matches only at the end of the
// text, so a trailing newline does not pass.
var namePattern = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// withDefaults returns u with the empty home and shell filled in.
func (u User) withDefaults() User {
	if u.Home == "" {
		u.Home = DefaultHomeParent + "/" + u.Name
	}
	if u.Shell == "" {
		u.Shell = DefaultShell
	}
	return u
}

// check validates the fields of u, which already has its defaults.
func (u User) check() error {
	if err := checkName(u.Name); err != nil {
		return err
	}
	if err := checkID("uid", u.UID); err != nil {
		return err
	}
	if err := checkID("gid", u.GID); err != nil {
		return err
	}
	if bad := badGecos(u.Gecos); bad != "" {
		return fmt.Errorf("%w: gecos %q %s", ErrInvalidField, u.Gecos, bad)
	}
	if bad := badPath(u.Home); bad != "" {
		return fmt.Errorf("%w: home %q %s", ErrInvalidField, u.Home, bad)
	}
	if bad := badPath(u.Shell); bad != "" {
		return fmt.Errorf("%w: shell %q %s", ErrInvalidField, u.Shell, bad)
	}
	return nil
}

// normalized validates g and returns it with its members sorted and without
// repeats, in a new slice.
func (g Group) normalized() (Group, error) {
	if err := checkName(g.Name); err != nil {
		return g, err
	}
	if err := checkID("gid", g.GID); err != nil {
		return g, err
	}
	for _, m := range g.Members {
		if !namePattern.MatchString(m) {
			return g, fmt.Errorf("%w: member %q", ErrInvalidName, m)
		}
	}
	g.Members = slices.Compact(slices.Sorted(slices.Values(g.Members)))
	return g, nil
}

func checkName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: must match %s", ErrInvalidName, namePattern)
	}
	return nil
}

// MinID is the smallest UID or GID that libnss-extrausers returns: it
// skips users and groups below it (MINUID and MINGID in its s_config.h,
// 500 in Debian's build), so that its files cannot add root or a system
// account, nor members to a system group such as sudo (GID 27 on Debian).
// [Files] refuses lower IDs rather than write lines that would be ignored.
const MinID = 500

// checkID refuses IDs below [MinID], root's included, and the two values
// that mean "no ID": (uid_t)-1 to chown(2) and setresuid(2), and its 16-bit
// form 65535, which systemd and older interfaces treat the same way.
func checkID(kind string, id uint32) error {
	switch {
	case id < MinID:
		return fmt.Errorf("%w: %s %d is below %d, which libnss-extrausers ignores", ErrReservedID, kind, id, MinID)
	case id == math.MaxUint16, id == math.MaxUint32:
		return fmt.Errorf("%w: %s %d means no ID", ErrReservedID, kind, id)
	}
	return nil
}

// badGecos says what is wrong with a GECOS field, or returns "".
func badGecos(s string) string {
	if strings.ContainsAny(s, ":,") {
		return "contains ':' or ','"
	}
	return badText(s)
}

// badPath says what is wrong with a home or shell path, or returns "".
func badPath(p string) string {
	switch {
	case !path.IsAbs(p):
		return "is not absolute"
	case path.Clean(p) != p:
		return "is not clean"
	case strings.Contains(p, ":"):
		return "contains ':'"
	}
	return badText(p)
}

// badText refuses invalid UTF-8, control characters (newline included)
// and leading or trailing space, which the NSS modules strip.
func badText(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case strings.ContainsFunc(s, unicode.IsControl):
		return "contains a control character"
	case strings.TrimSpace(s) != s:
		return "has leading or trailing space"
	}
	return ""
}
