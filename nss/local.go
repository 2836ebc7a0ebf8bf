package nss

import (
	"fmt"
	"iter"
	"os"
	"strconv"
	"strings"
)

// LocalGroups reads an /etc/group-format file and returns name→gid, so the
// node can give a supplementary group that exists on the machine (sudo)
// its local gid.
//
// Lines are read the way glibc's files module reads them, and those it
// would not return are skipped rather than reported: blank lines, comments
// (a '#' after optional blanks), lines with an empty name, NIS compat
// entries ("+" or "-" first) and lines whose GID is not a decimal number
// below 2^32. A refusal would stop the node from writing any account over
// one odd line that getgrnam(3) ignores anyway. Names are taken as they are,
// not checked against the pattern [Files] requires. When a name appears
// twice the first line wins, as with getgrnam(3). Only a file that cannot
// be read is an error.
func LocalGroups(path string) (map[string]uint32, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("nss: local groups: %w", err)
	}
	return parseGroups(data), nil
}

// LocalUsers reads an /etc/passwd-format file and returns the set of names
// (the node skips cluster users whose name is already a local account, and
// reports them).
//
// Lines are read as in [LocalGroups]: a line counts when its name is
// non-empty and not a NIS compat entry and its UID and GID are decimal
// numbers; anything else is skipped, since getpwnam(3) does not return it
// and it cannot hide a cluster user either. Only a file that cannot be
// read is an error.
func LocalUsers(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("nss: local users: %w", err)
	}
	return parseUsers(data), nil
}

// parseGroups returns the name→GID map of a group(5) file.
func parseGroups(data []byte) map[string]uint32 {
	groups := make(map[string]uint32)
	for f := range records(data) {
		if len(f) < 3 {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		if _, ok := groups[f[0]]; !ok {
			groups[f[0]] = uint32(gid)
		}
	}
	return groups
}

// parseUsers returns the names in a passwd(5) file.
func parseUsers(data []byte) map[string]bool {
	users := make(map[string]bool)
	for f := range records(data) {
		if len(f) < 4 || !isID(f[2]) || !isID(f[3]) {
			continue
		}
		users[f[0]] = true
	}
	return users
}

func isID(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}

// records yields the colon-separated fields of each line of data that is
// not blank or a comment and whose first field is a plain name.
func records(data []byte) iter.Seq[[]string] {
	return func(yield func([]string) bool) {
		for line := range strings.Lines(string(data)) {
			// glibc skips the same leading blanks (isspace).
			line = strings.TrimLeft(strings.TrimSuffix(line, "\n"), " \t\r\v\f")
			if line == "" || line[0] == '#' {
				continue
			}
			f := strings.Split(line, ":")
			if f[0] == "" || f[0][0] == '+' || f[0][0] == '-' {
				continue
			}
			if !yield(f) {
				return
			}
		}
	}
}
