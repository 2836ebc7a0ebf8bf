package proxybench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
)

// Names the cluster uses.
const (
	nodeName  = "node1"
	userName  = "alice"
	login     = "root"
	proxyName = "proxy1"
	// benchLabel selects the measured node; idle tunnel nodes get
	// another value, so no role reaches them.
	benchLabel = "bench"
)

// readyTimeout bounds each wait for a program to come up.
const readyTimeout = 30 * time.Second

// cluster is what every row runs against: a teleport-ca, a teleport-proxy
// and one node (a real sshd with teleport-node's drop-in, and "teleport-node
// run" holding the node's reverse tunnel to the proxy), plus a stock sshd
// as the OpenSSH jump host. All listen on loopback ports.
type cluster struct {
	bins   Binaries
	dir    string // scratch root, mode 0755 so that nobody reaches the node's cache
	runDir string // root-only directory under /run for teleport-authkeys

	caDir, caListen, caSocket string
	ca                        *proc
	admin                     *client.Client
	pin, hostCA               string

	proxyDir, proxyAddr, tunAddr string
	proxy                        *proc
	proxyBin                     string // teleport-proxy or its profiling twin
	proxyEnv                     []string

	nodeDir, nodeAddr string
	nodeSSHD, agent   *proc
	// nodeBashrc, when set, replaces /root/.bashrc for the node's sshd
	// and its sessions.
	nodeBashrc string

	jumpAddr string
	jump     *proc

	// sshConfig is the ssh_config every client run uses (-F); see
	// writeClient for its host aliases.
	sshConfig string
}

// newCluster makes the scratch directories and picks the ports.
func newCluster(bins Binaries, scratch string) (*cluster, error) {
	dir, err := os.MkdirTemp(scratch, "proxybench-")
	if err != nil {
		return nil, fmt.Errorf("proxybench: %w", err)
	}
	// teleport-authkeys runs as nobody and reads the node's cache below.
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("proxybench: %w", err)
	}
	c := &cluster{
		bins: bins, dir: dir, proxyBin: bins.Proxy,
		caDir:    filepath.Join(dir, "ca"),
		caSocket: filepath.Join(dir, "admin.sock"),
		proxyDir: filepath.Join(dir, "proxy"),
		nodeDir:  filepath.Join(dir, "node"),
	}
	ports := []*string{&c.caListen, &c.proxyAddr, &c.tunAddr, &c.nodeAddr, &c.jumpAddr}
	addrs, err := freePorts(len(ports))
	if err != nil {
		c.close()
		return nil, err
	}
	for i, p := range ports {
		*p = addrs[i]
	}
	if c.runDir, err = rootOnlyDir(); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// close stops every process and removes the scratch directories.
func (c *cluster) close() {
	for _, p := range []*proc{c.jump, c.agent, c.nodeSSHD, c.proxy, c.ca} {
		p.stop()
	}
	if c.runDir != "" {
		os.RemoveAll(c.runDir)
	}
	os.RemoveAll(c.dir)
}

// startCA starts (or restarts, on the same data dir and ports) teleport-ca
// in recording mode mode, and waits until its admin socket answers.
func (c *cluster) startCA(ctx context.Context, mode string) error {
	c.ca.stop()
	var err error
	c.ca, err = startProc("teleport-ca", nil, c.bins.CA,
		"--data-dir", c.caDir, "--listen", c.caListen, "--admin-socket", c.caSocket,
		"--argon2-memory", "8192", "--argon2-time", "1", "--argon2-threads", "1",
		"--recording-mode", mode, "--log-level", "warn")
	if err != nil {
		return err
	}
	c.admin = client.NewAdmin(c.caSocket)
	return waitFor(ctx, readyTimeout, "teleport-ca's admin socket", c.ca, func() error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		info, err := c.admin.AdminCA(cctx)
		if err != nil {
			return err
		}
		if info.RecordingMode != mode {
			return fmt.Errorf("recording mode %q, want %q", info.RecordingMode, mode)
		}
		c.pin, c.hostCA = info.Pin, info.HostCA
		return nil
	})
}

func (c *cluster) caURL() string { return "https://" + c.caListen }

