package keyhelper

import (
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The fuzz targets cover what the keyhelper reads from the user and from
// the CA and then writes into file names and ssh_config: the CA address,
// the proxy address the CA reports, --hosts, and its own profile.json.

// FuzzParseServer: a CA address the keyhelper accepts names the same
// cluster again through its URL and its address, and its state
// directory is one plain file name that names it back.
func FuzzParseServer(f *testing.F) {
	for _, s := range []string{
		"ca.example.com", "https://ca.example.com:3080/", "CA.Example.COM.:443", "[::1]:3080", "https://[fe80::1%25eth0]:3080",
		"10.0.0.1", "http://ca", "https://user@ca", "https://ca:0", "https://ca:03080", "ca/x", " ca ", "1--2", "[1::2]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		s, err := ParseServer(raw)
		if err != nil {
			return
		}
		for _, again := range []string{s.URL(), s.Addr()} {
			if s2, err := ParseServer(again); err != nil || s2 != s {
				t.Fatalf("ParseServer(%q) = %+v; again from %q: %+v, %v", raw, s, again, s2, err)
			}
		}
		name := s.dirName()
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || filepath.Base(name) != name {
			t.Fatalf("server %+v has state directory %q", s, name)
		}
		// Without a readable profile the directory name alone must name
		// the cluster. It cannot for IPv6 addresses: "fe80::1" and the
		// host name "fe80--1" share "fe80--1_PORT" (see the report in
		// docs/SECURITY.md, Fuzzing); such a directory still names one
		// whose state directory is the same.
		if got, ok := serverOfDir(name, filepath.Join(t.TempDir(), "none")); ok && got != s {
			if _, err := netip.ParseAddr(s.Host); err != nil || got.dirName() != name {
				t.Fatalf("state directory %q names %+v, not %+v", name, got, s)
			}
		}
		if err := CheckProxyAddr(s.Addr()); err != nil {
			t.Fatalf("the CA's own address %q is not a usable proxy address: %v", s.Addr(), err)
		}
	})
}

// sshConfigKeywords are the options the generated blocks may set, with
// the number of arguments each takes.
var sshConfigKeywords = map[string]int{
	"Port": 1, "User": 1, "UserKnownHostsFile": 1, "StrictHostKeyChecking": 1, "HostKeyAlgorithms": 1,
	"CertificateFile": 1, "IdentityFile": 1, "IdentitiesOnly": 1, "ProxyJump": 1,
}

// FuzzSSHConfig: the ssh_config block made from a user name, a proxy
// address the CA reported, --hosts and the state directory is refused,
// or is comments, Host lines of valid patterns and the known options,
// each with one argument, the proxy's host never matched by the hosts'
// block.
func FuzzSSHConfig(f *testing.F) {
	for _, s := range [][4]string{
		{"alice", "proxy.example.com:3023", "", "/home/alice/.teleport"},
		{"alice", "[::1]:3023", "*.prod.example.com,!db.prod.example.com", "/home/alice/my dir"},
		{"alice", "", "", "/h"},
		{"al ice", "p:1", "", "/h"},
		{"alice", "p:1\nHost *", "", "/h"},
		{"alice", "p:1", "a b,c\td", "/h/%d"},
		{"alice", "[fe80::1%eth0]:22", "x", "/h"},
		{"alice", "P.Example.COM:+22", "x", "/h\"x"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, user, proxyAddr, hosts, dir string) {
		c := SSHConfig{
			Server: Server{Host: "ca.example.com", Port: DefaultPort}, User: user, ProxyAddr: proxyAddr,
			KnownHostsFile: filepath.Join(dir, "known_hosts"), CertFile: filepath.Join(dir, "key-cert.pub"), IdentityFile: filepath.Join(dir, "key"),
		}
		if hosts != "" {
			hs, err := ParseHosts(hosts)
			if err != nil {
				return
			}
			c.Hosts = hs
		}
		text, err := c.Generate()
		if err != nil {
			return
		}
		var hostLines [][]string
		for l := range strings.Lines(text) {
			l = strings.TrimSuffix(l, "\n")
			if strings.ContainsFunc(l, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				t.Fatalf("line %q holds a control character", l)
			}
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			if p, ok := strings.CutPrefix(l, "Host "); ok {
				fs := strings.Fields(p)
				for _, h := range fs {
					if !hostPatternRE.MatchString(h) {
						t.Fatalf("Host line %q has pattern %q", l, h)
					}
				}
				hostLines = append(hostLines, fs)
				continue
			}
			kw, arg, ok := strings.Cut(strings.TrimPrefix(l, "    "), " ")
			if !ok || !strings.HasPrefix(l, "    ") || sshConfigKeywords[kw] != 1 {
				t.Fatalf("unexpected line %q", l)
			}
			if q, quoted := strings.CutPrefix(arg, `"`); quoted {
				if !strings.HasSuffix(q, `"`) || strings.Count(q, `"`) != 1 {
					t.Fatalf("line %q quotes badly", l)
				}
			} else if strings.ContainsAny(arg, " \t\"'") {
				t.Fatalf("line %q has more than one argument", l)
			}
			if kw == "User" && arg != user || kw == "ProxyJump" && !strings.HasPrefix(arg, user+"@") {
				t.Fatalf("line %q for user %q", l, user)
			}
		}
		if proxyAddr == "" {
			return
		}
		host, port, err := net.SplitHostPort(proxyAddr)
		if err != nil {
			t.Fatalf("accepted proxy address %q", proxyAddr)
		}
		host = strings.ToLower(host)
		if len(hostLines) == 0 || !slices.Equal(hostLines[0], []string{host}) || !strings.Contains(text, "    Port "+port+"\n") {
			t.Fatalf("proxy block for %q:\n%s", proxyAddr, text)
		}
		if len(hostLines) == 2 && !slices.Contains(hostLines[1], "!"+host) {
			t.Fatalf("the hosts' block does not exclude the proxy %q: %q", host, hostLines[1])
		}
	})
}

// FuzzReadProfile: a profile.json the keyhelper reads is one it writes
// back the same, session secret included.
func FuzzReadProfile(f *testing.F) {
	f.Add([]byte(`{"version":1,"server":"https://ca.example.com:3080","user":"alice","pin":"sha256:00","proxy_addr":"p:3023","hosts":["*.x"],"session":"s3cret","session_expires":"2026-01-01T00:00:00Z","key_file":"/h/key","cert_file":"/h/key-cert.pub"}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"session_expires":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"version":1`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, profileFile)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := readProfileFile(path)
		if err != nil {
			return
		}
		p.dir = dir
		if err := p.Save(); err != nil {
			t.Fatalf("Save of a profile read: %v", err)
		}
		again, err := readProfileFile(path)
		if err != nil {
			t.Fatalf("reading a saved profile: %v", err)
		}
		again.dir = dir
		b1, _ := json.Marshal(p)
		b2, _ := json.Marshal(again)
		if string(b1) != string(b2) || !reflect.DeepEqual(p.Hosts, again.Hosts) {
			t.Fatalf("profile changed on save:\n%s\n%s", b1, b2)
		}
	})
}
