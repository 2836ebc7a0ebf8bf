package node

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/authkeys"
	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/atomicfile"
	"github.com/opensshca/suite/internal/nodedir"
	"github.com/opensshca/suite/krl"
	"github.com/opensshca/suite/nss"
)

// NSSConfig says where the personal accounts go.
type NSSConfig struct {
	// Dir is the libnss-extrausers directory (/var/lib/extrausers); empty
	// disables NSS files.
	Dir string
	// Passwd and Group are the machine's own files: a cluster user whose
	// name is a local account is skipped, and a role group that exists
	// locally (sudo) keeps its local gid.
	Passwd, Group string
	// Shell of personal accounts (default /bin/bash).
	Shell string
	// PAMGroupConf, when set, is the pam_group(8) configuration
	// (/etc/security/group.conf) in which teleport-node keeps a managed
	// block granting the role groups that are local system groups below
	// gid 500 (sudo, adm), which libnss-extrausers cannot extend. Empty:
	// such groups are skipped with a warning.
	PAMGroupConf string
}

// DefaultNSS is the packaged setup.
var DefaultNSS = NSSConfig{Dir: "/var/lib/extrausers", Passwd: "/etc/passwd", Group: "/etc/group", Shell: "/bin/bash"}

// applier writes a policy into the data directory. It remembers what it
// wrote so that unchanged files are not rewritten.
type applier struct {
	dir   nodedir.Dir
	group int // gid of the authkeys user, or -1
	nss   NSSConfig
	log   *slog.Logger
	krl   []byte // serial set of the last KRL written (without its header)
}

// apply writes the CA key files, the KRL, the NSS files and finally the
// policy cache, which records confirmed as the time the CA confirmed it.
func (a *applier) apply(p api.NodePolicy, confirmed time.Time) error {
	if err := checkCAKeys(p); err != nil {
		return err
	}
	for _, f := range caFiles(api.CAInfo{UserCA: p.UserCA, SessionCA: p.SessionCA, HostCA: p.HostCA, RecordingMode: p.RecordingMode}, sessionSigners(p)...) {
		if err := writeIfChanged(a.dir.Path(f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	if err := a.writeKRL(p, confirmed); err != nil {
		return err
	}
	if a.nss.Dir != "" {
		if err := a.writeNSS(p); err != nil {
			// Accounts are a convenience on top of the policy: a failure
			// here must not keep the policy (removals) from applying.
			a.log.Error("writing NSS files failed", "dir", a.nss.Dir, "err", err)
		}
	}
	c, err := authkeys.FromPolicy(p, confirmed)
	if err != nil {
		return err
	}
	// Marshal writes format v2: the users in increasing order of their
	// names, under a first line with the size and checksum of the rest,
	// so that teleport-authkeys can find one user by binary search. One
	// rename replaces the file: a reader sees one generation or the
	// next, whole.
	b, err := c.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.WriteFileOwned(a.dir.Path(nodedir.Cache), b, 0o640, -1, a.group)
}

// checkCAKeys refuses CA keys that are not one public key each: sshd
// reads every line of TrustedUserCAKeys, so a second line in what the CA
// sent would be a second trusted CA, one the policy cache knows nothing of.
func checkCAKeys(p api.NodePolicy) error {
	for _, k := range []struct{ name, text string }{{"user", p.UserCA}, {"session", p.SessionCA}, {"host", p.HostCA}} {
		pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(k.text))
		if err != nil || len(bytes.TrimSpace(rest)) != 0 || strings.ContainsAny(k.text, "\r\n") {
			return fmt.Errorf("the CA sent a %s CA key that is not one public key", k.name)
		}
		if _, isCert := pub.(*ssh.Certificate); isCert {
			return fmt.Errorf("the CA sent a certificate as its %s CA key", k.name)
		}
	}
	for _, px := range p.Proxies {
		if px.SessionSigner == "" {
			continue
		}
		pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(px.SessionSigner))
		if err != nil || len(bytes.TrimSpace(rest)) != 0 || strings.ContainsAny(px.SessionSigner, "\r\n") {
			return fmt.Errorf("the CA sent a session signer for proxy %q that is not one public key", px.Name)
		}
		if _, isCert := pub.(*ssh.Certificate); isCert {
			return fmt.Errorf("the CA sent a certificate as proxy %q's session signer", px.Name)
		}
	}
	return nil
}

// sessionSigners are the proxies' session-signing keys sshd trusts beside
// the session CA in mode proxy (none in mode off, where nodes trust the
// user CA and the proxy signs nothing).
func sessionSigners(p api.NodePolicy) []string {
	if p.RecordingMode == "off" {
		return nil
	}
	var out []string
	for _, px := range p.Proxies {
		if px.SessionSigner != "" {
			out = append(out, px.SessionSigner)
		}
	}
	return out
}

func writeIfChanged(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return atomicfile.WriteFile(path, data, mode)
}

// writeKRL writes the revoked serials of the user and session CAs as an
// OpenSSH KRL. The file is always a valid KRL, empty when nothing is
// revoked: sshd refuses every login when RevokedKeys names a missing or
// unreadable file.
func (a *applier) writeKRL(p api.NodePolicy, now time.Time) error {
	var user, session []uint64
	for _, r := range p.Revoked {
		s, err := strconv.ParseUint(r.Serial, 10, 64)
		if err != nil || s == 0 {
			return fmt.Errorf("the CA sent a bad revoked serial %q", r.Serial)
		}
		switch r.CA {
		case "user":
			user = append(user, s)
		case "session":
			session = append(session, s)
		}
	}
	k := &krl.KRL{Version: uint64(now.UnixNano()), Generated: now, Comment: "teleport-node " + p.Node}
	for _, cs := range []struct {
		key     string
		serials []uint64
	}{{p.UserCA, user}, {p.SessionCA, session}} {
		if len(cs.serials) == 0 {
			continue
		}
		ca, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cs.key))
		if err != nil {
			return fmt.Errorf("the CA sent a bad CA key: %w", err)
		}
		slices.Sort(cs.serials)
		k.Certs = append(k.Certs, krl.CertSerials{CA: ca, Serials: slices.Compact(cs.serials)})
	}
	// The serial set decides whether to rewrite; the header changes every time.
	set := fmt.Appendf(nil, "%v %s %v %s", user, p.UserCA, session, p.SessionCA)
	if _, err := os.Stat(a.dir.Path(nodedir.KRL)); err == nil && bytes.Equal(set, a.krl) {
		return nil
	}
	b, err := k.Marshal()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(a.dir.Path(nodedir.KRL), b, 0o644); err != nil {
		return err
	}
	a.krl = set
	return nil
}

