package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/testbin"
)

// cluster is a real teleport-ca for one test.
type cluster struct {
	ca   *testbin.CA
	addr string // "127.0.0.1:PORT", as agent comments name it
}

func startCluster(t *testing.T, args ...string) *cluster {
	t.Helper()
	ca := testbin.StartCA(t, args...)
	return &cluster{ca: ca, addr: ca.Listen}
}

// password is the password of every test user.
func password(user string) string { return "pw of " + user + ", long enough" }

// addUser creates an active user with logins and returns its TOTP secret.
func (c *cluster) addUser(t *testing.T, name string, logins ...string) string {
	t.Helper()
	resp, err := c.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: name, Logins: logins, Password: password(name)})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.OTPAuthURI)
	if err != nil || u.Query().Get("secret") == "" {
		t.Fatalf("otpauth URI %q: %v", resp.OTPAuthURI, err)
	}
	return u.Query().Get("secret")
}

// loginArgs returns the arguments of a login of user into home.
func (c *cluster) loginArgs(home, user string, extra ...string) []string {
	return append([]string{"login", "--home", home, "--server", c.ca.URL(), "--user", user, "--ca-pin", c.ca.Pin}, extra...)
}

// credentials returns what a user types for a sign-in at the time at: the
// password and the TOTP code, computed by the real oathtool. The CA
// accepts the code of the step before and after the current one, but each
// step only once per user: a second sign-in of a user within one step uses
// the code of at+30s.
func credentials(t *testing.T, user, secret string, at time.Time) string {
	t.Helper()
	if _, err := exec.LookPath("oathtool"); err != nil {
		t.Skip("oathtool not installed; .ci/run installs it")
	}
	out, err := exec.Command("oathtool", "--totp", "-b", "-N", "@"+strconv.FormatInt(at.Unix(), 10), secret).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return password(user) + "\n" + strings.TrimSpace(string(out)) + "\n"
}

func mustOK(t *testing.T, r result, what string) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", what, r.code, r.stdout, r.stderr)
	}
}

// agentEntries returns the keys the agent lists (with the real
// ssh-add -L) under this cluster's comment.
func (c *cluster) agentEntries(t *testing.T, ag *testbin.Agent) []ssh.PublicKey {
	t.Helper()
	var out []ssh.PublicKey
	for _, line := range ag.Keys(t) {
		pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			t.Fatalf("ssh-add -L line %q: %v", line, err)
		}
		if strings.HasPrefix(comment, "teleport-keyhelper "+c.addr+" ") {
			out = append(out, pub)
		}
	}
	return out
}

// agentCerts returns the certificates among agentEntries.
func (c *cluster) agentCerts(t *testing.T, ag *testbin.Agent) []*ssh.Certificate {
	t.Helper()
	var out []*ssh.Certificate
	for _, k := range c.agentEntries(t, ag) {
		if cert, ok := k.(*ssh.Certificate); ok {
			out = append(out, cert)
		}
	}
	return out
}

// readCert reads a certificate file.
func readCert(t *testing.T, path string) *ssh.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return pub.(*ssh.Certificate)
}

// stateDir is the cluster's directory in home.
func (c *cluster) stateDir(home string) string {
	host, port, _ := net.SplitHostPort(c.addr)
	return filepath.Join(home, host+"_"+port)
}

// addOtherKey puts a key that is none of the keyhelper's into the agent.
func addOtherKey(t *testing.T, ag *testbin.Agent) {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(nil)
	withAgent(t, ag, func(a agent.ExtendedAgent) {
		if err := a.Add(agent.AddedKey{PrivateKey: priv, Comment: "someone else's key"}); err != nil {
			t.Fatal(err)
		}
	})
}