// token makes a join token for role with labels.
func (c *cluster) token(ctx context.Context, role string, labels map[string]string, reusable bool) (string, error) {
	resp, err := c.admin.AddToken(ctx, api.AddTokenRequest{Role: role, Labels: labels, Reusable: reusable})
	if err != nil {
		return "", fmt.Errorf("proxybench: %s token: %w", role, err)
	}
	return resp.Secret, nil
}

// addUser gives alice the login root on the bench node.
func (c *cluster) addUser(ctx context.Context) error {
	if _, err := c.admin.AddRole(ctx, api.Role{Name: "bench-root", Logins: []string{login},
		NodeLabels: map[string][]string{"env": {benchLabel}}}); err != nil {
		return fmt.Errorf("proxybench: adding the role: %w", err)
	}
	if _, err := c.admin.AddUser(ctx, api.AddUserRequest{Name: userName, Roles: []string{"bench-root"},
		Password: "correct horse battery staple"}); err != nil {
		return fmt.Errorf("proxybench: adding the user: %w", err)
	}
	return nil
}

// startProxy starts teleport-proxy, joining the cluster on the first
// start, and waits until it answers SSH.
func (c *cluster) startProxy(ctx context.Context) error {
	args := []string{"--data-dir", c.proxyDir, "--listen", c.proxyAddr, "--tunnel-listen", c.tunAddr,
		"--public-addr", c.proxyAddr, "--log-level", "info"}
	if _, err := os.Stat(filepath.Join(c.proxyDir, "proxy.json")); err != nil {
		tok, err := c.token(ctx, "proxy", nil, false)
		if err != nil {
			return err
		}
		args = append(args, "--server", c.caURL(), "--token", tok, "--ca-pin", c.pin, "--name", proxyName)
	}
	var err error
	if c.proxy, err = startProc("teleport-proxy", c.proxyEnv, c.proxyBin, args...); err != nil {
		return err
	}
	return waitFor(ctx, readyTimeout, "teleport-proxy's SSH banner", c.proxy, func() error { return sshBanner(c.proxyAddr) })
}

// stopProxy stops teleport-proxy with SIGTERM, as systemd would.
func (c *cluster) stopProxy() { c.proxy.stop() }

// sshdBase is the sshd_config both test sshds share: public keys only, no
// PAM, no DNS, the files in a temporary directory.
func sshdBase(addr string) []string {
	return []string{
		"ListenAddress " + addr,
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"StrictModes no",
		"UsePAM no",
		"UseDNS no",
		"PidFile none",
		"LogLevel INFO",
		"Subsystem sftp internal-sftp",
	}
}

// startSSHD writes lines as dir/sshd_config and runs "sshd -D -e" on it
// (by absolute path: sshd re-executes itself), waiting for its banner.
// With bashrc, sshd runs in a private mount namespace where that file is
// bind-mounted over /root/.bashrc (see Options.MachineBashrc).
func startSSHD(ctx context.Context, name, dir, addr string, lines []string, bashrc string) (*proc, error) {
	conf := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("proxybench: %w", err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("proxybench: %w", err)
	}
	bin, args := "/usr/sbin/sshd", []string{"-D", "-e", "-f", conf}
	if bashrc != "" {
		// unshare -m makes mounts private; sh execs sshd, so the pid
		// stays sshd's.
		bin, args = "unshare", append([]string{"-m", "sh", "-c", `mount --bind "$0" /root/.bashrc && exec "$@"`,
			bashrc, "/usr/sbin/sshd"}, args...)
	}
	p, err := startProc(name, nil, bin, args...)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, readyTimeout, name+"'s banner", p, func() error { return sshBanner(addr) }); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// startNode joins node1 with teleport-node, starts its sshd with the
