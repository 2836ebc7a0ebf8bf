package keyhelper

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run go test -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// exampleConfig is the block of alice's cluster with the state in
// /home/alice/.teleport.
func exampleConfig(dir string) SSHConfig {
	d := filepath.Join(dir, "ca.example.com_3080")
	return SSHConfig{
		Server:         Server{Host: "ca.example.com", Port: "3080"},
		User:           "alice",
		ProxyAddr:      "bastion.prod.example.com:3023",
		KnownHostsFile: filepath.Join(d, "known_hosts"),
		CertFile:       filepath.Join(d, "key-cert.pub"),
		IdentityFile:   filepath.Join(d, "key"),
		IncludeGlob:    filepath.Join(dir, "*", "ssh_config"),
	}
}

func TestSSHConfigGolden(t *testing.T) {
	tests := []struct {
		name   string
		change func(*SSHConfig)
	}{
		{"proxy_default_hosts", func(*SSHConfig) {}},
		{"proxy_hosts_flag", func(c *SSHConfig) { c.Hosts = []string{"*.corp.example.net", "db-?", "!db-9"} }},
		{"no_proxy", func(c *SSHConfig) { c.ProxyAddr = ""; c.Hosts = []string{"10.1.*"} }},
		{"no_default_hosts", func(c *SSHConfig) { c.ProxyAddr = "10.0.0.5:3023" }},
		{"quoted_paths", func(c *SSHConfig) { *c = exampleConfig("/home/alice/My Files/.teleport") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := exampleConfig("/home/alice/.teleport")
			tt.change(&c)
			got, err := c.Generate()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "sshconfig_"+tt.name+".golden", got)
		})
	}
}

func TestSSHConfigRefuses(t *testing.T) {
	tests := []struct {
		name   string
		change func(*SSHConfig)
	}{
		{"percent in path", func(c *SSHConfig) { c.CertFile = "/home/a%h/key-cert.pub" }},
		{"dollar in path", func(c *SSHConfig) { c.KnownHostsFile = "/home/${USER}/kh" }},
		{"quote in path", func(c *SSHConfig) { c.IdentityFile = `/home/a"b/key` }},
		{"newline in path", func(c *SSHConfig) { c.IdentityFile = "/home/a\nHost *\n/key" }},
		{"bad user", func(c *SSHConfig) { c.User = "alice root" }},
		{"bad proxy", func(c *SSHConfig) { c.ProxyAddr = "proxy.example.com 3023" }},
		{"bad pattern", func(c *SSHConfig) { c.Hosts = []string{"a\nProxyCommand x"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := exampleConfig("/home/alice/.teleport")
			tt.change(&c)
			if got, err := c.Generate(); err == nil {
				t.Errorf("Generate accepted it:\n%s", got)
			}
		})
	}
}

func TestParseHosts(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "*.example.com", want: []string{"*.example.com"}},
		{in: "*.a.com, db-? !db-9", want: []string{"*.a.com", "db-?", "!db-9"}},
		{in: "10.0.*,node1", want: []string{"10.0.*", "node1"}},
		{in: "", wantErr: true},
		{in: " , ", wantErr: true},
		{in: "!a.com", wantErr: true},
		{in: "!", wantErr: true},
		{in: "a.com\"", wantErr: true},
		{in: "a.com#x", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseHosts(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("ParseHosts(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestDefaultHosts(t *testing.T) {
	ca := Server{Host: "ca.corp.example.com", Port: "3080"}
	tests := []struct {
		proxy string
		s     Server
		want  []string
	}{
		{"bastion.prod.example.com:3023", ca, []string{"*.prod.example.com"}},
		{"BASTION.Example.COM.:3023", ca, []string{"*.example.com"}},
		{"", ca, []string{"*.corp.example.com"}},
		{"example.com:3023", ca, nil},
		{"localhost:3023", ca, nil},
		{"10.0.0.5:3023", ca, nil},
		{"[2001:db8::1]:3023", ca, nil},
		{"", Server{Host: "127.0.0.1", Port: "3080"}, nil},
	}
	for _, tt := range tests {
		if got := DefaultHosts(tt.proxy, tt.s); !slices.Equal(got, tt.want) {
			t.Errorf("DefaultHosts(%q, %s) = %q, want %q", tt.proxy, tt.s, got, tt.want)
		}
	}
}

// sshG runs the real "ssh -G -F config host" and returns the options it
// resolved, keyed by lower-case name (values of repeated options joined
// by newlines).
func sshG(t *testing.T, config, host string) map[string]string {
	t.Helper()
	cmd := exec.Command("ssh", "-G", "-T", "-F", config, host)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ssh -G -F %s %s: %v\n%s", config, host, err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("ssh -G -F %s %s warned:\n%s", config, host, stderr.String())
	}
	opts := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, " ")
		if old, ok := opts[k]; ok {
			v = old + "\n" + v
		}
		opts[k] = v
	}
	return opts
}

// The real ssh reads the generated block and resolves, for a cluster host,
// the proxy jump, the cluster's known_hosts, only certificate host key
// algorithms, and the certificate; for the proxy its port and user and no
// jump; and for an unrelated host none of it.
func TestSSHConfigWithRealSSH(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("ssh not installed; .ci/run installs openssh-client")
	}
	for _, base := range []string{"plain", "with space"} {
		t.Run(base, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), base, ".teleport")
			c := exampleConfig(dir)
			block, err := c.Generate()
			if err != nil {
				t.Fatal(err)
			}
			config := filepath.Join(t.TempDir(), "ssh_config")
			if err := os.WriteFile(config, []byte(block), 0o600); err != nil {
				t.Fatal(err)
			}
			algs := strings.Join(HostKeyAlgorithms, ",")

			node := sshG(t, config, "node1.prod.example.com")
			want := map[string]string{
				"proxyjump":             "alice@bastion.prod.example.com:3023",
				"userknownhostsfile":    c.KnownHostsFile,
				"stricthostkeychecking": "true",
				"hostkeyalgorithms":     algs,
				"certificatefile":       c.CertFile,
				"identityfile":          c.IdentityFile,
				"identitiesonly":        "yes",
				"port":                  "22",
			}
			for k, v := range want {
				if node[k] != v {
					t.Errorf("cluster host: %s = %q, want %q", k, node[k], v)
				}
			}

			proxy := sshG(t, config, "bastion.prod.example.com")
			want = map[string]string{
				"port":               "3023",
				"user":               "alice",
				"userknownhostsfile": c.KnownHostsFile,
				"hostkeyalgorithms":  algs,
				"certificatefile":    c.CertFile,
			}
			for k, v := range want {
				if proxy[k] != v {
					t.Errorf("proxy: %s = %q, want %q", k, proxy[k], v)
				}
			}
			if j, ok := proxy["proxyjump"]; ok {
				t.Errorf("proxy jumps through %q: the proxy must be reached directly", j)
			}

			other := sshG(t, config, "github.com")
			if _, ok := other["proxyjump"]; ok || other["certificatefile"] == c.CertFile ||
				strings.Contains(other["userknownhostsfile"], dir) || other["hostkeyalgorithms"] == algs {
				t.Errorf("an unrelated host picked up the cluster's settings: %v", other)
			}
		})
	}
}
