package node

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/authkeys"
	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/nodedir"
	"github.com/opensshca/suite/krl"
	"github.com/opensshca/suite/nss"
)

// The fuzz targets cover what teleport-node reads from outside: the
// policy the CA sends (a broken or hostile CA must not crash the node or
// make it write files sshd and teleport-authkeys misread), the
// pam_group file it edits, and the flags that shape sshd_config.

// FuzzReplacePAMBlock: replacing the managed block keeps every line of
// the operator's file outside it, holds the new block exactly once, and
// doing it again changes nothing.
func FuzzReplacePAMBlock(f *testing.F) {
	block, err := pamGroupBlock(map[string][]string{"alice": {"sudo", "adm"}})
	if err != nil {
		f.Fatal(err)
	}
	for _, conf := range []string{
		"", "# local\nsshd;*;bob;Al0000-2400;audio\n", "no newline",
		"a\n" + string(block) + "b\n", pamBlockBegin + "\n", pamBlockEnd + "\n",
		pamBlockBegin + "\n" + pamBlockBegin + "\n" + pamBlockEnd + "\n", pamBlockBegin + "\r\nx\n" + pamBlockEnd + "\n",
	} {
		f.Add([]byte(conf), true)
		f.Add([]byte(conf), false)
	}
	f.Fuzz(func(t *testing.T, conf []byte, grant bool) {
		b := block
		if !grant {
			b = nil
		}
		out, err := replacePAMBlock(conf, b)
		if err != nil {
			return
		}
		n := 0
		for l := range strings.Lines(string(out)) {
			if strings.TrimRight(l, "\n") == pamBlockBegin {
				n++
			}
		}
		if (grant && n != 1) || (!grant && n != 0) {
			t.Fatalf("%d managed blocks in\n%s", n, out)
		}
		again, err := replacePAMBlock(out, b)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("second replace: %v\n%q\n---\n%q", err, again, out)
		}
		removed, err := replacePAMBlock(out, nil)
		if err != nil {
			t.Fatalf("removing the block: %v", err)
		}
		// The operator's lines outside the block survive, in order.
		var kept []string
		in := false
		for l := range strings.Lines(string(conf)) {
			switch strings.TrimRight(l, "\n") {
			case pamBlockBegin:
				in = true
				continue
			case pamBlockEnd:
				in = false
				continue
			}
			if !in {
				kept = append(kept, strings.TrimRight(l, "\n"))
			}
		}
		var got []string
		for l := range strings.Lines(string(removed)) {
			got = append(got, strings.TrimRight(l, "\n"))
		}
		if !slices.Equal(got, kept) {
			t.Fatalf("lines outside the block changed:\n%q\nwant\n%q", got, kept)
		}
	})
}