func withAgent(t *testing.T, ag *testbin.Agent, fn func(agent.ExtendedAgent)) {
	t.Helper()
	conn, err := net.Dial("unix", ag.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fn(agent.NewClient(conn))
}

func hasOtherKey(t *testing.T, ag *testbin.Agent) bool {
	for _, l := range ag.Keys(t) {
		if strings.HasSuffix(l, " someone else's key") {
			return true
		}
	}
	return false
}

// The agent entry's whole life: a login puts the certificate into the real
// ssh-agent with a lifetime that ends with the certificate (--ttl 3s: the
// agent drops it by itself); later logins reuse the sign-in and replace
// the entry, so there is only ever one, the newest; status reports it;
// logout removes it, the files and the server's sign-in. A key that is not
// the keyhelper's stays in the agent throughout.
func TestAgentLifecycle(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	secret := c.addUser(t, "alice", "alice", "root")
	ag := testbin.StartAgent(t)
	addOtherKey(t, ag)
	home := filepath.Join(t.TempDir(), ".teleport")
	env := map[string]string{"SSH_AUTH_SOCK": ag.Socket}

	r := kh(t, env, credentials(t, "alice", secret, time.Now()), c.loginArgs(home, "alice", "--ttl", "3s")...)
	mustOK(t, r, "login --ttl 3s")
	certs := c.agentCerts(t, ag)
	if len(certs) != 1 {
		t.Fatalf("after login, the agent holds %d certificates of the cluster, want 1", len(certs))
	}
	if left := time.Until(time.Unix(int64(certs[0].ValidBefore), 0)); left > 3*time.Second {
		t.Errorf("certificate valid for %v more, want at most 3s", left)
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(c.agentCerts(t, ag)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the agent still holds the certificate 15s after login: its lifetime was not set")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The lifetime is whole seconds rounded down, and ssh-agent counts
	// it from its clock in whole seconds (monotime() truncated): the
	// entry may go up to two seconds before the certificate ends.
	if time.Now().Before(time.Unix(int64(certs[0].ValidBefore), 0).Add(-2 * time.Second)) {
		t.Errorf("the agent dropped the certificate before it expired")
	}

	// No input: the sign-in must be reused.
	r = kh(t, env, "", c.loginArgs(home, "alice")...)
	mustOK(t, r, "second login")
	if !strings.Contains(r.stderr, "Reusing your sign-in") {
		t.Errorf("second login did not say it reused the sign-in:\n%s", r.stderr)
	}
	second := c.agentCerts(t, ag)
	r = kh(t, env, "", c.loginArgs(home, "alice")...)
	mustOK(t, r, "third login")
	third := c.agentCerts(t, ag)
	written := readCert(t, filepath.Join(c.stateDir(home), "key-cert.pub"))
	if len(second) != 1 || len(third) != 1 || third[0].Serial != written.Serial || third[0].Serial == second[0].Serial {
		t.Fatalf("after a new login the agent holds %d certificates of the cluster, want exactly the new one (serial %d)", len(third), written.Serial)
	}
	if n := len(c.agentEntries(t, ag)); n != 1 {
		t.Errorf("the agent holds %d entries of the cluster, want the certificate alone", n)
	}
	if !hasOtherKey(t, ag) {
		t.Error("login removed a key that is not the keyhelper's")
	}

	r = kh(t, env, "", "status", "--home", home)
	mustOK(t, r, "status")
	for _, want := range []string{"Cluster:      " + c.addr, "User:         alice", "Logins:       alice, root",
		"Certificate:  valid until", "serial " + strconv.FormatUint(written.Serial, 10), "Sign-in:      valid until", "ssh-agent:    holds the certificate"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}

	var prof struct{ Session string }
	b, _ := os.ReadFile(filepath.Join(c.stateDir(home), "profile.json"))
	if err := json.Unmarshal(b, &prof); err != nil || prof.Session == "" {
		t.Fatalf("profile.json has no session: %v", err)
	}
	r = kh(t, env, "", "logout", "--home", home)
	mustOK(t, r, "logout")
	if got := c.agentCerts(t, ag); len(got) != 0 {
		t.Errorf("after logout the agent holds %d certificates of the cluster", len(got))
	}
	if !hasOtherKey(t, ag) {
		t.Error("logout removed a key that is not the keyhelper's")
	}
	if _, err := os.Stat(c.stateDir(home)); !os.IsNotExist(err) {
		t.Errorf("after logout the cluster's directory is still there (%v)", err)
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	sp, _ := ssh.NewPublicKey(pub)
	_, err := c.ca.HTTPS().SignUser(context.Background(), prof.Session, api.SignUserRequest{PublicKey: string(ssh.MarshalAuthorizedKey(sp))})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeSessionExpired {
		t.Errorf("after logout the sign-in still works on the CA: %v", err)
	}
}

// --confirm adds the entry with the confirm constraint. The x/crypto agent
// client cannot read constraints back, so this watches the real ssh-agent
// enforce it: with SSH_ASKPASS_REQUIRE=force it runs SSH_ASKPASS for each
// use of a confirm-constrained key; this askpass records its prompt and
// declines. A signature with the --confirm entry is then refused after a
// prompt; one with the entry of a login without --confirm needs none.
func TestConfirm(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	secret := c.addUser(t, "bob", "bob")
	dir := t.TempDir()
	log := filepath.Join(dir, "askpass.log")
	askpass := filepath.Join(dir, "askpass")
	script := "#!/bin/sh\nprintf '%s\\n' \"$*\" >> " + log + "\nexit 1\n"
	if err := os.WriteFile(askpass, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ag := testbin.StartAgent(t, "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=")
	home := filepath.Join(dir, ".teleport")
	env := map[string]string{"SSH_AUTH_SOCK": ag.Socket}

	r := kh(t, env, credentials(t, "bob", secret, time.Now()), c.loginArgs(home, "bob", "--confirm")...)
	mustOK(t, r, "login --confirm")
	if !strings.Contains(r.stderr, "asking for confirmation on each use") {
		t.Errorf("login --confirm did not say so:\n%s", r.stderr)
	}
	if err := c.signWithAgent(t, ag); err == nil {
		t.Error("the agent signed with the --confirm entry although the user declined")
	}
	prompts, _ := os.ReadFile(log)
	if !strings.Contains(string(prompts), "Allow use of key") {
		t.Errorf("the agent did not ask for confirmation (askpass log %q)", prompts)
	}

	r = kh(t, env, "", c.loginArgs(home, "bob")...)
	mustOK(t, r, "login without --confirm")
	if n := len(c.agentEntries(t, ag)); n != 1 {
		t.Errorf("after a login without --confirm the agent holds %d entries of the cluster, want 1", n)
	}
	if err := c.signWithAgent(t, ag); err != nil {
		t.Errorf("signing with the entry of a login without --confirm: %v", err)
	}
	if again, _ := os.ReadFile(log); string(again) != string(prompts) {
		t.Errorf("the agent asked for confirmation of an entry added without --confirm: %q", again)
	}
}

// signWithAgent signs with the cluster's only agent entry.
func (c *cluster) signWithAgent(t *testing.T, ag *testbin.Agent) error {
	t.Helper()
	certs := c.agentCerts(t, ag)
	if len(certs) != 1 {
		t.Fatalf("the agent holds %d certificates of the cluster, want 1", len(certs))
	}
	var err error
	withAgent(t, ag, func(a agent.ExtendedAgent) { _, err = a.Sign(certs[0], []byte("data")) })
	return err
}

// The whole path with stock OpenSSH: after login, a real ssh verifies a
// real sshd's host certificate through the keyhelper's known_hosts alone
// (StrictHostKeyChecking yes) and logs in as root with the certificate from
// the agent; with an empty known_hosts it refuses the same host, so
// nothing is trusted on first use. The generated ssh_config also works on
// its own, without the agent (its IdentityFile and CertificateFile). The
// written certificate reads back with ssh-keygen -L.
func TestSSHWithHostCertificate(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("ssh not installed; .ci/run installs openssh-client")
	}
	c := startCluster(t)
	secret := c.addUser(t, "ops", "root")
	ctx := context.Background()
	hostPub, hostPriv, _ := ed25519.GenerateKey(nil)
	block, err := ssh.MarshalPrivateKey(hostPriv, "node1")
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(hostPub)
	hostCert, err := c.ca.Admin().Sign(ctx, api.AdminSignRequest{Host: true, Name: "node1", PublicKey: string(ssh.MarshalAuthorizedKey(sp)), Principals: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.ca.Admin().AdminCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sshd := testbin.StartSSHD(t, testbin.SSHDConfig{
		HostKey:           pem.EncodeToMemory(block),
		HostCertificate:   []byte(hostCert.Certificate + "\n"),
		TrustedUserCAKeys: []byte(info.UserCA + "\n"),
	})
	tmp := t.TempDir()
	askpassLog := filepath.Join(tmp, "askpass.log")
	askpass := filepath.Join(tmp, "askpass") // declines every confirmation
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$*\" >> "+askpassLog+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ag := testbin.StartAgent(t, "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=")
	home := filepath.Join(tmp, ".teleport")
	env := map[string]string{"SSH_AUTH_SOCK": ag.Socket}
	r := kh(t, env, credentials(t, "ops", secret, time.Now()), c.loginArgs(home, "ops", "--hosts", "127.0.0.1")...)
	mustOK(t, r, "login")
	dir := c.stateDir(home)

	sshTrue := func(extra ...string) (string, error) {
		args := append(extra, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-p", sshd.Port, "root@127.0.0.1", "true")
		out, err := exec.Command("ssh", args...).CombinedOutput()
		return string(out), err
	}
	if out, err := sshTrue("-F", "/dev/null", "-o", "UserKnownHostsFile="+filepath.Join(dir, "known_hosts"), "-o", "IdentityAgent="+ag.Socket); err != nil {
		t.Errorf("ssh with the keyhelper's known_hosts and agent: %v\n%s", err, out)
	}
	empty := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := sshTrue("-F", "/dev/null", "-o", "UserKnownHostsFile="+empty, "-o", "IdentityAgent="+ag.Socket)
	if err == nil || !strings.Contains(out, "Host key verification failed") {
		t.Errorf("ssh with an empty known_hosts: %v\n%s\nwant a host key verification failure", err, out)
	}
	if out, err := sshTrue("-F", filepath.Join(dir, "ssh_config"), "-o", "IdentityAgent=none"); err != nil {
		t.Errorf("ssh with the generated ssh_config and no agent: %v\n%s", err, out)
	}

	if _, err := os.ReadFile(askpassLog); !os.IsNotExist(err) {
		t.Errorf("the agent asked for a confirmation without --confirm (%v)", err)
	}

	// With --confirm the private key lives only in the agent, and the
	// block uses it from there: ssh fails when the user declines.
	mustOK(t, kh(t, env, "", c.loginArgs(home, "ops", "--confirm")...), "login --confirm")
	if _, err := os.Stat(filepath.Join(dir, "key")); !os.IsNotExist(err) {
		t.Errorf("--confirm left a private key file, which would bypass the confirmation (%v)", err)
	}
	out, err = sshTrue("-F", filepath.Join(dir, "ssh_config"), "-o", "IdentityAgent="+ag.Socket)
	prompts, _ := os.ReadFile(askpassLog)
	if err == nil || !strings.Contains(string(prompts), "Allow use of key") {
		t.Errorf("ssh with the block after --confirm: %v, askpass asked %q\n%s\nwant a declined confirmation and a failure", err, prompts, out)
	}

	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	l, err := exec.Command("ssh-keygen", "-L", "-f", filepath.Join(dir, "key-cert.pub")).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, l)
	}
	for _, re := range []string{`Type: ssh-ed25519-cert-v01@openssh.com user certificate`, `Key ID: "ops"`, `Principals: \n\s+root\n\s+Critical`} {
		if !regexp.MustCompile(re).Match(l) {
			t.Errorf("ssh-keygen -L does not match %q:\n%s", re, l)
		}
	}
}

// --key-path certifies the user's own key: the certificate goes next to it
// and into the agent when the private key needs no passphrase; a
// passphrase-protected key gets its certificate file only, with a note
// saying how to add it, and the cluster's earlier agent entry is removed.
// Logout removes the certificate, never the key.
func TestKeyPath(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed")
	}
	c := startCluster(t)
	secret := c.addUser(t, "carol", "carol")
	ag := testbin.StartAgent(t)
	dir := t.TempDir()
	home := filepath.Join(dir, ".teleport")
	env := map[string]string{"SSH_AUTH_SOCK": ag.Socket}
	keygen := func(name, passphrase string) {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", filepath.Join(dir, name)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	keygen("id_ed25519", "")
	keygen("locked", "a passphrase")

	r := kh(t, env, credentials(t, "carol", secret, time.Now()), c.loginArgs(home, "carol", "--key-path", filepath.Join(dir, "id_ed25519.pub"), "--hosts", "*.example.com")...)
	mustOK(t, r, "login --key-path")
	cert := readCert(t, filepath.Join(dir, "id_ed25519-cert.pub"))
	pubLine, _ := os.ReadFile(filepath.Join(dir, "id_ed25519.pub"))
	pub, _, _, _, _ := ssh.ParseAuthorizedKey(pubLine)
	if string(cert.Key.Marshal()) != string(pub.Marshal()) {
		t.Error("the certificate is not for the given key")
	}
	if got := c.agentCerts(t, ag); len(got) != 1 || got[0].Serial != cert.Serial {
		t.Errorf("the agent does not hold the certificate of the given key")
	}
	if _, err := os.Stat(filepath.Join(c.stateDir(home), "key")); !os.IsNotExist(err) {
		t.Errorf("a key was written to the state directory with --key-path (%v)", err)
	}

	lockedCert := filepath.Join(dir, "locked.cert")
	r = kh(t, env, "", c.loginArgs(home, "carol", "--key-path", filepath.Join(dir, "locked.pub"), "--cert-path", lockedCert)...)
	mustOK(t, r, "login with a passphrase-protected key")
	if !strings.Contains(r.stderr, "passphrase") || !strings.Contains(r.stderr, "ssh-add "+filepath.Join(dir, "locked")) {
		t.Errorf("login did not explain why the key is not in the agent:\n%s", r.stderr)
	}
	if readCert(t, lockedCert).KeyId != "carol" {
		t.Error("no certificate at --cert-path")
	}
	if got := c.agentCerts(t, ag); len(got) != 0 {
		t.Errorf("the agent still holds %d certificates of the cluster", len(got))
	}
	if r := kh(t, env, "", "config", "--home", home); !strings.Contains(r.stdout, "IdentityFile "+filepath.Join(dir, "locked")+"\n") ||
		!strings.Contains(r.stdout, "CertificateFile "+lockedCert+"\n") {
		t.Errorf("config does not name the user's key and certificate:\n%s", r.stdout)
	}

	mustOK(t, kh(t, env, "", "logout", "--home", home), "logout")
	if _, err := os.Stat(lockedCert); !os.IsNotExist(err) {
		t.Errorf("logout left the certificate at --cert-path (%v)", err)
	}
	for _, f := range []string{"locked", "locked.pub", "id_ed25519", "id_ed25519.pub"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("the user's key file %s is gone: %v", f, err)
		}
	}
}

// The errors a user meets at login: one line each, exit 1, and no state
// left behind by a failed first login. A sign-in that ended on the server
// makes login ask again; one that ended by the clock, or --relogin, asks
// without trying it.
func TestLoginErrors(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	ctx := context.Background()
	home := func(t *testing.T) string { return filepath.Join(t.TempDir(), ".teleport") }
	// The failure is the last line of stderr; notes may come before.
	oneLine := func(t *testing.T, r result, want string) {
		t.Helper()
		lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
		last := lines[len(lines)-1]
		if r.code != 1 || !strings.HasPrefix(last, "teleport-keyhelper: ") || !strings.Contains(last, want) {
			t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and a last line with %q", r.code, r.stderr, want)
		}
	}

	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		c.addUser(t, "wrongpw", "wrongpw")
		h := home(t)
		r := kh(t, nil, "not the password\n123456\n", c.loginArgs(h, "wrongpw")...)
		oneLine(t, r, "wrong user name, password or one-time code")
		if _, err := os.Stat(c.stateDir(h)); !os.IsNotExist(err) {
			t.Errorf("a failed first login left the cluster's directory (%v)", err)
		}
	})
	t.Run("locked", func(t *testing.T) {
		t.Parallel()
		secret := c.addUser(t, "locked", "locked")
		until := time.Now().Add(time.Hour)
		if err := c.ca.Admin().LockUser(ctx, "locked", api.LockRequest{Until: &until, Reason: "on leave"}); err != nil {
			t.Fatal(err)
		}
		r := kh(t, nil, credentials(t, "locked", secret, time.Now()), c.loginArgs(home(t), "locked")...)
		oneLine(t, r, "locked (on leave) until")
	})
	t.Run("pin mismatch", func(t *testing.T) {
		t.Parallel()
		// No input: the pin is checked before the password is asked for.
		r := kh(t, nil, "", c.loginArgs(home(t), "nobody", "--ca-pin", "sha256:"+strings.Repeat("0", 64))...)
		oneLine(t, r, "is not the CA the pin names")
	})
	t.Run("no pin", func(t *testing.T) {
		t.Parallel()
		r := kh(t, nil, "", "login", "--home", home(t), "--server", c.ca.URL(), "--user", "nobody")
		oneLine(t, r, "pass --ca-pin sha256:")
	})
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		r := kh(t, nil, "", "login", "--home", home(t), "--server", "https://"+testbin.FreePort(t), "--user", "nobody", "--ca-pin", c.ca.Pin)
		oneLine(t, r, "connection refused; check --server")
	})
	t.Run("confirm without agent", func(t *testing.T) {
		t.Parallel()
		// No input: refused before the password is asked for.
		r := kh(t, nil, "", c.loginArgs(home(t), "nobody", "--confirm")...)
		oneLine(t, r, "--confirm keeps the key only in ssh-agent, but there is none to use")
	})
	t.Run("code not digits", func(t *testing.T) {
		t.Parallel()
		r := kh(t, nil, "pw\nabcdef\n", c.loginArgs(home(t), "nobody")...)
		oneLine(t, r, "the one-time code must be the 6 digits")
	})
	t.Run("sign-in ended", func(t *testing.T) {
		t.Parallel()
		secret := c.addUser(t, "dave", "dave")
		h := home(t)
		now := time.Now()
		mustOK(t, kh(t, nil, credentials(t, "dave", secret, now), c.loginArgs(h, "dave")...), "first login")
		profile := filepath.Join(c.stateDir(h), "profile.json")
		editProfile(t, profile, func(p map[string]any) { p["session"] = "ended-on-the-server" })
		r := kh(t, nil, credentials(t, "dave", secret, now.Add(30*time.Second)), c.loginArgs(h, "dave")...)
		mustOK(t, r, "login after the sign-in ended")
		if !strings.Contains(r.stderr, "That sign-in has ended; signing in again.") {
			t.Errorf("login did not say it signs in again:\n%s", r.stderr)
		}
		// Ended by the clock, or --relogin: login asks at once (and,
		// with no input here, fails reading it).
		r = kh(t, nil, "", c.loginArgs(h, "dave", "--relogin")...)
		oneLine(t, r, "reading the password from standard input")
		editProfile(t, profile, func(p map[string]any) { p["session_expires"] = time.Now().Add(-time.Second).Format(time.RFC3339) })
		r = kh(t, nil, "", c.loginArgs(h, "dave")...)
		oneLine(t, r, "reading the password from standard input")
		if strings.Contains(r.stderr, "Reusing") {
			t.Errorf("login tried a sign-in that had ended by the clock:\n%s", r.stderr)
		}
	})
}

