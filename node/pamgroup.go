package node

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/opensshca/suite/internal/atomicfile"
)

// Supplementary groups that libnss-extrausers cannot grant. It ignores
// ids below 500, so a role naming a system group such as sudo (27) or adm
// (4) cannot add its users to it through the extrausers group file. With
// NSSConfig.PAMGroupConf set, teleport-node grants those groups at login
// instead, through pam_group(8): it keeps one managed block of
// /etc/security/group.conf lines, "sshd;*;USER;Al0000-2400;GROUP,...", and
// never touches the rest of the file. sshd's PAM stack needs
// "auth optional pam_group.so" (contrib/pam/sshd-pam_group).

const (
	pamBlockBegin = "# BEGIN teleport-node: managed by teleport-node run --pam-group-conf; edits here are replaced"
	pamBlockEnd   = "# END teleport-node"
)

var pamNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// pamGroupBlock renders the managed block for user → groups; nil when
// there is nothing to grant.
func pamGroupBlock(grants map[string][]string) ([]byte, error) {
	if len(grants) == 0 {
		return nil, nil
	}
	var b bytes.Buffer
	b.WriteString(pamBlockBegin + "\n")
	users := make([]string, 0, len(grants))
	for u := range grants {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, u := range users {
		if !pamNameRE.MatchString(u) {
			return nil, fmt.Errorf("pam_group: user name %q cannot go into group.conf", u)
		}
		gs := slices.Clone(grants[u])
		slices.Sort(gs)
		gs = slices.Compact(gs)
		for _, g := range gs {
			if !pamNameRE.MatchString(g) {
				return nil, fmt.Errorf("pam_group: group name %q cannot go into group.conf", g)
			}
		}
		fmt.Fprintf(&b, "sshd;*;%s;Al0000-2400;%s\n", u, strings.Join(gs, ","))
	}
	b.WriteString(pamBlockEnd + "\n")
	return b.Bytes(), nil
}

// replacePAMBlock returns conf with its managed block replaced by block
// (removed when block is nil; appended when conf has none). A damaged
// block (a begin marker without an end) is an error: the file is left
// for the operator rather than guessed at.
func replacePAMBlock(conf, block []byte) ([]byte, error) {
	lines := strings.SplitAfter(string(conf), "\n")
	begin, end := -1, -1
	for i, l := range lines {
		switch strings.TrimRight(l, "\n") {
		case pamBlockBegin:
			if begin >= 0 {
				return nil, errors.New("pam_group: two teleport-node blocks; remove one by hand")
			}
			begin = i
		case pamBlockEnd:
			if begin < 0 || end >= 0 {
				return nil, errors.New("pam_group: a teleport-node end marker without its begin marker; fix the file by hand")
			}
			end = i
		}
	}
	if begin >= 0 && end < 0 {
		return nil, errors.New("pam_group: the teleport-node block has no end marker; fix the file by hand")
	}
	var out strings.Builder
	if begin < 0 {
		out.WriteString(string(conf))
		if len(block) > 0 {
			if len(conf) > 0 && !bytes.HasSuffix(conf, []byte("\n")) {
				out.WriteString("\n")
			}
			out.Write(block)
		}
		return []byte(out.String()), nil
	}
	out.WriteString(strings.Join(lines[:begin], ""))
	out.Write(block)
	out.WriteString(strings.Join(lines[end+1:], ""))
	return []byte(out.String()), nil
}

// writePAMGroupConf updates the managed block of the pam_group file at
// path, atomically and only when it changes; the file keeps its mode.
func writePAMGroupConf(path string, grants map[string][]string) (changed bool, err error) {
	block, err := pamGroupBlock(grants)
	if err != nil {
		return false, err
	}
	old, err := os.ReadFile(path)
	mode := os.FileMode(0o644)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if block == nil {
			return false, nil
		}
	case err != nil:
		return false, err
	default:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	conf, err := replacePAMBlock(old, block)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if bytes.Equal(conf, old) {
		return false, nil
	}
	return true, atomicfile.WriteFile(path, conf, mode)
}
