package sshproxy_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/testbin"
	"github.com/opensshca/suite/sshproxy/tunnel"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.RemoveAll()
	os.Exit(code)
}

// cluster is a CA, a teleport-proxy and the binaries the tests run.
type cluster struct {
	t        *testing.T
	ca       *testbin.CA
	bins     map[string]string
	authkeys string
	hostCA   string

	proxyDir           string
	proxyName          string // default proxy1
	proxyAddr, tunAddr string
	// publicAddr, when set, is the proxy's --public-addr (a balancer in
	// front of it); caURL, when set, is where proxies and nodes reach the
	// CA (a balancer in front of replicas).
	publicAddr, caURL string
	proxy             *exec.Cmd
	proxyLog          *testbin.Buffer
	proxyDone         chan struct{}
}

func newCluster(t *testing.T, caArgs ...string) *cluster {
	t.Helper()
	requireOpenSSH(t)
	return newClusterWith(t, testbin.StartCA(t, caArgs...))
}

func requireOpenSSH(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the proxy tests run sshd and need root; CI runs them as root")
	}
	for _, b := range []string{"ssh", "scp", "sftp"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed; .ci/run installs openssh-client", b)
		}
	}
}

// newClusterWith is newCluster around a CA the caller started.
func newClusterWith(t *testing.T, ca *testbin.CA) *cluster {
	t.Helper()
	bins := testbin.Build(t, testbin.Node, testbin.Authkeys, testbin.Caadm, testbin.Proxy)
	c := &cluster{
		t: t, ca: ca, bins: bins,
		authkeys:  testbin.RootOnlyCopy(t, bins["teleport-authkeys"]),
		proxyDir:  filepath.Join(testbin.ShortTempDir(t), "proxy"),
		proxyAddr: testbin.FreePort(t),
		tunAddr:   testbin.FreePort(t),
	}
	info, err := c.ca.Admin().AdminCA(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.hostCA = info.HostCA
	return c
}

// server is the CA URL proxies and nodes are given.
func (c *cluster) server() string {
	if c.caURL != "" {
		return c.caURL
	}
	return c.ca.URL()
}

func (c *cluster) caadm(args ...string) string {
	c.t.Helper()
	out, err := exec.Command(c.bins["caadm"], append([]string{"--socket", c.ca.AdminSocket}, args...)...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("caadm %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (c *cluster) token(role string, labels map[string]string) string {
	c.t.Helper()
	resp, err := c.ca.Admin().AddToken(context.Background(), api.AddTokenRequest{Role: role, Labels: labels})
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.Secret
}

// startProxy starts teleport-proxy (joining on the first start).
func (c *cluster) startProxy(extra ...string) {
	c.t.Helper()
	public := c.proxyAddr
	if c.publicAddr != "" {
		public = c.publicAddr
	}
	args := []string{"--data-dir", c.proxyDir, "--listen", c.proxyAddr, "--tunnel-listen", c.tunAddr,
		"--public-addr", public, "--tunnel-public-addr", c.tunAddr, "--log-level", "debug"}
	if _, err := os.Stat(filepath.Join(c.proxyDir, "proxy.json")); err != nil {
		name := c.proxyName
		if name == "" {
			name = "proxy1"
		}
		args = append(args, "--server", c.server(), "--token", c.token("proxy", nil), "--ca-pin", c.ca.Pin, "--name", name)
	}
	c.proxyLog = new(testbin.Buffer)
	c.proxy = exec.Command(c.bins["teleport-proxy"], append(args, extra...)...)
	c.proxy.Env = testbin.Environ()
	c.proxy.Stdout, c.proxy.Stderr = c.proxyLog, c.proxyLog
	if err := c.proxy.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	c.proxyDone = done
	cmd, log := c.proxy, c.proxyLog
	go func() { _ = cmd.Wait(); close(done) }()
	c.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if c.t.Failed() {
			c.t.Logf("teleport-proxy log:\n%s", log)
		}
	})
	eventually(c.t, 15*time.Second, "teleport-proxy listening", func() bool {
		conn, err := net.DialTimeout("tcp", c.proxyAddr, time.Second)
		if err == nil {
			conn.Close()
			return true
		}
		select {
		case <-done:
			c.t.Fatalf("teleport-proxy exited:\n%s", log)
		default:
		}
		return false
	})
}

func (c *cluster) stopProxy(sig syscall.Signal) {
	c.t.Helper()
	_ = c.proxy.Process.Signal(sig)
	select {
	case <-c.proxyDone:
	case <-time.After(15 * time.Second):
		c.t.Fatal("teleport-proxy did not stop")
	}
}

// testNode is a joined node: a real sshd on a loopback port that only
// its teleport-node knows (the proxy reaches it through the tunnel).
type testNode struct {
	name string
	dir  string
	sshd *testbin.SSHD
	log  *testbin.Buffer
	run  *exec.Cmd // teleport-node run
}

func (c *cluster) startNode(name string, labels map[string]string) *testNode {
	return c.startNodeWith(name, labels, nil, nil)
}

// startNodeWith is startNode with extra flags for join and run.
func (c *cluster) startNodeWith(name string, labels map[string]string, joinArgs, runArgs []string) *testNode {
	t := c.t
	t.Helper()
	dir := filepath.Join(testbin.ShortTempDir(t), "node")
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	n := &testNode{name: name, dir: dir, log: new(testbin.Buffer)}
	out, err := exec.Command(c.bins["teleport-node"], append([]string{"join", "--server", c.server(), "--token", c.token("node", labels),
		"--ca-pin", c.ca.Pin, "--data-dir", dir, "--name", name, "--authkeys-user", "nobody"}, joinArgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("teleport-node join: %v\n%s", err, out)
	}
	conf, err := exec.Command(c.bins["teleport-node"], "sshd-config", "--data-dir", dir, "--authkeys", c.authkeys).Output()
	if err != nil {
		t.Fatalf("teleport-node sshd-config: %v", err)
	}
	dropIn := filepath.Join(filepath.Dir(dir), "teleport-node.conf")
	if err := os.WriteFile(dropIn, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	n.sshd = testbin.StartSSHD(t, testbin.SSHDConfig{Extra: []string{"Include " + dropIn, "Subsystem sftp internal-sftp"}})
	run := exec.Command(c.bins["teleport-node"], append([]string{"run", "--data-dir", dir, "--reload-command", "", "--nss-dir", "",
		"--policy-wait", "1s", "--sshd-addr", n.sshd.Addr, "--log-level", "debug"}, runArgs...)...)
	run.Env = testbin.Environ()
	run.Stdout, run.Stderr = n.log, n.log
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	n.run = run
	t.Cleanup(func() {
		_ = run.Process.Kill()
		_ = run.Wait()
		if t.Failed() {
			t.Logf("teleport-node %s log:\n%s\nsshd %s:\n%s", name, n.log, name, n.sshd.Stderr)
		}
	})
	return n
}

// user is a key pair with a certificate, and an ssh_config that reaches
// nodes through the proxy with strict host key checking against the
// @cert-authority line only.
type user struct {
	name, key, cert, config, knownHosts string
}

func (c *cluster) user(name string) user {
	t := c.t
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	cert, err := c.ca.Admin().Sign(context.Background(), api.AdminSignRequest{Name: name, PublicKey: string(ssh.MarshalAuthorizedKey(sp))})
	if err != nil {
		t.Fatalf("signing for %s: %v", name, err)
	}
	dir := t.TempDir()
	blk, _ := ssh.MarshalPrivateKey(priv, "")
	u := user{name: name, key: filepath.Join(dir, "id"), cert: filepath.Join(dir, "id-cert.pub"),
		config: filepath.Join(dir, "ssh_config"), knownHosts: filepath.Join(dir, "known_hosts")}
	write(t, u.key, pem.EncodeToMemory(blk))
	write(t, u.cert, []byte(cert.Certificate+"\n"))
	write(t, u.knownHosts, []byte("@cert-authority * "+c.hostCA+"\n"))
	host, port, _ := net.SplitHostPort(c.proxyAddr)
	write(t, u.config, []byte(fmt.Sprintf(`Host proxy
  HostName %s
  Port %s
  User %s
Host node*
  ProxyJump proxy
Host *
  IdentityFile %s
  CertificateFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 10
  LogLevel INFO
`, host, port, name, u.key, u.cert, u.knownHosts)))
	return u
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// run runs an OpenSSH client program with the user's config.
func (u user) run(t *testing.T, stdin io.Reader, prog string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(prog, append([]string{"-F", u.config}, args...)...)
	cmd.Env = append(testbin.Environ(), "SSH_AUTH_SOCK=")
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", prog, err)
	}
	return string(out), code
}

func eventually(t *testing.T, d time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !f() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// waitTunnel waits until the proxy routes to the node (a login works).
func waitTunnel(t *testing.T, u user, login string, n *testNode, within time.Duration) time.Duration {
	t.Helper()
	return eventually(t, within, "a login to "+n.name+" through its tunnel", func() bool {
		out, code := u.run(t, nil, "ssh", login+"@"+n.name, "true")
		_ = out
		return code == 0
	})
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// TestProxyRecordingMode runs the default recording mode end to end with
// stock OpenSSH: two nodes reachable only through their tunnels, ssh -J
// and the single-hop form, PTY sessions recorded and played back with
// asciinema, scp and sftp of 20 MiB, port and agent forwarding per role,
// revocation of a user mid-session, and a proxy restart.
func TestProxyRecordingMode(t *testing.T) {
	metricsAddr := map[string]string{"ca": testbin.FreePort(t), "proxy": testbin.FreePort(t), "node": testbin.FreePort(t)}
	c := newCluster(t, "--metrics-listen", metricsAddr["ca"])
	c.caadm("roles", "add", "prod-root", "--logins", "root", "--labels", "env=prod", "--port-forwarding")
	c.caadm("roles", "add", "staging-root", "--logins", "root", "--labels", "env=staging", "--agent-forwarding")
	for _, name := range []string{"alice", "bob"} {
		if _, err := c.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: name, Roles: []string{"prod-root", "staging-root"}, Password: "correct horse battery"}); err != nil {
			t.Fatal(err)
		}
	}
	c.startProxy("--metrics-listen", metricsAddr["proxy"])
	prod := c.startNodeWith("node1", map[string]string{"env": "prod"}, nil, []string{"--metrics-listen", metricsAddr["node"]})
	staging := c.startNode("node2", map[string]string{"env": "staging"})
	alice := c.user("alice")
	took := waitTunnel(t, alice, "root", prod, 20*time.Second)
	t.Logf("node1 reachable through its tunnel after %v", took)
	waitTunnel(t, alice, "root", staging, 10*time.Second)

	t.Run("exec and exit code through ssh -J", func(t *testing.T) {
		out, code := alice.run(t, nil, "ssh", "root@node1", "echo hello from $(hostname -s >/dev/null; echo node); echo to-stderr >&2; exit 7")
		if code != 7 || !strings.Contains(out, "hello from node") || !strings.Contains(out, "to-stderr") {
			t.Fatalf("exit %d, output:\n%s", code, out)
		}
	})

	t.Run("refusals with a message", func(t *testing.T) {
		out, code := alice.run(t, nil, "ssh", "postgres@node1", "true")
		if code == 0 || !strings.Contains(out, `your certificate does not carry login "postgres"`) {
			t.Fatalf("login postgres: exit %d\n%s", code, out)
		}
		out, code = alice.run(t, nil, "ssh", "root@node9", "true")
		if code == 0 || !strings.Contains(out, `no node "node9" is registered`) || !strings.Contains(out, "node1") {
			t.Fatalf("unknown node: exit %d\n%s", code, out)
		}
		// The node itself refuses the user's own certificate: in mode
		// proxy it trusts only the session CA.
		cmd := exec.Command("ssh", "-F", "/dev/null", "-i", alice.key, "-o", "CertificateFile="+alice.cert,
			"-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile="+alice.knownHosts, "-o", "GlobalKnownHostsFile=/dev/null",
			"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p", prod.sshd.Port, "root@127.0.0.1", "true")
		cmd.Env = append(testbin.Environ(), "SSH_AUTH_SOCK=")
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Fatalf("the user certificate logged in to the node directly:\n%s", out)
		}
	})

	t.Run("PTY session recorded and played with asciinema", func(t *testing.T) {
		out, code := alice.run(t, strings.NewReader("echo marker-$((6*7))\nexit\n"), "ssh", "-tt", "root@node1")
		if code != 0 || !strings.Contains(out, "marker-42") {
			t.Fatalf("pty session: exit %d\n%s", code, out)
		}
		var rec api.Recording
		eventually(t, 10*time.Second, "the recording at the CA", func() bool {
			var list []api.Recording
			if err := json.Unmarshal([]byte(c.caadm("recordings", "ls", "--json")), &list); err != nil {
				t.Fatal(err)
			}
			for _, r := range list {
				if r.Node == "node1" && r.User == "alice" && r.Login == "root" {
					rec = r
					return true
				}
			}
			return false
		})
		cast := filepath.Join(t.TempDir(), "s.cast")
		write(t, cast, []byte(c.caadm("recordings", "export", rec.ID)))
		// asciinema reads /dev/tty: give it a terminal with script(1).
		played, err := exec.Command("script", "-qec", "asciinema cat "+cast, "/dev/null").CombinedOutput()
		if err != nil {
			if _, lerr := exec.LookPath("asciinema"); lerr != nil {
				t.Skip("asciinema not installed; .ci/run installs it")
			}
			t.Fatalf("asciinema cat: %v\n%s", err, played)
		}
		if !strings.Contains(string(played), "marker-42") {
			t.Fatalf("the recording does not hold the session's output:\n%s", played)
		}
		play := exec.Command("script", "-qec", "asciinema play -s 50 -i 0.1 "+cast, "/dev/null")
		if out, err := play.CombinedOutput(); err != nil || !strings.Contains(string(out), "marker-42") {
			t.Fatalf("asciinema play: %v\n%s", err, out)
		}
		caadmPlay := exec.Command("script", "-qec", c.bins["caadm"]+" --socket "+c.ca.AdminSocket+" recordings play "+rec.ID, "/dev/null")
		if out, err := caadmPlay.CombinedOutput(); err != nil || !strings.Contains(string(out), "marker-42") {
			t.Fatalf("caadm recordings play: %v\n%s", err, out)
		}
		head, _, _ := strings.Cut(c.caadm("recordings", "export", rec.ID), "\n")
		for _, want := range []string{`"user":"alice"`, `"login":"root"`, `"node":"node1"`, `"session_id":`, `"client_addr":`} {
			if !strings.Contains(head, want) {
				t.Errorf("asciicast header lacks %s: %s", want, head)
			}
		}
	})

	t.Run("scp and sftp of 20 MiB", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "src")
		data := make([]byte, 20<<20)
		_, _ = rand.Read(data)
		write(t, src, data)
		want := sha256File(t, src)
		remote := filepath.Join(t.TempDir(), "up")
		if out, code := alice.run(t, nil, "scp", "-q", src, "root@node1:"+remote); code != 0 {
			t.Fatalf("scp (sftp mode) up: exit %d\n%s", code, out)
		}
		if got := sha256File(t, remote); got != want {
			t.Fatal("scp upload corrupted the file")
		}
		back := filepath.Join(dir, "back")
		if out, code := alice.run(t, nil, "scp", "-q", "-O", "root@node1:"+remote, back); code != 0 {
			t.Fatalf("scp -O (legacy) down: exit %d\n%s", code, out)
		}
		if got := sha256File(t, back); got != want {
			t.Fatal("scp -O download corrupted the file")
		}
		remote2 := filepath.Join(t.TempDir(), "up2")
		batch := fmt.Sprintf("put %s %s\nget %s %s\n", src, remote2, remote2, back+"2")
		if out, code := alice.run(t, strings.NewReader(batch), "sftp", "-q", "-b", "-", "root@node1"); code != 0 {
			t.Fatalf("sftp: exit %d\n%s", code, out)
		}
		if sha256File(t, remote2) != want || sha256File(t, back+"2") != want {
			t.Fatal("sftp corrupted the file")
		}
		// Single hop: the login and target travel in the user name.
		_, port, _ := net.SplitHostPort(c.proxyAddr)
		remote3 := filepath.Join(t.TempDir(), "up3")
		if out, code := alice.run(t, nil, "scp", "-q", "-P", port, src, "root@node1@127.0.0.1:"+remote3); code != 0 {
			t.Fatalf("single-hop scp: exit %d\n%s", code, out)
		}
		if sha256File(t, remote3) != want {
			t.Fatal("single-hop scp corrupted the file")
		}
		back3 := filepath.Join(dir, "back3")
		if out, code := alice.run(t, strings.NewReader("get "+remote3+" "+back3+"\n"), "sftp", "-q", "-P", port, "-b", "-", "root@node1@127.0.0.1"); code != 0 {
			t.Fatalf("single-hop sftp: exit %d\n%s", code, out)
		}
		if sha256File(t, back3) != want {
			t.Fatal("single-hop sftp corrupted the file")
		}
	})

	t.Run("single hop", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(c.proxyAddr)
		out, code := alice.run(t, nil, "ssh", "-p", port, "root@node2@127.0.0.1", "echo single; exit 3")
		if code != 3 || !strings.Contains(out, "single") {
			t.Fatalf("single hop: exit %d\n%s", code, out)
		}
	})

	t.Run("port forwarding only where the role permits it", func(t *testing.T) {
		echo := echoServer(t)
		_, local, _ := net.SplitHostPort(testbin.FreePort(t))
		fwd := exec.Command("ssh", "-F", alice.config, "-o", "ExitOnForwardFailure=yes", "-L", local+":"+echo, "root@node1", "sleep 20")
		fwd.Env = append(testbin.Environ(), "SSH_AUTH_SOCK=")
		var fwdOut bytes.Buffer
		fwd.Stdout, fwd.Stderr = &fwdOut, &fwdOut
		if err := fwd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = fwd.Process.Kill(); _ = fwd.Wait() }()
		eventually(t, 10*time.Second, "-L forward echoes", func() bool {
			conn, err := net.DialTimeout("tcp", "127.0.0.1:"+local, time.Second)
			if err != nil {
				return false
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := conn.Write([]byte("ping\n")); err != nil {
				return false
			}
			b := make([]byte, 5)
			_, err = io.ReadFull(conn, b)
			return err == nil && string(b) == "ping\n"
		})
		// staging-root does not permit port forwarding.
		out, code := alice.run(t, nil, "ssh", "-o", "ExitOnForwardFailure=yes", "-W", echo, "root@node2")
		if code == 0 {
			t.Fatalf("-W to node2 allowed without the role's permission:\n%s", out)
		}
	})

	t.Run("agent forwarding only where the role permits it", func(t *testing.T) {
		agent := testbin.StartAgent(t)
		add := agent.Command("ssh-add", alice.key)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add: %v\n%s", err, out)
		}
		run := func(node string) (string, int) {
			cmd := exec.Command("ssh", "-F", alice.config, "-A", "root@"+node, "ssh-add -l")
			cmd.Env = agent.Env()
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); ok {
				return string(out), ee.ExitCode()
			}
			return string(out), 0
		}
		if out, code := run("node2"); code != 0 || !strings.Contains(out, "ED25519") {
			t.Fatalf("agent on node2 (staging-root permits it): exit %d\n%s", code, out)
		}
		if out, code := run("node1"); code == 0 {
			t.Fatalf("agent on node1 (prod-root does not permit it) listed keys:\n%s", out)
		}
	})

	t.Run("sessions visible while they run", func(t *testing.T) {
		long := exec.Command("ssh", "-F", alice.config, "root@node1", "sleep 30")
		long.Env = append(testbin.Environ(), "SSH_AUTH_SOCK=")
		if err := long.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = long.Process.Kill(); _ = long.Wait() }()
		eventually(t, 10*time.Second, "the session in caadm sessions ls", func() bool {
			var list []api.Session
			_ = json.Unmarshal([]byte(c.caadm("sessions", "ls", "--json")), &list)
			for _, s := range list {
				if s.User == "alice" && s.Node == "node1" && strings.Contains(strings.Join(s.Channels, ";"), "sleep 30") {
					return true
				}
			}
			return false
		})
		out, code := alice.run(t, nil, "ssh", "proxy", "sessions")
		if code != 0 || !strings.Contains(out, "node1") || !strings.Contains(out, "sleep 30") {
			t.Fatalf("sessions through the proxy: exit %d\n%s", code, out)
		}
	})

	t.Run("Prometheus metrics of the CA, proxy and node", func(t *testing.T) {
		checkMetrics(t, metricsAddr)
	})

	t.Run("removed user cut off at the proxy", func(t *testing.T) {
		bob := c.user("bob")
		long := exec.Command("ssh", "-F", bob.config, "root@node1", "sleep 60")
		long.Env = append(testbin.Environ(), "SSH_AUTH_SOCK=")
		done := make(chan error, 1)
		if err := long.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- long.Wait() }()
		eventually(t, 10*time.Second, "bob's session running", func() bool {
			return strings.Contains(c.caadm("sessions", "ls"), "bob")
		})
		c.caadm("users", "rm", "bob")
		start := time.Now()
		select {
		case <-done:
			t.Logf("bob's session ended %v after the removal", time.Since(start))
		case <-time.After(5 * time.Second):
			t.Fatal("bob's session still runs 5 s after his removal")
		}
		if out, code := bob.run(t, nil, "ssh", "root@node1", "true"); code == 0 {
			t.Fatalf("removed bob logged in again:\n%s", out)
		}
	})

	t.Run("node without a tunnel, reached at its registered address", func(t *testing.T) {
		// teleport-node join --ssh-addr registers where proxies may dial
		// the sshd; here a forwarder stands in front of it, since the
		// sshd's port is only known once the node has joined.
		fwd, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer fwd.Close()
		var target atomic.Value
		go func() {
			for {
				in, err := fwd.Accept()
				if err != nil {
					return
				}
				go func() {
					defer in.Close()
					addr, _ := target.Load().(string)
					out, err := net.Dial("tcp", addr)
					if err != nil {
						return
					}
					defer out.Close()
					go func() { _, _ = io.Copy(out, in); out.Close() }()
					_, _ = io.Copy(in, out)
				}()
			}
		}()
		direct := c.startNodeWith("node3", map[string]string{"env": "prod"}, []string{"--ssh-addr", fwd.Addr().String()}, []string{"--no-tunnels"})
		target.Store(direct.sshd.Addr)
		waitTunnel(t, alice, "root", direct, 10*time.Second)
		out, code := alice.run(t, nil, "ssh", "root@node3", "echo direct-$((5*5))")
		if code != 0 || !strings.Contains(out, "direct-25") {
			t.Fatalf("node3 at its registered address: exit %d\n%s", code, out)
		}
	})

	t.Run("a node cannot hold a tunnel under another node's name", func(t *testing.T) {
		signer := func() (ssh.Signer, error) { // node2's own key and certificate
			key, err := os.ReadFile(filepath.Join(staging.dir, "host_key"))
			if err != nil {
				return nil, err
			}
			s, err := ssh.ParsePrivateKey(key)
			if err != nil {
				return nil, err
			}
			text, _ := os.ReadFile(filepath.Join(staging.dir, "host_key-cert.pub"))
			pub, _, _, _, err := ssh.ParseAuthorizedKey(text)
			if err != nil {
				return nil, err
			}
			return ssh.NewCertSigner(pub.(*ssh.Certificate), s)
		}
		hostCA, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(c.hostCA))
		states := make(chan error, 10)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		impostor := &tunnel.Client{
			Node: "node1", ProxyAddr: c.tunAddr, Signer: signer, Target: prod.sshd.Addr,
			HostCAs: func() []ssh.PublicKey { return []ssh.PublicKey{hostCA} },
			OnState: func(up bool, err error) {
				if up {
					err = errors.New("connected")
				}
				select {
				case states <- err:
				default:
				}
			},
		}
		go func() { _ = impostor.Run(ctx) }()
		select {
		case err := <-states:
			if err == nil || err.Error() == "connected" || !errors.Is(err, tunnel.ErrNodeRefused) {
				t.Fatalf("node2's certificate as node1: %v", err)
			}
		case <-ctx.Done():
			t.Fatal("no answer from the proxy")
		}
		cancel()
		// node1's own tunnel still carries node1's sessions.
		if out, code := alice.run(t, nil, "ssh", "root@node1", "true"); code != 0 {
			t.Fatalf("node1 after the impostor: exit %d\n%s", code, out)
		}
	})

	// restartedTunnel bounds the wait for a tunnel after the later proxy
	// restarts: the nodes' backoff grows with each tunnel that lived less
	// than a minute (several restarts in a row here), so their retry may
	// come later than after a first loss, whose 10 s bound "proxy restart"
	// checks.
	const restartedTunnel = 40 * time.Second

	t.Run("proxy restart: tunnels return", func(t *testing.T) {
		c.stopProxy(syscall.SIGKILL)
		c.startProxy()
		up := time.Now()
		waitTunnel(t, alice, "root", prod, 10*time.Second)
		waitTunnel(t, alice, "root", staging, 10*time.Second)
		t.Logf("both tunnels back %v after the proxy was up again", time.Since(up))
	})

	// recordingWith waits until the CA holds a recording of alice that
	// contains marker.
	recordingWith := func(t *testing.T, marker string, within time.Duration) {
		t.Helper()
		eventually(t, within, "a recording holding "+marker+" at the CA", func() bool {
			var list []api.Recording
			out, err := exec.Command(c.bins["caadm"], "--socket", c.ca.AdminSocket, "recordings", "ls", "--json").Output()
			if err != nil || json.Unmarshal(out, &list) != nil {
				return false
			}
			for _, r := range list {
				cast, err := exec.Command(c.bins["caadm"], "--socket", c.ca.AdminSocket, "recordings", "export", r.ID).Output()
				if err == nil && strings.Contains(string(cast), marker) {
					return true
				}
			}
			return false
		})
	}
	// interactive starts a PTY session fed through a pipe.
	interactive := func(t *testing.T) (io.WriteCloser, *exec.Cmd, *testbin.Buffer) {
		t.Helper()
		cmd := exec.Command("ssh", "-F", alice.config, "-tt", "root@node1")
		cmd.Env = append(testbin.Environ(), "SSH_AUTH_SOCK=")
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out := new(testbin.Buffer)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return in, cmd, out
	}

	t.Run("CA down: the session goes on, its recording waits for the CA", func(t *testing.T) {
		in, cmd, out := interactive(t)
		fmt.Fprintf(in, "echo before-$((1+1))\n")
		time.Sleep(time.Second)
		dataDir, listen, sock := c.ca.DataDir, c.ca.Listen, c.ca.AdminSocket
		c.ca.Stop()
		fmt.Fprintf(in, "echo after-$((2+2))\nexit\n")
		in.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("the session failed while the CA was down: %v\n%s", err, out)
		}
		if !strings.Contains(out.String(), "after-4") {
			t.Fatalf("session output:\n%s", out)
		}
		time.Sleep(2 * time.Second) // the spool tries and fails at least once
		if left, _ := filepath.Glob(filepath.Join(c.proxyDir, "recordings", "*.cast")); len(left) == 0 {
			t.Fatal("no recording waits in the proxy's spool while the CA is down")
		}
		// New sessions too: the proxy signs their session certificates
		// with its registered session signer, which the nodes trust.
		for _, n := range []string{"node1", "node2"} {
			out, code := alice.run(t, nil, "ssh", "root@"+n, "echo new-while-ca-down-$((3*3))")
			if code != 0 || !strings.Contains(out, "new-while-ca-down-9") {
				t.Fatalf("a new session to %s while the CA is down: exit %d\n%s", n, code, out)
			}
		}
		// The policy still decides: a login no role gives is refused.
		if out, code := alice.run(t, nil, "ssh", "postgres@node1", "true"); code == 0 {
			t.Fatalf("login postgres while the CA is down was not refused:\n%s", out)
		}
		// A proxy restarted (kill -9) while the CA is down keeps going on
		// what it saved: identity, policy and its confirmation time, the
		// nodes' host certificates, its session signer.
		c.stopProxy(syscall.SIGKILL)
		c.startProxy()
		waitTunnel(t, alice, "root", prod, restartedTunnel)
		if out, code := alice.run(t, nil, "ssh", "root@node1", "echo after-restart-$((4*4))"); code != 0 || !strings.Contains(out, "after-restart-16") {
			t.Fatalf("a new session after a proxy restart while the CA is down: exit %d\n%s", code, out)
		}
		c.ca = testbin.Start(c.t, testbin.Config{DataDir: dataDir, Listen: listen, AdminSocket: sock}) // lives as long as the cluster
		recordingWith(t, "after-4", 70*time.Second)
		eventually(t, 30*time.Second, "the proxy's session.cert events at the CA", func() bool {
			return strings.Count(c.caadm("audit", "ls", "--type", "session.cert"), "signer=proxy") >= 3
		})
	})

	t.Run("proxy killed mid-session: the recording so far reaches the CA", func(t *testing.T) {
		in, _, out := interactive(t)
		fmt.Fprintf(in, "echo crash-$((3+4))\n")
		eventually(t, 10*time.Second, "the marker echoed", func() bool { return strings.Contains(out.String(), "crash-7") })
		time.Sleep(1500 * time.Millisecond) // the recorder flushes every second
		c.stopProxy(syscall.SIGKILL)
		in.Close()
		c.startProxy()
		recordingWith(t, "crash-7", 20*time.Second)
		waitTunnel(t, alice, "root", prod, restartedTunnel)
	})

	t.Run("recording disk full", func(t *testing.T) {
		recDir := filepath.Join(c.proxyDir, "recordings")
		c.stopProxy(syscall.SIGTERM)
		if err := syscall.Mount("tmpfs", recDir, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
			c.startProxy()
			t.Skipf("cannot mount a small tmpfs to fill (%v)", err)
		}
		defer func() {
			c.stopProxy(syscall.SIGTERM)
			if err := syscall.Unmount(recDir, 0); err != nil {
				t.Errorf("unmounting the test tmpfs: %v", err)
			}
			c.startProxy()
		}()
		// Refuse (the default): a session whose recording fails ends, and
		// no new recorded session starts while the disk is full.
		c.startProxy("--min-recording-free", "1")
		waitTunnel(t, alice, "root", prod, restartedTunnel)
		script := "head -c 300000 /dev/zero | tr '\\0' x; echo; sleep 20; echo surv$((1))ived\nexit\n"
		start := time.Now()
		out, code := alice.run(t, strings.NewReader(script), "ssh", "-tt", "root@node1")
		if code == 0 || strings.Contains(out, "surv1ived") || time.Since(start) > 15*time.Second {
			t.Fatalf("a session whose recording failed went on: exit %d after %v\n%.300s", code, time.Since(start), out)
		}
		// Fill the disk (once the failed recording, cut after its last
		// whole event, has been uploaded and removed): a new recorded
		// session is refused.
		eventually(t, 10*time.Second, "the cut recording uploaded", func() bool {
			left, _ := filepath.Glob(filepath.Join(recDir, "*.cast*"))
			return len(left) == 0
		})
		filler, err := os.Create(filepath.Join(recDir, "filler"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = filler.Write(make([]byte, 1<<20))
		filler.Close()
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("filling the tmpfs: %v", err)
		}
		out, code = alice.run(t, strings.NewReader("exit\n"), "ssh", "-tt", "root@node1")
		if code == 0 || !strings.Contains(out, "cannot record sessions") {
			t.Fatalf("a recorded session started on a full disk: exit %d\n%s", code, out)
		}
		eventually(t, 10*time.Second, "recording.failed and recording.unavailable audited", func() bool {
			a := c.caadm("audit", "ls", "--type", "recording.failed")
			b := c.caadm("audit", "ls", "--type", "recording.unavailable")
			return strings.Contains(a, "alice") && strings.Contains(b, "alice")
		})
		// Continue: the session runs unrecorded, with an audit event.
		c.stopProxy(syscall.SIGTERM)
		c.startProxy("--min-recording-free", "1", "--on-recording-failure", "continue")
		waitTunnel(t, alice, "root", prod, restartedTunnel)
		out, code = alice.run(t, strings.NewReader("echo still-$((2+3))\nexit\n"), "ssh", "-tt", "root@node1")
		if code != 0 || !strings.Contains(out, "still-5") {
			t.Fatalf("on-recording-failure continue: exit %d\n%s", code, out)
		}
	})

	t.Run("audit", func(t *testing.T) {
		out := c.caadm("audit", "ls", "--type", "session.exec")
		if !strings.Contains(out, "alice") {
			t.Fatalf("no session.exec events:\n%s", out)
		}
		out = c.caadm("audit", "ls", "--type", "session.transfer")
		if !strings.Contains(out, "scp") || !strings.Contains(out, "sftp") {
			t.Fatalf("transfers not audited:\n%s", out)
		}
	})
}

