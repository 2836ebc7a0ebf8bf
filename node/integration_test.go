package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/internal/nodedir"
	"github.com/opensshca/suite/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.RemoveAll()
	os.Exit(code)
}

// cluster is a CA plus the binaries the node tests run.
type cluster struct {
	ca       *testbin.CA
	bins     map[string]string
	authkeys string // root-only copy sshd accepts
}

func newCluster(t *testing.T, caArgs ...string) *cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the node tests run sshd and need root; CI runs them as root")
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("ssh not installed; .ci/run installs openssh-client")
	}
	bins := testbin.Build(t, testbin.Node, testbin.Authkeys, testbin.Caadm)
	return &cluster{
		ca:       testbin.StartCA(t, caArgs...),
		bins:     bins,
		authkeys: testbin.RootOnlyCopy(t, bins["teleport-authkeys"]),
	}
}

func (c *cluster) caadm(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(c.bins["caadm"], append([]string{"--socket", c.ca.AdminSocket}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("caadm %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// token returns a new node token's secret.
func (c *cluster) token(t *testing.T, labels map[string]string) string {
	t.Helper()
	resp, err := c.ca.Admin().AddToken(context.Background(), api.AddTokenRequest{Role: "node", Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Secret
}

// testNode is a joined node with its own sshd and teleport-node run.
type testNode struct {
	name string
	dir  nodedir.Dir
	sshd *testbin.SSHD
	run  *exec.Cmd
	log  *testbin.Buffer
	nss  string
	// pamGroupConf is the group.conf teleport-node keeps (extrausers).
	pamGroupConf string
}

type nodeOpts struct {
	labels      map[string]string
	maxAge      time.Duration
	keysCommand bool
	runArgs     []string // more teleport-node run flags
	// extrausers runs sshd where NSS reads the node's extrausers files,
	// so personal accounts can log in (testbin.SSHDConfig.ExtrausersDir).
	extrausers bool
}

// startNode joins a node, installs the drop-in into a private sshd and
// starts teleport-node run.
func (c *cluster) startNode(t *testing.T, name string, o nodeOpts) *testNode {
	t.Helper()
	dir := filepath.Join(testbin.ShortTempDir(t), "node")
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	n := &testNode{name: name, dir: nodedir.Dir(dir), log: new(testbin.Buffer), nss: filepath.Join(filepath.Dir(dir), "extrausers")}
	out, err := exec.Command(c.bins["teleport-node"], "join", "--server", c.ca.URL(), "--token", c.token(t, o.labels),
		"--ca-pin", c.ca.Pin, "--data-dir", dir, "--name", name, "--address", "127.0.0.1", "--authkeys-user", "nobody").CombinedOutput()
	if err != nil {
		t.Fatalf("teleport-node join: %v\n%s", err, out)
	}
	args := []string{"sshd-config", "--data-dir", dir, "--authkeys", c.authkeys}
	if o.maxAge != 0 {
		args = append(args, "--max-age", o.maxAge.String())
	}
	if o.keysCommand {
		args = append(args, "--keys-command")
	}
	conf, err := exec.Command(c.bins["teleport-node"], args...).Output()
	if err != nil {
		t.Fatalf("teleport-node sshd-config: %v", err)
	}
	dropIn := filepath.Join(filepath.Dir(dir), "teleport-node.conf")
	if err := os.WriteFile(dropIn, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	sc := testbin.SSHDConfig{Extra: []string{"Include " + dropIn}}
	if o.extrausers {
		if err := os.MkdirAll(n.nss, 0o755); err != nil {
			t.Fatal(err)
		}
		sc.ExtrausersDir = n.nss
		// sshd with a PAM stack that runs pam_group, reading the
		// group.conf teleport-node manages (contrib/pam).
		pamDir, secDir := filepath.Join(filepath.Dir(dir), "pam.d"), filepath.Join(filepath.Dir(dir), "security")
		n.pamGroupConf = filepath.Join(secDir, "group.conf")
		for _, d := range []string{pamDir, secDir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		pam := "auth optional pam_group.so\naccount required pam_permit.so\nsession required pam_permit.so\npassword required pam_deny.so\n"
		if err := os.WriteFile(filepath.Join(pamDir, "sshd"), []byte(pam), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(n.pamGroupConf, []byte("# the machine's own lines stay\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		sc.Binds = map[string]string{pamDir: "/etc/pam.d", secDir: "/etc/security"}
		sc.UsePAM = true
		o.runArgs = append(o.runArgs, "--pam-group-conf", n.pamGroupConf)
	}
	n.sshd = testbin.StartSSHD(t, sc)
	n.run = exec.Command(c.bins["teleport-node"], append([]string{"run", "--data-dir", dir, "--reload-command", "",
		"--nss-dir", n.nss, "--policy-wait", "1s", "--log-level", "debug", "--no-tunnels", "--audit-interval", "1s"}, o.runArgs...)...)
	n.run.Env = testbin.Environ()
	n.run.Stdout, n.run.Stderr = n.log, n.log
	if err := n.run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n.run.Process.Kill()
		_ = n.run.Wait()
		if t.Failed() {
			t.Logf("teleport-node %s log:\n%s", name, n.log)
		}
	})
	return n
}

// user is a key pair with a certificate from the CA.
type user struct {
	key, cert string
	serial    string
}

func (c *cluster) userCert(t *testing.T, name string) user {
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
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	u := user{key: filepath.Join(dir, "id"), cert: filepath.Join(dir, "id-cert.pub"), serial: cert.Serial}
	if err := os.WriteFile(u.key, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(u.cert, []byte(cert.Certificate+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return u
}

// knownHosts writes a known_hosts file holding only the @cert-authority
// line for hostCA.
func knownHosts(t *testing.T, hostCA string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(f, []byte("@cert-authority * "+hostCA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// ssh runs "ssh login@node true" with strict host key checking against
// kh; it reports whether authentication succeeded (ssh exits 255 on
// connection and authentication failures, else with the remote status).
func sshLogin(t *testing.T, u user, login string, n *testNode, kh string) (bool, string) {
	t.Helper()
	cmd := exec.Command("ssh", "-F", "/dev/null", "-i", u.key, "-o", "CertificateFile="+u.cert,
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "UserKnownHostsFile="+kh,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "-p", n.sshd.Port, login+"@127.0.0.1", "true")
	cmd.Env = testbin.Environ()
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 255 {
		return false, string(out)
	}
	return true, string(out)
}

// eventually retries f until it is true or d passes.
func eventually(t *testing.T, d time.Duration, what string, f func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if f() {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestNodesWithRealSSHD runs two nodes (env=prod and env=staging), each a
// real sshd with the generated drop-in and teleport-node run, and logs in
// with the real ssh client and CA certificates (recording mode off, so
// nodes trust the user CA).
func TestNodesWithRealSSHD(t *testing.T) {
	t.Parallel()
	outer := t
	c := newCluster(t, "--recording-mode", "off")
	c.caadm(t, "roles", "add", "prod-root", "--logins", "root", "--labels", "env=prod")
	c.caadm(t, "roles", "add", "staging-daemon", "--logins", "daemon", "--labels", "env=staging")
	c.caadm(t, "roles", "add", "prod-devs", "--logins", "{user}", "--groups", "cluster-sudo,sudo", "--labels", "env=prod")
	if _, err := c.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: "dave", Roles: []string{"prod-devs"}, Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "carol", "bob"} {
		if _, err := c.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: name, Roles: []string{"prod-root", "staging-daemon"}, Password: "correct horse battery"}); err != nil {
			t.Fatal(err)
		}
	}
	info, err := c.ca.Admin().AdminCA(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	kh := knownHosts(t, info.HostCA)
	nssErr := testbin.ExtrausersAvailable()
	if nssErr == nil {
		testbin.MakeMountpoint(t, "/var/lib/extrausers")
	}
	prod := c.startNode(t, "node1", nodeOpts{labels: map[string]string{"env": "prod"}, maxAge: 5 * time.Second, extrausers: nssErr == nil})
	staging := c.startNode(t, "node2", nodeOpts{labels: map[string]string{"env": "staging"}, keysCommand: true})
	alice, carol, bob := c.userCert(t, "alice"), c.userCert(t, "carol"), c.userCert(t, "bob")

	t.Run("policy", func(t *testing.T) {
		if ok, out := sshLogin(t, alice, "root", prod, kh); !ok {
			t.Fatalf("alice as root on node1 (prod-root): refused:\n%s\nsshd:\n%s", out, prod.sshd.Stderr)
		}
		// The certificate names daemon too, but only for env=staging.
		if ok, _ := sshLogin(t, alice, "daemon", prod, kh); ok {
			t.Fatal("alice as daemon on node1: allowed, but no role gives daemon on env=prod")
		}
		if ok, out := sshLogin(t, alice, "daemon", staging, kh); !ok {
			t.Fatalf("alice as daemon on node2 (AuthorizedKeysCommand): refused:\n%s\nsshd:\n%s", out, staging.sshd.Stderr)
		}
		if ok, _ := sshLogin(t, alice, "root", staging, kh); ok {
			t.Fatal("alice as root on node2: allowed, but the role's labels do not select env=staging")
		}
		// Both refusals reach the CA's audit log, by the node, with the
		// reason teleport-authkeys gave (principals and keys modes).
		eventually(t, 20*time.Second, "the nodes' denials in the CA's audit log", func() bool {
			evs, err := c.ca.Admin().Audit(context.Background(), client.AuditFilter{Type: "node.login.denied"})
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, e := range evs {
				if e.User == "alice" && !e.Success && e.Fields["reason"] != "" {
					seen[e.Actor+" "+e.Fields["login"]] = true
				}
			}
			return seen["node:node1 daemon"] && seen["node:node2 root"]
		})
	})

	t.Run("host verified by the cert-authority line only", func(t *testing.T) {
		other, _, _ := ed25519.GenerateKey(rand.Reader)
		op, _ := ssh.NewPublicKey(other)
		wrong := knownHosts(t, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(op))))
		ok, out := sshLogin(t, alice, "root", prod, wrong)
		if ok || !strings.Contains(out, "Host key verification failed") {
			t.Fatalf("with another host CA in known_hosts: ok=%v\n%s", ok, out)
		}
	})

	t.Run("NSS account through libnss-extrausers", func(t *testing.T) {
		if nssErr != nil {
			t.Skipf("skipping: %v", nssErr)
		}
		var line string
		var groups []string
		eventually(t, 5*time.Second, "dave's account in node1's extrausers files", func() bool {
			b, _ := os.ReadFile(filepath.Join(prod.nss, "passwd"))
			return strings.HasPrefix(string(b), "dave:")
		})
		line, groups = testbin.NSSLookup(t, prod.nss, "dave")
		f := strings.Split(line, ":")
		if len(f) != 7 || f[0] != "dave" || f[5] != "/home/dave" {
			t.Fatalf("getent passwd dave = %q", line)
		}
		if uid, _ := strconv.Atoi(f[2]); uid < 70000 || uid > 99999 || f[3] != f[2] {
			t.Fatalf("dave's uid/gid %s/%s are not from the CA's range", f[2], f[3])
		}
		if !slices.Contains(groups, "cluster-sudo") || !slices.Contains(groups, "dave") {
			t.Fatalf("id -Gn dave = %v, want dave and cluster-sudo", groups)
		}
		// dave logs in to his personal account with the real ssh: sshd
		// resolves it through libnss-extrausers.
		daveCert := c.userCert(t, "dave")
		cmd := exec.Command("ssh", "-F", "/dev/null", "-i", daveCert.key, "-o", "CertificateFile="+daveCert.cert,
			"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "UserKnownHostsFile="+kh,
			"-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
			"-o", "LogLevel=ERROR", "-p", prod.sshd.Port, "dave@127.0.0.1", "id -un; id -u; id -Gn")
		cmd.Env = testbin.Environ()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr // "Could not chdir to home directory": no pam_mkhomedir here
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ssh as dave: %v\n%s%s\nsshd:\n%s", err, out, stderr.Bytes(), prod.sshd.Stderr)
		}
		got := strings.Fields(string(out))
		if len(got) < 4 || got[0] != "dave" || got[1] != f[2] || !slices.Contains(got[2:], "cluster-sudo") {
			t.Fatalf("id on node1 as dave: %q (want dave, uid %s, cluster-sudo)", out, f[2])
		}
		// sudo (gid 27) cannot come from libnss-extrausers; pam_group
		// grants it at login from the block teleport-node manages.
		if !slices.Contains(got[2:], "sudo") {
			b, _ := os.ReadFile(prod.pamGroupConf)
			t.Fatalf("dave is not in sudo after login: %q\ngroup.conf:\n%s", out, b)
		}
		if b, _ := os.ReadFile(prod.pamGroupConf); !strings.HasPrefix(string(b), "# the machine's own lines stay\n") {
			t.Fatalf("group.conf lost the machine's lines:\n%s", b)
		}
		// node2 (env=staging) gives dave no account.
		if b, _ := os.ReadFile(filepath.Join(staging.nss, "passwd")); strings.Contains(string(b), "dave") {
			t.Fatalf("dave has an account on node2:\n%s", b)
		}
	})

	t.Run("lock and remove within 5s", func(t *testing.T) {
		c.caadm(t, "users", "lock", "alice", "--reason", "test")
		took := eventually(t, 5*time.Second, "locked alice refused on node1", func() bool {
			ok, _ := sshLogin(t, alice, "root", prod, kh)
			return !ok
		})
		t.Logf("lock refused logins after %v", took)
		c.caadm(t, "users", "unlock", "alice")
		eventually(t, 5*time.Second, "unlocked alice allowed again", func() bool {
			ok, _ := sshLogin(t, alice, "root", prod, kh)
			return ok
		})
		if ok, _ := sshLogin(t, carol, "root", prod, kh); !ok {
			t.Fatal("carol refused before removal")
		}
		c.caadm(t, "users", "rm", "carol")
		took = eventually(t, 5*time.Second, "removed carol refused on node1 and node2", func() bool {
			ok1, _ := sshLogin(t, carol, "root", prod, kh)
			ok2, _ := sshLogin(t, carol, "daemon", staging, kh)
			return !ok1 && !ok2
		})
		t.Logf("removal refused logins after %v", took)
	})

	t.Run("revoked serial refused through the KRL", func(t *testing.T) {
		if ok, _ := sshLogin(t, bob, "root", prod, kh); !ok {
			t.Fatal("bob refused before revocation")
		}
		c.caadm(t, "certs", "revoke", bob.serial, "--reason", "test")
		krl := prod.dir.Path(nodedir.KRL)
		eventually(t, 5*time.Second, "bob's serial in node1's KRL (ssh-keygen -Q)", func() bool {
			out, err := exec.Command("ssh-keygen", "-Q", "-f", krl, bob.cert).CombinedOutput()
			return err != nil && strings.Contains(string(out), "REVOKED")
		})
		if ok, _ := sshLogin(t, bob, "root", prod, kh); ok {
			t.Fatal("bob's revoked certificate still logs in")
		}
		if !strings.Contains(prod.sshd.Stderr.String(), "revoked by file "+krl) {
			t.Fatalf("sshd did not refuse bob through RevokedKeys:\n%s", prod.sshd.Stderr)
		}
		out, err := exec.Command("ssh-keygen", "-Q", "-f", krl, alice.cert).CombinedOutput()
		if err != nil {
			t.Fatalf("alice's certificate reported revoked: %s", out)
		}
	})

	t.Run("CA down: cache, then fail closed", func(t *testing.T) {
		c.ca.Stop()
		if ok, out := sshLogin(t, alice, "root", prod, kh); !ok {
			t.Fatalf("CA stopped: alice refused although the cache is fresh:\n%s", out)
		}
		// node1's teleport-authkeys has --max-age 5s.
		time.Sleep(6 * time.Second)
		if ok, _ := sshLogin(t, alice, "root", prod, kh); ok {
			t.Fatal("CA stopped and cache older than --max-age: alice still logs in")
		}
		// The CA returns while teleport-node is not running (the cache
		// stays stale): teleport-authkeys asks the CA itself, within its
		// 2 s deadline, and caches the answer. The hold it keeps after a
		// failed call (30 s) is cut short here by removing its marker.
		_ = prod.run.Process.Kill()
		_ = prod.run.Wait()
		c.ca = testbin.Start(outer, testbin.Config{DataDir: c.ca.DataDir, Listen: c.ca.Listen, AdminSocket: c.ca.AdminSocket, Args: []string{"--recording-mode", "off"}})
		if err := os.Remove(prod.dir.Path(nodedir.Unreachable)); err != nil {
			t.Fatalf("no CA-unreachable marker after the failed call: %v", err)
		}
		before, _ := os.Stat(prod.dir.Path(nodedir.Cache))
		if ok, out := sshLogin(t, alice, "root", prod, kh); !ok {
			t.Fatalf("CA back, stale cache: alice refused:\n%s\nsshd:\n%s", out, prod.sshd.Stderr)
		}
		after, _ := os.Stat(prod.dir.Path(nodedir.Cache))
		if !after.ModTime().After(before.ModTime()) {
			t.Fatal("teleport-authkeys did not cache the CA's answer")
		}
	})
}

// TestModeProxyTrustsOnlySessionCA: in the default recording mode the
// node's sshd trusts only the session CA, so a valid user certificate from
// the same cluster, for an allowed login, is refused: only the recording
// proxy can log in.
func TestModeProxyTrustsOnlySessionCA(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.caadm(t, "roles", "add", "all-root", "--logins", "root", "--labels", "*=*")
	if _, err := c.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: "alice", Roles: []string{"all-root"}, Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	info, err := c.ca.Admin().AdminCA(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := c.startNode(t, "node1", nodeOpts{labels: map[string]string{"env": "prod"}})
	trusted, err := os.ReadFile(n.dir.Path(nodedir.TrustedCA))
	if err != nil || strings.TrimSpace(string(trusted)) != info.SessionCA {
		t.Fatalf("trusted_user_ca.pub = %q (%v), want the session CA %q", trusted, err, info.SessionCA)
	}
	if ok, out := sshLogin(t, c.userCert(t, "alice"), "root", n, knownHosts(t, info.HostCA)); ok {
		t.Fatalf("a user certificate logged in directly in recording mode proxy:\n%s", out)
	}
}

// TestHostCertRenewal runs a node whose host certificates live two minutes
// (plus the CA's one-minute backdating): teleport-node renews at two
// thirds of that life, runs the reload command once for the new
// certificate, and the real ssh client, trusting only the host CA, logs in
// against the renewed certificate.
func TestHostCertRenewal(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "--recording-mode", "off", "--host-ttl", "2m")
	c.caadm(t, "roles", "add", "r", "--logins", "root", "--labels", "*=*")
	if _, err := c.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: "alice", Roles: []string{"r"}, Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	info, err := c.ca.Admin().AdminCA(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	kh := knownHosts(t, info.HostCA)
	dir := t.TempDir()
	marker, script := filepath.Join(dir, "reloads"), filepath.Join(dir, "reload.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho reload >> "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	n := c.startNode(t, "node1", nodeOpts{runArgs: []string{"--renew-check", "1s", "--reload-command", script}})
	alice := c.userCert(t, "alice")
	serial := func() uint64 {
		b, err := os.ReadFile(n.dir.Path(nodedir.HostCert))
		if err != nil {
			t.Fatal(err)
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			t.Fatal(err)
		}
		return pub.(*ssh.Certificate).Serial
	}
	first := serial()
	if ok, out := sshLogin(t, alice, "root", n, kh); !ok {
		t.Fatalf("login before renewal: %s", out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the reload command ran before anything changed")
	}
	took := eventually(t, 100*time.Second, "a renewed host certificate", func() bool { return serial() != first })
	t.Logf("host certificate renewed after %v", took)
	eventually(t, 5*time.Second, "the reload command after the renewal", func() bool {
		b, _ := os.ReadFile(marker)
		return strings.Count(string(b), "reload") == 1
	})
	if ok, out := sshLogin(t, alice, "root", n, kh); !ok {
		t.Fatalf("login after renewal: %s\nsshd:\n%s", out, n.sshd.Stderr)
	}
	time.Sleep(3 * time.Second) // several renewal checks with nothing due
	if b, _ := os.ReadFile(marker); strings.Count(string(b), "reload") != 1 {
		t.Fatalf("the reload command ran %d times for one renewal", strings.Count(string(b), "reload"))
	}
}