// writeNSS writes the personal accounts of this node's users.
func (a *applier) writeNSS(p api.NodePolicy) error {
	local, err := nss.LocalUsers(a.nss.Passwd)
	if err != nil {
		return err
	}
	localGroups, err := nss.LocalGroups(a.nss.Group)
	if err != nil {
		return err
	}
	var users []nss.User
	members := map[string][]string{}
	for _, u := range p.Users {
		if u.UID == 0 {
			continue
		}
		if local[u.Name] {
			a.log.Warn("cluster user has the name of a local account; the local account wins", "user", u.Name)
			continue
		}
		users = append(users, nss.User{Name: u.Name, UID: u.UID, GID: u.UID, Gecos: u.Name + " (teleport)", Shell: a.nss.Shell})
		for _, g := range u.Groups {
			members[g] = append(members[g], u.Name)
		}
	}
	var groups []nss.Group
	system := map[string][]string{} // user -> local system groups (pam_group)
	for _, g := range slices.Sorted(maps.Keys(members)) {
		gid, ok := localGroups[g]
		if ok && gid < nss.MinID {
			// libnss-extrausers ignores ids below 500, so membership in a
			// system group such as sudo (27) cannot come from it: it is
			// granted at login by pam_group when configured (pamgroup.go).
			if a.nss.PAMGroupConf == "" {
				a.log.Warn("role group is a local system group below gid 500, which libnss-extrausers cannot extend; skipped (grant it with --pam-group-conf, see docs/node.md)", "group", g, "gid", gid)
				continue
			}
			for _, u := range members[g] {
				system[u] = append(system[u], g)
			}
			continue
		}
		if !ok {
			if gid, ok = p.Groups[g]; !ok {
				a.log.Warn("role group has no gid; skipped", "group", g)
				continue
			}
		}
		groups = append(groups, nss.Group{Name: g, GID: gid, Members: members[g]})
	}
	if err := os.MkdirAll(a.nss.Dir, 0o755); err != nil {
		return err
	}
	if _, err = nss.Write(a.nss.Dir, users, groups); err != nil {
		return err
	}
	if a.nss.PAMGroupConf != "" {
		changed, err := writePAMGroupConf(a.nss.PAMGroupConf, system)
		if err != nil {
			return err
		}
		if changed {
			a.log.Info("pam_group grants updated", "file", a.nss.PAMGroupConf, "users", len(system))
		}
	}
	return nil
}