// generated drop-in and "teleport-node run", which holds the tunnel.
func (c *cluster) startNode(ctx context.Context) error {
	authkeys := filepath.Join(c.runDir, "teleport-authkeys")
	if err := copyExecutable(c.bins.Authkeys, authkeys); err != nil {
		return err
	}
	tok, err := c.token(ctx, "node", map[string]string{"env": benchLabel}, false)
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, c.bins.Node, "join", "--server", c.caURL(), "--token", tok, "--ca-pin", c.pin,
		"--data-dir", c.nodeDir, "--name", nodeName, "--authkeys-user", "nobody").CombinedOutput()
	if err != nil {
		return fmt.Errorf("proxybench: teleport-node join: %v\n%s", err, out)
	}
	dropIn, err := exec.CommandContext(ctx, c.bins.Node, "sshd-config", "--data-dir", c.nodeDir, "--authkeys", authkeys).Output()
	if err != nil {
		return fmt.Errorf("proxybench: teleport-node sshd-config: %w", err)
	}
	sshdDir := filepath.Join(c.dir, "node-sshd")
	if err := os.Mkdir(sshdDir, 0o700); err != nil {
		return fmt.Errorf("proxybench: %w", err)
	}
	dropInFile := filepath.Join(sshdDir, "teleport-node.conf")
	if err := os.WriteFile(dropInFile, dropIn, 0o644); err != nil {
		return fmt.Errorf("proxybench: %w", err)
	}
	lines := append(sshdBase(c.nodeAddr), "AuthorizedKeysFile none", "Include "+dropInFile)
	if c.nodeSSHD, err = startSSHD(ctx, "node sshd", sshdDir, c.nodeAddr, lines, c.nodeBashrc); err != nil {
		return err
	}
	c.agent, err = startProc("teleport-node run", nil, c.bins.Node, "run", "--data-dir", c.nodeDir,
		"--reload-command", "", "--nss-dir", "", "--policy-wait", "5s", "--sshd-addr", c.nodeAddr, "--log-level", "info")
	return err
}

// startJump starts the stock OpenSSH jump host: an sshd that lets root
// in with a plain key and forwards TCP (ssh -J uses direct-tcpip).
func (c *cluster) startJump(ctx context.Context, hostKey []byte, authorized ssh.PublicKey) error {
	dir := filepath.Join(c.dir, "jump-sshd")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("proxybench: %w", err)
	}
	keyFile, akFile := filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(keyFile, hostKey, 0o600); err != nil {
		return fmt.Errorf("proxybench: %w", err)
	}
	if err := os.WriteFile(akFile, ssh.MarshalAuthorizedKey(authorized), 0o600); err != nil {
		return fmt.Errorf("proxybench: %w", err)
	}
	lines := append(sshdBase(c.jumpAddr), "HostKey "+keyFile, "AuthorizedKeysFile "+akFile, "AllowTcpForwarding yes")
	var err error
	c.jump, err = startSSHD(ctx, "jump sshd", dir, c.jumpAddr, lines, "")
	return err
}

// Host aliases of the client's ssh_config, one per way to reach the node.
const (
	hostDirect = "direct" // the node's sshd, straight
	hostStock  = "stock"  // the node's sshd through the stock jump host
	// The same with curve25519-sha256 as the only key exchange, the one
	// OpenSSH 9.2 and x/crypto agree on (x/crypto has no sntrup761).
	hostDirectC = "direct-c25519"
	hostStockC  = "stock-c25519"
	hostJumpC   = "jump-c25519"
	hostProxyJ  = nodeName // ssh -J through teleport-proxy
	hostSingle  = "single" // "ssh -p PORT root@node1@proxy"
	hostJump    = "jump"   // the stock jump host itself
	hostTProxy  = "tproxy" // teleport-proxy itself (the -J hop)
)

// writeClient makes alice's key, has the CA certify it, starts the stock
// jump host for a second (plain) key, and writes the ssh_config.
func (c *cluster) writeClient(ctx context.Context) error {
	dir := filepath.Join(c.dir, "client")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("proxybench: %w", err)
	}
	id, idPub, err := writeKey(filepath.Join(dir, "id"))
	if err != nil {
		return err
	}
	cert, err := c.admin.Sign(ctx, api.AdminSignRequest{Name: userName, PublicKey: string(ssh.MarshalAuthorizedKey(idPub))})
	if err != nil {
		return fmt.Errorf("proxybench: signing alice's key: %w", err)
	}
	certFile := id + "-cert.pub"
	if err := os.WriteFile(certFile, []byte(cert.Certificate+"\n"), 0o600); err != nil {
		return fmt.Errorf("proxybench: %w", err)
	}
	jumpID, jumpPub, err := writeKey(filepath.Join(dir, "jump_id"))
	if err != nil {
		return err
	}
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		return err
	}
	blk, err := ssh.MarshalPrivateKey(hostPriv, "")
	if err != nil {
		return err
	}
	if err := c.startJump(ctx, pem.EncodeToMemory(blk), jumpPub); err != nil {
		return err
	}
	knownHosts := filepath.Join(dir, "known_hosts")
	kh := "@cert-authority * " + strings.TrimSpace(c.hostCA) + "\n" +
		hostJump + " " + string(ssh.MarshalAuthorizedKey(hostSigner.PublicKey()))
	if err := os.WriteFile(knownHosts, []byte(kh), 0o600); err != nil {
		return fmt.Errorf("proxybench: %w", err)
	}
	c.sshConfig = filepath.Join(dir, "ssh_config")
	return os.WriteFile(c.sshConfig, []byte(clientConfig(c, id, certFile, jumpID, knownHosts)), 0o600)
}