func editProfile(t *testing.T, path string, edit func(map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	edit(p)
	if b, err = json.Marshal(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Logout works while the CA is down: the agent entry and the files go,
// and it says that the sign-in could not be ended (exit 1).
func TestLogoutUnreachable(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	secret := c.addUser(t, "erin", "erin")
	ag := testbin.StartAgent(t)
	home := filepath.Join(t.TempDir(), ".teleport")
	env := map[string]string{"SSH_AUTH_SOCK": ag.Socket}
	mustOK(t, kh(t, env, credentials(t, "erin", secret, time.Now()), c.loginArgs(home, "erin")...), "login")
	if code := c.ca.Stop(); code != 0 {
		t.Fatalf("teleport-ca exit %d", code)
	}
	r := kh(t, env, "", "logout", "--home", home)
	if r.code != 1 || !strings.Contains(r.stderr, "could not end the sign-in on the CA (cannot reach") ||
		!strings.Contains(r.stderr, "the local state is removed") || !strings.Contains(r.stdout, "Logged out of "+c.addr) {
		t.Errorf("logout with the CA down: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if got := c.agentCerts(t, ag); len(got) != 0 {
		t.Errorf("the agent still holds %d certificates of the cluster", len(got))
	}
	if _, err := os.Stat(c.stateDir(home)); !os.IsNotExist(err) {
		t.Errorf("the cluster's files are still there (%v)", err)
	}
}

// With a proxy, the block jumps through it and defaults the host pattern
// to the proxy's domain; config prints the login's block again, and the
// real ssh resolves the written file.
func TestConfigWithProxy(t *testing.T) {
	t.Parallel()
	c := startCluster(t, "--proxy-addr", "bastion.prod.example.com:3023")
	if info, err := c.ca.Admin().AdminCA(context.Background()); err != nil || info.ProxyAddr == "" {
		t.Skipf("teleport-ca --proxy-addr did not reach CAInfo.ProxyAddr (%v): cmd/teleport-ca/run.go does not pass "+
			"the flag into ca.Config.ProxyAddr; this test runs once it does", err)
	}
	secret := c.addUser(t, "frank", "frank")
	home := filepath.Join(t.TempDir(), ".teleport")
	r := kh(t, nil, credentials(t, "frank", secret, time.Now()), c.loginArgs(home, "frank")...)
	mustOK(t, r, "login")
	for _, want := range []string{"Host bastion.prod.example.com\n    Port 3023\n    User frank\n",
		"Host *.prod.example.com !bastion.prod.example.com\n    ProxyJump frank@bastion.prod.example.com:3023\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("login's block lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "SSH_AUTH_SOCK is not set") || !strings.Contains(r.stderr, `eval "$(ssh-agent)"`) {
		t.Errorf("login without an agent did not say how to start one:\n%s", r.stderr)
	}
	cfg := kh(t, nil, "", "config", "--home", home)
	mustOK(t, cfg, "config")
	if cfg.stdout != r.stdout {
		t.Errorf("config printed\n%s\nlogin printed\n%s", cfg.stdout, r.stdout)
	}
	written, _ := os.ReadFile(filepath.Join(c.stateDir(home), "ssh_config"))
	if string(written) != r.stdout {
		t.Errorf("ssh_config file differs from the printed block")
	}
	if other := kh(t, nil, "", "config", "--home", home, "--hosts", "10.9.*"); !strings.Contains(other.stdout, "Host 10.9.* !bastion.prod.example.com\n") {
		t.Errorf("config --hosts:\n%s", other.stdout)
	}
	if again := kh(t, nil, "", "config", "--home", home); again.stdout != r.stdout {
		t.Error("config --hosts changed what config prints later")
	}
	if _, err := exec.LookPath("ssh"); err == nil {
		out, err := exec.Command("ssh", "-G", "-T", "-F", filepath.Join(c.stateDir(home), "ssh_config"), "node7.prod.example.com").Output()
		if err != nil || !strings.Contains(string(out), "\nproxyjump frank@bastion.prod.example.com:3023\n") {
			t.Errorf("ssh -G on the written file: %v\n%s", err, out)
		}
	}
	if st := kh(t, nil, "", "status", "--home", home); !strings.Contains(st.stdout, "Proxy:        bastion.prod.example.com:3023") ||
		!strings.Contains(st.stdout, "ssh-agent:    none ($SSH_AUTH_SOCK is not set)") {
		t.Errorf("status:\n%s", st.stdout)
	}
}

// The built binary: flags come from TELEPORT_* (a flag beats its
// variable), and the credentials from standard input.
func TestBinaryEnvironment(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, "github.com/opensshca/suite/cmd/teleport-keyhelper")["teleport-keyhelper"]
	c := startCluster(t)
	secret := c.addUser(t, "gina", "gina")
	home := filepath.Join(t.TempDir(), ".teleport")
	cmd := exec.Command(bin, "login", "--home", home)
	cmd.Env = append(testbin.Environ(), "TELEPORT_SERVER="+c.ca.URL(), "TELEPORT_USER=gina", "TELEPORT_CA_PIN="+c.ca.Pin,
		"TELEPORT_HOME=/nonexistent/flag/wins", "TELEPORT_HOSTS=*.gina.example.com", "SSH_AUTH_SOCK=")
	cmd.Stdin = strings.NewReader(credentials(t, "gina", secret, time.Now()))
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		errors.As(err, &ee)
		t.Fatalf("login: %v\n%s", err, ee.Stderr)
	}
	if !strings.Contains(string(out), "Host *.gina.example.com\n") {
		t.Errorf("TELEPORT_HOSTS not used:\n%s", out)
	}
	st := exec.Command(bin, "status")
	st.Env = append(testbin.Environ(), "TELEPORT_HOME="+home)
	if out, err := st.CombinedOutput(); err != nil || !strings.Contains(string(out), "User:         gina") {
		t.Errorf("status with TELEPORT_HOME: %v\n%s", err, out)
	}
}
