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
		{"ipv6_proxy", func(c *SSHConfig) { c.ProxyAddr = "[2001:db8::5]:3023"; c.Hosts = []string{"node*"} }},
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

// sshG runs the real "ssh -G -F config args..." (args ending in the
// destination) and returns the options it resolved, keyed by lower-case
// name (values of repeated options joined by newlines).
func sshG(t *testing.T, config string, args ...string) map[string]string {
	t.Helper()
	cmd := exec.Command("ssh", append([]string{"-G", "-T", "-F", config}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ssh -G -F %s %q: %v\n%s", config, args, err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("ssh -G -F %s %q warned:\n%s", config, args, stderr.String())
	}
	return parseSSHG(string(out))
}

// parseSSHG reads the output of ssh -G.
func parseSSHG(out string) map[string]string {
	opts := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
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

			// One hop: the user name given on the command line, login and
			// node, wins over the block's User; everything else is the
			// proxy's block.
			for _, args := range [][]string{
				{"root@node1@bastion.prod.example.com"},
				{"-p", "3023", "root@node1@bastion.prod.example.com"},
				{"-l", "root@node1", "bastion.prod.example.com"},
			} {
				hop := sshG(t, config, args...)
				want["user"] = "root@node1"
				want["hostname"] = "bastion.prod.example.com"
				want["identitiesonly"] = "yes"
				for k, v := range want {
					if hop[k] != v {
						t.Errorf("one hop %q: %s = %q, want %q", args, k, hop[k], v)
					}
				}
				if j, ok := hop["proxyjump"]; ok {
					t.Errorf("one hop %q jumps through %q", args, j)
				}
			}

			other := sshG(t, config, "github.com")
			if _, ok := other["proxyjump"]; ok || other["certificatefile"] == c.CertFile ||
				strings.Contains(other["userknownhostsfile"], dir) || other["hostkeyalgorithms"] == algs {
				t.Errorf("an unrelated host picked up the cluster's settings: %v", other)
			}
		})
	}
}

// The one-hop commands the block's comment gives, run as written (with
// LOGIN, NODE, FILE and PATH filled in) by the real ssh, scp and sftp,
// resolve with the block to the proxy's port, the certificate and the
// cluster's known_hosts, with "LOGIN@NODE" as the user: scp and sftp run a
// stand-in for ssh (-S) that records what the real ssh -G makes of the
// arguments they pass it.
func TestSSHConfigOneHopCommands(t *testing.T) {
	for _, prog := range []string{"ssh", "scp", "sftp"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s not installed; .ci/run installs openssh-client", prog)
		}
	}
	tests := []struct {
		name, proxy, host string
	}{
		{"name", "bastion.prod.example.com:3023", "bastion.prod.example.com"},
		{"ipv4", "10.0.0.5:3023", "10.0.0.5"},
		{"ipv6", "[2001:db8::5]:3023", "2001:db8::5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			c := exampleConfig(filepath.Join(dir, ".teleport"))
			c.ProxyAddr = tt.proxy
			block, err := c.Generate()
			if err != nil {
				t.Fatal(err)
			}
			config := filepath.Join(dir, "ssh_config")
			file := filepath.Join(dir, "file")
			recorded := filepath.Join(dir, "ssh-G")
			fake := filepath.Join(dir, "fake-ssh")
			for path, data := range map[string]string{
				config: block,
				file:   "data\n",
				fake:   "#!/bin/sh\nexec ssh -G \"$@\" >'" + recorded + "' 2>&1\n",
			} {
				if err := os.WriteFile(path, []byte(data), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			fill := strings.NewReplacer("LOGIN", "root", "NODE", "node1", "FILE", file, "PATH", "/tmp/x")
			var ran []string
			for line := range strings.SplitSeq(block, "\n") {
				cmdline, ok := strings.CutPrefix(line, "#   ")
				if !ok || !strings.Contains(cmdline, "LOGIN@NODE@") {
					continue
				}
				args := strings.Fields(fill.Replace(cmdline))
				prog := args[0]
				ran = append(ran, prog)
				var got map[string]string
				if prog == "ssh" {
					got = sshG(t, config, args[1:]...)
				} else {
					_ = os.Remove(recorded)
					cmd := exec.Command(prog, append([]string{"-F", config, "-S", fake}, args[1:]...)...)
					cmd.Stdin = strings.NewReader("")
					out, _ := cmd.CombinedOutput() // fails: the stand-in connects nowhere
					b, err := os.ReadFile(recorded)
					if err != nil {
						t.Fatalf("%s did not run ssh: %v\n%s", cmdline, err, out)
					}
					got = parseSSHG(string(b))
				}
				want := map[string]string{
					"user":               "root@node1",
					"hostname":           tt.host,
					"port":               "3023",
					"certificatefile":    c.CertFile,
					"identityfile":       c.IdentityFile,
					"userknownhostsfile": c.KnownHostsFile,
					"hostkeyalgorithms":  strings.Join(HostKeyAlgorithms, ","),
				}
				for k, v := range want {
					if got[k] != v {
						t.Errorf("%s: %s = %q, want %q", cmdline, k, got[k], v)
					}
				}
				if j, ok := got["proxyjump"]; ok {
					t.Errorf("%s jumps through %q", cmdline, j)
				}
			}
			if !slices.Equal(ran, []string{"ssh", "scp", "sftp"}) {
				t.Errorf("the block's comment gives one-hop commands for %q, want ssh, scp and sftp", ran)
			}
		})
	}
}

// TestContribExample keeps contrib/ssh/ssh_config.example equal to what
// the generator prints (its golden file), below the example's header.
func TestContribExample(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "contrib", "ssh", "ssh_config.example"))
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile(filepath.Join("testdata", "sshconfig_proxy_default_hosts.golden"))
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := bytes.Cut(example, []byte("\n\n"))
	if !ok || !bytes.Equal(body, golden) {
		t.Fatal("contrib/ssh/ssh_config.example differs from testdata/sshconfig_proxy_default_hosts.golden: copy the golden file below the example's header")
	}
}
