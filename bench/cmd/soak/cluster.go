package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opensshca/suite/bench/proxybench"
	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
)

// Names and labels of the cluster.
const (
	proxyName  = "proxy1"
	nodeLabel  = "soak" // env=soak: the nodes the session users reach
	login      = "root"
	stockRC    = "/usr/share/base-files/dot.bashrc"
	readyWithn = 30 * time.Second
)

// sshdLimits are the lines the soak adds to each node's sshd_config.
//
// MaxStartups (sshd_config(5)) caps connections that have not finished
// authenticating; its default, 10:30:100, starts dropping 30 % of new
// connections once 10 are in flight. The proxy logs in to the node for
// every user session, and during the ramp, with two cores shared by a
// thousand processes, a login to sshd (fork, re-exec, key exchange,
// teleport-authkeys) can take seconds, so more than 10 can be in flight
// on one node: a dropped connection would be a failed session that says
// nothing about the suite. 500 is above what the ramp can have in flight.
// MaxSessions (default 10) caps channels per connection; each of the
// proxy's logins carries one session, so it stays at its default.
var sshdLimits = []string{"MaxStartups 500"}

// cluster is a teleport-ca, one teleport-proxy and the nodes, all on
// loopback ports, with their scratch directories.
type cluster struct {
	bins   proxybench.Binaries
	dir    string // scratch root (0755: nobody reads the nodes' caches)
	runDir string // root-only directory under /run for teleport-authkeys

	caDir, caListen, caSocket string
	ca                        *proxybench.Proc
	admin                     *client.Client
	info                      api.CAInfo

	proxyDir, proxyAddr, tunAddr string
	proxy                        *proxybench.Proc

	nodes []*node
}

// node is one joined node: a real sshd with teleport-node's drop-in, and
// "teleport-node run" holding its reverse tunnel to the proxy.
type node struct {
	name, dir, sshdAddr string
	sshd, agent         *proxybench.Proc
}

func newCluster(bins proxybench.Binaries, scratch string) (*cluster, error) {
	dir, err := os.MkdirTemp(scratch, "soak-")
	if err != nil {
		return nil, fmt.Errorf("soak: %w", err)
	}
	c := &cluster{bins: bins, dir: dir,
		caDir: filepath.Join(dir, "ca"), caSocket: filepath.Join(dir, "admin.sock"),
		proxyDir: filepath.Join(dir, "proxy"),
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		c.close()
		return nil, fmt.Errorf("soak: %w", err)
	}
	if c.runDir, err = os.MkdirTemp("/run", "soak-"); err == nil {
		err = os.Chmod(c.runDir, 0o755)
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("soak: %w", err)
	}
	return c, nil
}

// close stops every process and removes the scratch directories.
func (c *cluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(func() { n.agent.Stop(); n.sshd.Stop() })
	}
	wg.Wait()
	c.proxy.Stop()
	c.ca.Stop()
	if c.runDir != "" {
		os.RemoveAll(c.runDir)
	}
	os.RemoveAll(c.dir)
}

// start brings the cluster up: CA, proxy, n nodes with their tunnels.
func (c *cluster) start(ctx context.Context, nodes int, logf func(string, ...any)) error {
	addrs, err := proxybench.FreePorts(3 + nodes)
	if err != nil {
		return err
	}
	c.caListen, c.proxyAddr, c.tunAddr = addrs[0], addrs[1], addrs[2]
	if err := c.startCA(ctx); err != nil {
		return err
	}
	logf("teleport-ca up on %s (pid %d)", c.caListen, c.ca.Pid())
	if err := c.startProxy(ctx); err != nil {
		return err
	}
	logf("teleport-proxy up on %s, tunnels on %s (pid %d)", c.proxyAddr, c.tunAddr, c.proxy.Pid())
	authkeys := filepath.Join(c.runDir, "teleport-authkeys")
	if err := proxybench.CopyExecutable(c.bins.Authkeys, authkeys); err != nil {
		return err
	}
	for i := range nodes {
		n := &node{name: fmt.Sprintf("node%d", i+1), dir: filepath.Join(c.dir, fmt.Sprintf("node%d", i+1)), sshdAddr: addrs[3+i]}
		c.nodes = append(c.nodes, n)
		if err := c.startNode(ctx, n, authkeys); err != nil {
			return err
		}
		logf("%s up: sshd on %s (pid %d), teleport-node run (pid %d)", n.name, n.sshdAddr, n.sshd.Pid(), n.agent.Pid())
	}
	return nil
}