// TestProxyModeOff: in recording mode off the proxy relays ssh -J's
// stream to the node unopened; the node checks the user's certificate.
func TestProxyModeOff(t *testing.T) {
	c := newCluster(t, "--recording-mode", "off")
	c.caadm("roles", "add", "prod-root", "--logins", "root", "--labels", "env=prod")
	if _, err := c.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: "alice", Roles: []string{"prod-root"}, Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	c.caadm("roles", "add", "everywhere", "--logins", "root", "--labels", "*=*")
	if _, err := c.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: "ops", Roles: []string{"everywhere"}, Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	c.startProxy("--dns-fallback")
	prod := c.startNode("node1", map[string]string{"env": "prod"})
	c.startNode("node2", map[string]string{"env": "staging"})
	alice := c.user("alice")
	waitTunnel(t, alice, "root", prod, 20*time.Second)
	out, code := alice.run(t, nil, "ssh", "root@node1", "echo passed; exit 4")
	if code != 4 || !strings.Contains(out, "passed") {
		t.Fatalf("mode off: exit %d\n%s", code, out)
	}
	if out, code := alice.run(t, nil, "ssh", "root@node2", "true"); code == 0 || !strings.Contains(out, "no role of yours gives a login") {
		t.Fatalf("node2 without a role: exit %d\n%s", code, out)
	}
	eventually(t, 10*time.Second, "a session.end event with byte counts", func() bool {
		return strings.Contains(c.caadm("audit", "ls", "--type", "session.end", "--json"), "bytes_out")
	})

	// DNS fallback: an sshd that never joined, reached by name, only by a
	// user whose role selects every node.
	_, hostKey, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, _ := ssh.NewSignerFromKey(hostKey)
	hostCert, err := c.ca.Admin().Sign(context.Background(), api.AdminSignRequest{Host: true, Name: "localhost", PublicKey: string(ssh.MarshalAuthorizedKey(hostSigner.PublicKey()))})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := c.ca.Admin().AdminCA(context.Background())
	blk, _ := ssh.MarshalPrivateKey(hostKey, "")
	plain := testbin.StartSSHD(t, testbin.SSHDConfig{HostKey: pem.EncodeToMemory(blk), HostCertificate: []byte(hostCert.Certificate + "\n"), TrustedUserCAKeys: []byte(info.UserCA + "\n")})
	ops := c.user("ops")
	out, code = ops.run(t, nil, "ssh", "-o", "ProxyJump=proxy", "-p", plain.Port, "root@localhost", "echo by-dns")
	if code != 0 || !strings.Contains(out, "by-dns") {
		t.Fatalf("DNS fallback for a *=* role: exit %d\n%s\nsshd:\n%s", code, out, plain.Stderr)
	}
	out, code = alice.run(t, nil, "ssh", "-o", "ProxyJump=proxy", "-p", plain.Port, "root@localhost", "true")
	if code == 0 || !strings.Contains(out, "no role of yours gives a login") {
		t.Fatalf("DNS fallback without a *=* role: exit %d\n%s", code, out)
	}
}

// echoServer echoes lines on a loopback port and returns its address.
func echoServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return l.Addr().String()
}
