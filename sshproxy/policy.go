package sshproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/atomicfile"
	"github.com/opensshca/suite/sshproxy/relay"
)

// policy is one snapshot of the CA's login policy, indexed for the
// decisions the proxy makes on every connection. It is immutable once
// built; the proxy swaps whole snapshots.
type policy struct {
	raw       api.ProxyPolicy
	userCA    ssh.PublicKey
	hostCA    ssh.PublicKey
	users     map[string]api.ProxyUser
	roles     map[string]api.Role
	nodes     map[string]api.ProxyNode
	byName    map[string]string // any non-IP principal of a node -> node name
	revoked   map[string]bool   // "user/<serial>" and "session/<serial>"
	proxyTuns []string
}

// newPolicy indexes a policy answer from the CA.
func newPolicy(p api.ProxyPolicy) (*policy, error) {
	pol := &policy{
		raw: p, users: map[string]api.ProxyUser{}, roles: map[string]api.Role{},
		nodes: map[string]api.ProxyNode{}, byName: map[string]string{}, revoked: map[string]bool{},
	}
	var err error
	if pol.userCA, err = parseKey(p.UserCA); err != nil {
		return nil, fmt.Errorf("policy: user CA: %w", err)
	}
	if pol.hostCA, err = parseKey(p.HostCA); err != nil {
		return nil, fmt.Errorf("policy: host CA: %w", err)
	}
	if p.RecordingMode != "proxy" && p.RecordingMode != "off" {
		return nil, fmt.Errorf("policy: recording mode %q is not proxy or off", p.RecordingMode)
	}
	for _, u := range p.Users {
		pol.users[u.Name] = u
	}
	for _, r := range p.Roles {
		pol.roles[r.Name] = r
	}
	for _, n := range p.Nodes {
		pol.nodes[n.Name] = n
		for _, pr := range n.Principals {
			if _, taken := pol.byName[pr]; !taken {
				pol.byName[pr] = n.Name
			}
		}
	}
	for _, r := range p.Revoked {
		pol.revoked[r.CA+"/"+r.Serial] = true
	}
	for _, pr := range p.Proxies {
		pol.proxyTuns = append(pol.proxyTuns, pr.TunnelAddr)
	}
	return pol, nil
}

func parseKey(s string) (ssh.PublicKey, error) {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s))
	return k, err
}

// loadPolicy reads the policy the proxy cached on disk, for a start while
// the CA is unreachable.
func loadPolicy(path string) (*policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p api.ProxyPolicy
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s: damaged: %w", path, err)
	}
	return newPolicy(p)
}

