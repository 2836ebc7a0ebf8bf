package sshproxy

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// The fuzz targets cover what a user sends the proxy before any policy
// decision (the single-hop user name, the target it names) and the
// policy file the proxy caches on disk.

// fuzzKey is a fixed key for seeds, so that the corpus is stable.
func fuzzKey(t testing.TB, seed byte) ssh.PublicKey {
	t.Helper()
	k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	p, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fuzzPolicy is testPolicy's cluster with fixed keys, plus a node whose
// principal is another node's name (the first node to claim a name keeps
// it).
func fuzzPolicy(t testing.TB) api.ProxyPolicy {
	return api.ProxyPolicy{
		Hash: "ab", RecordingMode: "proxy", UserCA: authorized(fuzzKey(t, 1)), HostCA: authorized(fuzzKey(t, 2)), SessionCA: authorized(fuzzKey(t, 3)),
		Users: []api.ProxyUser{{Name: "alice", Roles: []string{"prod", "dev"}}, {Name: "bob", Roles: []string{"prod"}, Locked: true}},
		Roles: []api.Role{
			{Name: "prod", Logins: []string{"root"}, NodeLabels: map[string][]string{"env": {"prod"}}, PermitPortForwarding: true},
			{Name: "dev", Logins: []string{"{user}", "postgres"}, NodeLabels: map[string][]string{"env": {"staging"}}, PermitAgentForwarding: true},
		},
		Nodes: []api.ProxyNode{
			{Name: "web1", Labels: map[string]string{"env": "prod"}, Principals: []string{"web1", "web1.example.com", "10.0.0.1"}},
			{Name: "db1", Labels: map[string]string{"env": "staging", "team": "db"}, Principals: []string{"db1"}},
			{Name: "db2", Labels: map[string]string{"env": "staging", "team": "db"}, Principals: []string{"db2", "web1.example.com"}},
			{Name: "odd", Labels: map[string]string{"a=b": "c,d", "": "x"}, Principals: []string{"odd"}},
		},
		Revoked: []api.RevokedSerial{{Serial: "77", CA: "user"}},
		Proxies: []api.ProxyInfo{{Name: "proxy1", PublicAddr: "proxy1:3023", TunnelAddr: "proxy1:3024"}},
	}
}

// FuzzSplitTarget: the single-hop user name "login@target" splits at its
// last '@' into two non-empty parts that make it up again; a name that
// does not split is not a single-hop name.
func FuzzSplitTarget(f *testing.F) {
	for _, s := range []string{"root@web1", "root@web1@", "@web1", "alice", "a@b@c", "root@env=prod,team=db", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		login, target, ok := splitTarget(user)
		if !ok {
			if login != "" || target != "" {
				t.Fatalf("splitTarget(%q) = %q, %q, false", user, login, target)
			}
			if i := strings.LastIndexByte(user, '@'); i > 0 && i < len(user)-1 {
				t.Fatalf("splitTarget(%q) refused a login@target name", user)
			}
			return
		}
		if login == "" || target == "" || strings.Contains(target, "@") || login+"@"+target != user {
			t.Fatalf("splitTarget(%q) = %q, %q", user, login, target)
		}
	})
}

// FuzzRoute: a target the proxy routes is a node of the policy that the
// target names (a principal, or a label query it alone matches); in mode
// off with DNS fallback, an unknown target is routed only when it is a
// host name or address that cannot carry anything else.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{"web1", "web1.example.com", "10.0.0.1", "env=prod", "env=staging", "env=staging,team=db", "team=db,env=staging,env=prod",
		"env=", "=prod", "a=b=c", "web9", "-oProxyCommand=x", "host name", "fe80::1%eth0", "a..b", "x.example.com"} {
		f.Add(s, uint32(22))
	}
	raw := fuzzPolicy(f)
	pol, err := newPolicy(raw)
	if err != nil {
		f.Fatal(err)
	}
	off := raw
	off.RecordingMode = "off"
	polOff, err := newPolicy(off)
	if err != nil {
		f.Fatal(err)
	}
	p := &Proxy{cfg: Config{DNSFallback: true}}
	f.Fuzz(func(t *testing.T, target string, port uint32) {
		n, err := pol.resolve(target)
		if err == nil {
			checkResolved(t, pol, target, n)
		}
		for _, pl := range []*policy{pol, polOff} {
			ni, err := p.route(pl, "alice", target, port)
			if err != nil {
				if publicMessage(err) == "" {
					t.Fatalf("route(%q): empty public message", target)
				}
				continue
			}
			if pl.known(ni.Name) {
				checkResolved(t, pl, target, ni.ProxyNode)
				continue
			}
			if pl.recording() || ni.Name != target || !validHostName(target) || strings.HasPrefix(target, "-") || strings.ContainsAny(target, " \t\r\n,\"'@/\\") {
				t.Fatalf("route(%q) in mode %s gave unknown node %+v", target, pl.raw.RecordingMode, ni)
			}
			if h, _, err := net.SplitHostPort(ni.Addr); err != nil || h != target {
				t.Fatalf("route(%q): fallback address %q", target, ni.Addr)
			}
		}
	})
}