func (c *cluster) startCA(ctx context.Context) error {
	var err error
	c.ca, err = proxybench.StartProc("teleport-ca", nil, c.bins.CA,
		"--data-dir", c.caDir, "--listen", c.caListen, "--admin-socket", c.caSocket,
		"--argon2-memory", "8192", "--argon2-time", "1", "--argon2-threads", "1",
		"--recording-mode", "proxy", "--log-level", "warn")
	if err != nil {
		return err
	}
	c.admin = client.NewAdmin(c.caSocket)
	return proxybench.WaitFor(ctx, readyWithn, "teleport-ca's admin socket", c.ca, func() error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		info, err := c.admin.AdminCA(cctx)
		if err == nil {
			c.info = info
		}
		return err
	})
}

func (c *cluster) caURL() string { return "https://" + c.caListen }

func (c *cluster) token(ctx context.Context, role string, labels map[string]string) (string, error) {
	resp, err := c.admin.AddToken(ctx, api.AddTokenRequest{Role: role, Labels: labels})
	if err != nil {
		return "", fmt.Errorf("soak: %s token: %w", role, err)
	}
	return resp.Secret, nil
}

func (c *cluster) startProxy(ctx context.Context) error {
	tok, err := c.token(ctx, "proxy", nil)
	if err != nil {
		return err
	}
	c.proxy, err = proxybench.StartProc("teleport-proxy", nil, c.bins.Proxy,
		"--data-dir", c.proxyDir, "--listen", c.proxyAddr, "--tunnel-listen", c.tunAddr,
		"--public-addr", c.proxyAddr, "--log-level", "warn",
		"--server", c.caURL(), "--token", tok, "--ca-pin", c.info.Pin, "--name", proxyName)
	if err != nil {
		return err
	}
	return proxybench.WaitFor(ctx, readyWithn, "teleport-proxy's SSH banner", c.proxy, func() error { return proxybench.SSHBanner(c.proxyAddr) })
}

// startNode joins n, writes its sshd_config with teleport-node's drop-in
// and starts sshd and "teleport-node run".
func (c *cluster) startNode(ctx context.Context, n *node, authkeys string) error {
	tok, err := c.token(ctx, "node", map[string]string{"env": nodeLabel})
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, c.bins.Node, "join", "--server", c.caURL(), "--token", tok, "--ca-pin", c.info.Pin,
		"--data-dir", n.dir, "--name", n.name, "--authkeys-user", "nobody").CombinedOutput()
	if err != nil {
		return fmt.Errorf("soak: teleport-node join %s: %v\n%s", n.name, err, out)
	}
	dropIn, err := exec.CommandContext(ctx, c.bins.Node, "sshd-config", "--data-dir", n.dir, "--authkeys", authkeys).Output()
	if err != nil {
		return fmt.Errorf("soak: teleport-node sshd-config %s: %w", n.name, err)
	}
	sshdDir := n.dir + "-sshd"
	if err := os.Mkdir(sshdDir, 0o700); err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	dropInFile := filepath.Join(sshdDir, "teleport-node.conf")
	if err := os.WriteFile(dropInFile, dropIn, 0o644); err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	lines := []string{
		"ListenAddress " + n.sshdAddr,
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"StrictModes no",
		"UsePAM no",
		"UseDNS no",
		"PrintMotd no",
		"PrintLastLog no",
		"PidFile none",
		"LogLevel INFO",
		"AuthorizedKeysFile none",
	}
	lines = append(append(lines, sshdLimits...), "Include "+dropInFile)
	conf := filepath.Join(sshdDir, "sshd_config")
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fmt.Errorf("soak: %w", err)
	}
	// The sessions' login shells source /root/.bashrc; this machine's
	// may be heavy (pyenv init), a per-session cost that is not the
	// suite's. sshd runs in a private mount namespace where Debian's
	// stock .bashrc hides it; sh execs sshd, so the pid stays sshd's.
	bin, args := "/usr/sbin/sshd", []string{"-D", "-e", "-f", conf}
	if _, err := os.Stat(stockRC); err == nil {
		bin, args = "unshare", append([]string{"-m", "sh", "-c", `mount --bind "$0" /root/.bashrc && exec "$@"`,
			stockRC, "/usr/sbin/sshd"}, args...)
	}
	if n.sshd, err = proxybench.StartProc(n.name+" sshd", nil, bin, args...); err != nil {
		return err
	}
	if err := proxybench.WaitFor(ctx, readyWithn, n.name+" sshd's banner", n.sshd, func() error { return proxybench.SSHBanner(n.sshdAddr) }); err != nil {
		return err
	}
	n.agent, err = proxybench.StartProc(n.name+" teleport-node", nil, c.bins.Node, "run", "--data-dir", n.dir,
		"--reload-command", "", "--nss-dir", "", "--policy-wait", "5s", "--sshd-addr", n.sshdAddr, "--log-level", "warn")
	return err
}