// clientConfig is the ssh_config of every row. IdentityFile and
// CertificateFile accumulate over matching blocks, so each host block
// names its own; "Host *" holds only what every connection shares.
func clientConfig(c *cluster, id, cert, jumpID, knownHosts string) string {
	split := func(addr string) (string, string) { h, p, _ := net.SplitHostPort(addr); return h, p }
	nodeHost, nodePort := split(c.nodeAddr)
	jumpHost, jumpPort := split(c.jumpAddr)
	proxyHost, proxyPort := split(c.proxyAddr)
	userKeys := fmt.Sprintf("  IdentityFile %s\n  CertificateFile %s\n", id, cert)
	var b strings.Builder
	fmt.Fprintf(&b, "Host %s\n  HostName %s\n  Port %s\n  User %s\n  HostKeyAlias %s\n%s",
		hostDirect, nodeHost, nodePort, login, nodeName, userKeys)
	fmt.Fprintf(&b, "Host %s\n  HostName %s\n  Port %s\n  User %s\n  HostKeyAlias %s\n  ProxyJump %s\n%s",
		hostStock, nodeHost, nodePort, login, nodeName, hostJump, userKeys)
	fmt.Fprintf(&b, "Host %s\n  HostName %s\n  Port %s\n  User root\n  HostKeyAlias %s\n  IdentityFile %s\n",
		hostJump, jumpHost, jumpPort, hostJump, jumpID)
	const curve = "  KexAlgorithms curve25519-sha256\n"
	fmt.Fprintf(&b, "Host %s\n  HostName %s\n  Port %s\n  User %s\n  HostKeyAlias %s\n%s%s",
		hostDirectC, nodeHost, nodePort, login, nodeName, curve, userKeys)
	fmt.Fprintf(&b, "Host %s\n  HostName %s\n  Port %s\n  User %s\n  HostKeyAlias %s\n  ProxyJump %s\n%s%s",
		hostStockC, nodeHost, nodePort, login, nodeName, hostJumpC, curve, userKeys)
	fmt.Fprintf(&b, "Host %s\n  HostName %s\n  Port %s\n  User root\n  HostKeyAlias %s\n%s  IdentityFile %s\n",
		hostJumpC, jumpHost, jumpPort, hostJump, curve, jumpID)
	fmt.Fprintf(&b, "Host %s\n  User %s\n  ProxyJump %s\n%s", hostProxyJ, login, hostTProxy, userKeys)
	fmt.Fprintf(&b, "Host %s\n  HostName %s\n  Port %s\n  User %s\n%s", hostTProxy, proxyHost, proxyPort, userName, userKeys)
	fmt.Fprintf(&b, "Host %s\n  HostName %s\n  Port %s\n  User %s@%s\n%s", hostSingle, proxyHost, proxyPort, login, nodeName, userKeys)
	fmt.Fprintf(&b, `Host *
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  CheckHostIP no
  BatchMode yes
  ConnectTimeout 15
  ControlMaster no
  ControlPath none
  ForwardAgent no
  ForwardX11 no
  LogLevel ERROR
`, knownHosts)
	return b.String()
}

// writeKey writes a new ed25519 key in OpenSSH form to path and returns
// the path and the public key.
func writeKey(path string) (string, ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return "", nil, fmt.Errorf("proxybench: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	return path, sp, err
}

// ssh runs the OpenSSH client program prog with the cluster's config and
// returns its combined output.
func (c *cluster) ssh(ctx context.Context, prog string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, prog, append([]string{"-F", c.sshConfig}, args...)...)
	cmd.Env = environ()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = fmt.Errorf("%s %s: exit %d: %s", prog, strings.Join(args, " "), ee.ExitCode(), strings.TrimSpace(string(out)))
	}
	return string(out), err
}