func (p *policy) save(path string) error {
	b, err := json.Marshal(p.raw)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

// known reports whether name is a registered node.
func (p *policy) known(name string) bool {
	_, ok := p.nodes[name]
	return ok
}

// recording reports whether the cluster records at the proxy.
func (p *policy) recording() bool { return p.raw.RecordingMode == "proxy" }

// isRevoked reports whether a certificate serial of the given CA
// ("user" or "session") is revoked.
func (p *policy) isRevoked(ca string, serial uint64) bool {
	return p.revoked[ca+"/"+strconv.FormatUint(serial, 10)]
}

// errDenied is the one message a refused user sees: the detail goes to
// the log and the audit log, not to the client.
type deniedError struct {
	// public is safe to show the user; reason is for the log.
	public, reason string
}

func (e *deniedError) Error() string { return e.reason }

func denied(public, format string, args ...any) error {
	return &deniedError{public: public, reason: fmt.Sprintf(format, args...)}
}

// publicMessage is what the user is told about err.
func publicMessage(err error) string {
	var de *deniedError
	if errors.As(err, &de) {
		return de.public
	}
	return "access denied"
}

// activeUser checks that a user exists and is not locked.
func (p *policy) activeUser(name string) (api.ProxyUser, error) {
	u, ok := p.users[name]
	if !ok {
		return u, denied(fmt.Sprintf("access denied: user %s is not a user of this cluster (removed, or not enrolled yet)", name),
			"user %q is not in the policy (removed, or not enrolled)", name)
	}
	if u.Locked {
		return u, denied("access denied: your account is locked", "user %q is locked", name)
	}
	return u, nil
}

// allow decides whether user may log in as login on node, and with which
// forwarding permissions (the union of the matching roles').
func (p *policy) allow(user, login string, node api.ProxyNode) (relay.Permissions, error) {
	var perms relay.Permissions
	u, err := p.activeUser(user)
	if err != nil {
		return perms, err
	}
	ok := false
	for _, rn := range u.Roles {
		r, found := p.roles[rn]
		if !found || !api.MatchLabels(r.NodeLabels, node.Labels) {
			continue
		}
		if !roleGivesLogin(r, user, login) {
			continue
		}
		ok = true
		perms.PTY = true
		perms.AgentForwarding = perms.AgentForwarding || r.PermitAgentForwarding
		perms.PortForwarding = perms.PortForwarding || r.PermitPortForwarding
		perms.X11Forwarding = perms.X11Forwarding || r.PermitX11Forwarding
	}
	if !ok {
		return perms, denied(
			fmt.Sprintf("access denied: no role of yours allows login %q on node %q (see the logins your certificate carries with ssh-keygen -L)", login, node.Name),
			"no role of user %q allows login %q on node %q", user, login, node.Name)
	}
	return perms, nil
}

func roleGivesLogin(r api.Role, user, login string) bool {
	for _, l := range r.Logins {
		if l == login || (l == api.UserLoginPlaceholder && login == user) {
			return true
		}
	}
	return false
}

// loginsOn lists the logins user has on node, sorted.
func (p *policy) loginsOn(user string, node api.ProxyNode) []string {
	u, ok := p.users[user]
	if !ok || u.Locked {
		return nil
	}
	var out []string
	for _, rn := range u.Roles {
		r, found := p.roles[rn]
		if !found || !api.MatchLabels(r.NodeLabels, node.Labels) {
			continue
		}
		for _, l := range r.Logins {
			if l == api.UserLoginPlaceholder {
				l = user
			}
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	sort.Strings(out)
	return out
}

// resolve finds the node a target names: a node name or another of its
// principals, or a label query "key=value[,key=value...]" that selects
// exactly one node. The error lists what matched.
func (p *policy) resolve(target string) (api.ProxyNode, error) {
	if name, ok := p.byName[target]; ok {
		return p.nodes[name], nil
	}
	if strings.Contains(target, "=") {
		want := map[string][]string{}
		for _, kv := range strings.Split(target, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return api.ProxyNode{}, denied(fmt.Sprintf("target %q: label queries look like env=prod,team=db", target), "bad label query %q", target)
			}
			want[k] = append(want[k], v)
		}
		var matched []string
		for name, n := range p.nodes {
			if api.MatchLabels(want, n.Labels) {
				matched = append(matched, name)
			}
		}
		sort.Strings(matched)
		switch len(matched) {
		case 1:
			return p.nodes[matched[0]], nil
		case 0:
			return api.ProxyNode{}, denied(fmt.Sprintf("no node has the labels %s", target), "label query %q matched nothing", target)
		default:
			return api.ProxyNode{}, denied(fmt.Sprintf("%d nodes have the labels %s: %s; name one of them", len(matched), target, strings.Join(matched, ", ")), "label query %q is ambiguous", target)
		}
	}
	return api.ProxyNode{}, errUnknownNode
}

var errUnknownNode = errors.New("unknown node")

// suggestions lists the nodes whose names start like target, for the
// message an unknown target gets.
func (p *policy) suggestions(user, target string) []string {
	var out []string
	prefix := target
	if i := strings.IndexAny(prefix, ".-"); i > 0 {
		prefix = prefix[:i]
	}
	prefix = strings.TrimRight(prefix, "0123456789")
	if len(prefix) < 2 {
		prefix = "" // too little to go on: list what the user can reach
	}
	for name, n := range p.nodes {
		if len(p.loginsOn(user, n)) == 0 {
			continue
		}
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	if len(out) > 10 {
		out = out[:10]
	}
	return out
}