// checkResolved checks that target names node n of pol.
func checkResolved(t *testing.T, pol *policy, target string, n api.ProxyNode) {
	t.Helper()
	if !pol.known(n.Name) {
		t.Fatalf("resolve(%q) = unknown node %q", target, n.Name)
	}
	if name, ok := pol.byName[target]; ok {
		if name != n.Name || !slices.Contains(n.Principals, target) {
			t.Fatalf("resolve(%q) = %q, want %q", target, n.Name, name)
		}
		return
	}
	want := map[string][]string{}
	for _, kv := range strings.Split(target, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			t.Fatalf("resolve(%q) = %q from a malformed query", target, n.Name)
		}
		want[k] = append(want[k], v)
	}
	matched := 0
	for _, m := range pol.nodes {
		if api.MatchLabels(want, m.Labels) {
			matched++
		}
	}
	if !api.MatchLabels(want, n.Labels) || matched != 1 {
		t.Fatalf("resolve(%q) = %q, which the query does not select alone (%d match)", target, n.Name, matched)
	}
}

// FuzzLoadPolicy: the policy file the proxy caches is either refused or
// indexes to a policy whose save reloads to the same policy.
func FuzzLoadPolicy(f *testing.F) {
	b, err := json.Marshal(fuzzPolicy(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte(`{"recording_mode":"off","user_ca":"x","host_ca":"y"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "policy.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		pol, err := loadPolicy(path)
		if err != nil {
			return
		}
		if pol.userCA == nil || pol.hostCA == nil || (pol.raw.RecordingMode != "proxy" && pol.raw.RecordingMode != "off") {
			t.Fatalf("loaded policy without CA keys or mode: %+v", pol.raw)
		}
		for pr, name := range pol.byName {
			if n, ok := pol.nodes[name]; !ok || !slices.Contains(n.Principals, pr) {
				t.Fatalf("principal %q indexed to %q, which does not hold it", pr, name)
			}
		}
		if err := pol.save(path); err != nil {
			t.Fatalf("save of a loaded policy: %v", err)
		}
		again, err := loadPolicy(path)
		if err != nil {
			t.Fatalf("reload of a saved policy: %v", err)
		}
		b1, _ := json.Marshal(pol.raw)
		b2, _ := json.Marshal(again.raw)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("save and reload changed the policy:\n%s\n%s", b1, b2)
		}
	})
}

// FuzzCheckSourceAddress: the proxy's reading of a certificate's
// source-address option allows an address only when some entry of the
// list names it, and adding entries never takes an address away.
func FuzzCheckSourceAddress(f *testing.F) {
	for _, s := range [][2]string{
		{"10.0.0.0/8", "10.1.2.3"}, {"10.0.0.1", "10.0.0.1"}, {"192.168.0.0/16,10.0.0.1", "10.0.0.2"},
		{"::1", "::1"}, {"::ffff:10.0.0.1", "10.0.0.1"}, {"10.0.0.1/8", "10.9.9.9"}, {"", "1.2.3.4"}, {" 10.0.0.1", "10.0.0.1"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, option, remote string) {
		ip, err := netip.ParseAddr(remote)
		if err != nil || ip.Zone() != "" {
			return
		}
		addr := &net.TCPAddr{IP: ip.AsSlice(), Port: 5000}
		allowed := checkSourceAddress(addr, option) == nil
		if option == "" {
			if !allowed {
				t.Fatal("an empty option refused")
			}
			return
		}
		named := false
		for _, s := range strings.Split(option, ",") {
			if pfx, err := netip.ParsePrefix(s); err == nil {
				named = named || pfx.Contains(ip.Unmap())
			} else if a, err := netip.ParseAddr(s); err == nil {
				named = named || a.Unmap() == ip.Unmap()
			}
		}
		if allowed != named {
			t.Fatalf("checkSourceAddress(%s, %q) allowed=%v, but the list names it: %v", ip, option, allowed, named)
		}
		if allowed && checkSourceAddress(addr, option+",192.0.2.1") != nil {
			t.Fatalf("adding an entry to %q refused %s", option, ip)
		}
		if !allowed && checkSourceAddress(addr, option+","+ip.Unmap().String()) != nil {
			t.Fatalf("adding %s to %q did not allow it", ip, option)
		}
	})
}