// FuzzPAMGroupBlock: a block rendered from user and group names is
// refused, or is lines of exactly five ';'-separated fields naming only
// those users and groups.
func FuzzPAMGroupBlock(f *testing.F) {
	for _, s := range [][2]string{{"alice", "sudo,adm"}, {"bob", "sudo,sudo"}, {"al;ice", "sudo"}, {"alice", "su\ndo"}, {"alice", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, user, groups string) {
		gs := strings.Split(groups, ",")
		b, err := pamGroupBlock(map[string][]string{user: gs, "zed": {"adm"}})
		if err != nil {
			return
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(lines) != 4 || lines[0] != pamBlockBegin || lines[3] != pamBlockEnd {
			t.Fatalf("block:\n%s", b)
		}
		for _, l := range lines[1:3] {
			f := strings.Split(l, ";")
			if len(f) != 5 || f[0] != "sshd" || f[1] != "*" || f[3] != "Al0000-2400" || (f[2] != user && f[2] != "zed") {
				t.Fatalf("line %q", l)
			}
			for _, g := range strings.Split(f[4], ",") {
				if !pamNameRE.MatchString(g) || (f[2] == user && !slices.Contains(gs, g)) {
					t.Fatalf("line %q grants %q", l, g)
				}
			}
		}
	})
}

// fuzzCAKey is testCAKey for any testing.TB.
func fuzzCAKey(t testing.TB, seed byte) string {
	t.Helper()
	pub, err := ssh.NewPublicKey(ed25519Key(seed).Public())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

// FuzzApplyPolicy: whatever the CA answers, applying it either fails or
// writes a cache that teleport-authkeys reads back as the policy, a KRL
// that revokes exactly the serials sent, CA files of one key each, and
// NSS files that name only users of the policy.
func FuzzApplyPolicy(f *testing.F) {
	t0 := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
	p := api.NodePolicy{
		Node: "web-1", Hash: "ab", Generated: t0, RecordingMode: "proxy",
		UserCA: fuzzCAKey(f, 1), SessionCA: fuzzCAKey(f, 2), HostCA: fuzzCAKey(f, 3),
		Users: []api.NodeUser{
			{Name: "alice", Logins: []string{"root", "alice"}, UID: 70001, Groups: []string{"sudo", "dev"}},
			{Name: "bob", Locked: true}, {Name: "root", Logins: []string{"root"}, UID: 70002},
		},
		Groups:  map[string]uint32{"dev": 70100},
		Revoked: []api.RevokedSerial{{Serial: "7", CA: "session", Expires: t0.Add(time.Hour)}, {Serial: "9", CA: "user", Expires: t0}},
	}
	b, err := json.Marshal(p)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(strings.Replace(string(b), `"proxy"`, `"off"`, 1)))
	f.Add([]byte(strings.Replace(string(b), `"7"`, `"0"`, 1)))
	f.Add([]byte(strings.Replace(string(b), `"alice"`, `"al:ice"`, 1)))
	f.Add([]byte(strings.Replace(string(b), `"web-1"`, `"web\u0000"`, 1)))
	ca := fuzzCAKey(f, 2)
	f.Add([]byte(strings.Replace(string(b), strconv.Quote(ca), strconv.Quote(ca+"\n"+fuzzCAKey(f, 4)), 1)))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p api.NodePolicy
		if json.Unmarshal(data, &p) != nil {
			return
		}
		root := t.TempDir()
		dir := nodedir.Dir(filepath.Join(root, "node"))
		if err := os.MkdirAll(dir.Path(nodedir.CacheDir), 0o750); err != nil {
			t.Fatal(err)
		}
		etc := filepath.Join(root, "etc")
		if err := os.Mkdir(etc, 0o755); err != nil {
			t.Fatal(err)
		}
		passwd, group := filepath.Join(etc, "passwd"), filepath.Join(etc, "group")
		must(t, os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644))
		must(t, os.WriteFile(group, []byte("root:x:0:\nsudo:x:27:\n"), 0o644))
		a := &applier{dir: dir, group: -1, log: slog.New(slog.DiscardHandler), nss: NSSConfig{
			Dir: filepath.Join(root, "extrausers"), Passwd: passwd, Group: group, Shell: "/bin/bash", PAMGroupConf: filepath.Join(etc, "group.conf"),
		}}
		if err := a.apply(p, t0); err != nil {
			return
		}
		checkAppliedCache(t, dir, p, t0)
		checkAppliedKRL(t, dir, p)
		for _, name := range []string{nodedir.UserCA, nodedir.SessionCA, nodedir.HostCA, nodedir.TrustedCA} {
			b, err := os.ReadFile(dir.Path(name))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Count(b, []byte("\n")) != 1 {
				t.Errorf("%s holds %d lines: %q", name, bytes.Count(b, []byte("\n")), b)
			}
		}
		if users, err := nss.LocalUsers(filepath.Join(a.nss.Dir, "passwd")); err == nil {
			for u := range users {
				if !slices.ContainsFunc(p.Users, func(pu api.NodeUser) bool { return pu.Name == u && pu.UID != 0 }) || u == "root" {
					t.Errorf("extrausers passwd names %q", u)
				}
			}
		}
		if conf, err := os.ReadFile(a.nss.PAMGroupConf); err == nil {
			if _, err := replacePAMBlock(conf, nil); err != nil {
				t.Errorf("pam_group file written damaged: %v\n%s", err, conf)
			}
		}
	})
}

func ed25519Key(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// checkAppliedCache: the cache parses back to what FromPolicy makes.
func checkAppliedCache(t *testing.T, dir nodedir.Dir, p api.NodePolicy, confirmed time.Time) {
	t.Helper()
	b, err := os.ReadFile(dir.Path(nodedir.Cache))
	if err != nil {
		t.Fatal(err)
	}
	c, err := authkeys.ParseCache(b)
	if err != nil {
		t.Fatalf("teleport-authkeys refuses the cache apply wrote: %v\n%s", err, b)
	}
	want, err := authkeys.FromPolicy(p, confirmed)
	if err != nil {
		t.Fatalf("apply succeeded where FromPolicy fails: %v", err)
	}
	if c.Node != want.Node || c.Mode != want.Mode || c.Hash != want.Hash || !c.Confirmed.Equal(want.Confirmed) ||
		!bytes.Equal(c.TrustedCA.Marshal(), want.TrustedCA.Marshal()) || len(c.Users) != len(want.Users) || len(c.Revoked) != len(want.Revoked) {
		t.Fatalf("cache differs from the policy:\n%+v\n%+v", c, want)
	}
	for name, a := range want.Users {
		got, ok := c.Users[name]
		if !ok || got.Locked != a.Locked || !slices.Equal(got.Logins, a.Logins) {
			t.Fatalf("user %q: cache %+v, policy %+v", name, got, a)
		}
	}
}

// checkAppliedKRL: the KRL revokes the user and session serials sent,
// under their CA, and nothing else.
func checkAppliedKRL(t *testing.T, dir nodedir.Dir, p api.NodePolicy) {
	t.Helper()
	b, err := os.ReadFile(dir.Path(nodedir.KRL))
	if err != nil {
		t.Fatal(err)
	}
	k, err := krl.Parse(b)
	if err != nil {
		t.Fatalf("the KRL apply wrote does not parse: %v", err)
	}
	want := map[string]bool{}
	for _, r := range p.Revoked {
		if r.CA == "user" || r.CA == "session" {
			key := p.UserCA
			if r.CA == "session" {
				key = p.SessionCA
			}
			ca, _, _, _, err := ssh.ParseAuthorizedKey([]byte(key))
			if err != nil {
				t.Fatalf("apply accepted a bad %s CA key", r.CA)
			}
			want[string(ca.Marshal())+"/"+r.Serial] = true
		}
	}
	got := map[string]bool{}
	for _, c := range k.Certs {
		for _, s := range c.Serials {
			got[string(c.CA.Marshal())+"/"+strconv.FormatUint(s, 10)] = true
		}
		if len(c.Ranges) != 0 || len(c.KeyIDs) != 0 {
			t.Fatalf("KRL holds ranges or key ids: %+v", c)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("KRL revokes %d serials, policy %d", len(got), len(want))
	}
	for s := range want {
		if !got[s] {
			t.Fatalf("KRL misses a revoked serial")
		}
	}
}

// FuzzSSHDConfig: the drop-in made from a data directory, a
// teleport-authkeys path and a user name (flags of teleport-node) is
// refused, or is the fixed set of directives, each one line with the
// expected number of arguments.
func FuzzSSHDConfig(f *testing.F) {
	for _, s := range [][3]string{
		{nodedir.DefaultDir, DefaultAuthkeys, "teleport-authkeys"}, {"/srv/node", "/opt/ta", "nobody"},
		{"/srv/my node", DefaultAuthkeys, "x"}, {"/srv/node\nMatch all", DefaultAuthkeys, "x"}, {"/srv/%u", DefaultAuthkeys, "x"},
		{"/srv/node", DefaultAuthkeys, "a b"}, {"srv", DefaultAuthkeys, "x"},
	} {
		f.Add(s[0], s[1], s[2], false)
	}
	want := map[bool]map[string]int{
		false: {"HostKey": 1, "HostCertificate": 1, "TrustedUserCAKeys": 1, "AuthorizedPrincipalsCommand": -1, "AuthorizedPrincipalsCommandUser": 1, "RevokedKeys": 1},
		true:  {"HostKey": 1, "HostCertificate": 1, "AuthorizedKeysCommand": -1, "AuthorizedKeysCommandUser": 1, "RevokedKeys": 1},
	}
	f.Fuzz(func(t *testing.T, dir, authkeysPath, user string, keys bool) {
		text, err := SSHDConfig(SSHDOptions{Dir: dir, Authkeys: authkeysPath, AuthkeysUser: user, KeysCommand: keys, MaxAge: time.Hour})
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for l := range strings.Lines(text) {
			l = strings.TrimSuffix(l, "\n")
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			fields := strings.Fields(l)
			n, ok := want[keys][fields[0]]
			if !ok || seen[fields[0]] || (n > 0 && len(fields) != n+1) || strings.ContainsAny(l, "\"'\r\\") {
				t.Fatalf("unexpected line %q", l)
			}
			seen[fields[0]] = true
			if n < 0 {
				// The command, then its arguments: the fixed ones and the
				// %-tokens sshd expands, nothing more.
				extra := 4 + 2 // mode and three tokens; --max-age 1h0m0s
				if dir != nodedir.DefaultDir {
					extra += 2
				}
				if len(fields) != 2+extra || fields[1] != authkeysPath && !(authkeysPath == "" && fields[1] == DefaultAuthkeys) {
					t.Fatalf("command line %q", l)
				}
				if c := strings.Count(l, "%"); c != 3 {
					t.Fatalf("command line %q has %d tokens", l, c)
				}
			}
		}
		if len(seen) != len(want[keys]) {
			t.Fatalf("directives %v, want %v", seen, want[keys])
		}
	})
}

// FuzzLoadProxies: the proxy list teleport-node saves reads back as it
// was saved, and a damaged file is an error, not a partial list.
func FuzzLoadProxies(f *testing.F) {
	f.Add([]byte(`["proxy1:3024","10.0.0.2:3024"]`))
	f.Add([]byte(`["proxy1:3024",`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[1]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := nodedir.Dir(t.TempDir())
		must(t, os.WriteFile(d.Path(nodedir.Proxies), data, 0o644))
		r := &Runner{cfg: RunConfig{Dir: d}}
		addrs, err := r.loadProxies()
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("loadProxies accepted invalid JSON %q", data)
		}
		b, _ := json.Marshal(addrs)
		must(t, os.WriteFile(d.Path(nodedir.Proxies), b, 0o644))
		again, err := r.loadProxies()
		if err != nil || !slices.Equal(again, addrs) {
			t.Fatalf("round trip: %q, %v; want %q", again, err, addrs)
		}
	})
}
