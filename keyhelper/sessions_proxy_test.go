package keyhelper

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/testbin"
)

// startProxy joins and starts a real teleport-proxy for c on a loopback
// port and returns its address, which is also its public address: the
// host of its host certificate, and what the CA reports to logins.
func (c *cluster) startProxy(t *testing.T) string {
	t.Helper()
	bin := testbin.Build(t, testbin.Proxy)["teleport-proxy"]
	tok, err := c.ca.Admin().AddToken(context.Background(), api.AddTokenRequest{Role: "proxy"})
	if err != nil {
		t.Fatal(err)
	}
	addr, tunnel := testbin.FreePort(t), testbin.FreePort(t)
	log := new(testbin.Buffer)
	cmd := exec.Command(bin, "--data-dir", filepath.Join(testbin.ShortTempDir(t), "proxy"), "--listen", addr,
		"--tunnel-listen", tunnel, "--public-addr", addr, "--server", c.ca.URL(), "--token", tok.Secret,
		"--ca-pin", c.ca.Pin, "--name", "proxy1", "--log-level", "debug")
	cmd.Env = testbin.Environ()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("teleport-proxy log:\n%s", log)
		}
	})
	eventually(t, 20*time.Second, "teleport-proxy listening", func() bool {
		select {
		case <-done:
			t.Fatalf("teleport-proxy exited:\n%s", log)
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	return addr
}

// Against the real teleport-ca and teleport-proxy: a login learns the
// proxy's address, ListSessions verifies the proxy's host certificate and
// gets the (empty) list, and the real ssh with the login's ssh_config
// block reaches the proxy directly and in the one-hop form, with the
// login and the target in the user name.
func TestSessionsWithRealProxy(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testbin.Config{})
	secret := c.addUser(t, "alice")
	proxyAddr := c.startProxy(t)
	home := newHome(t)
	res, err := Login(context.Background(), LoginConfig{
		Home: home, Server: c.server, User: "alice", Pin: c.ca.Pin,
		Credentials: func(context.Context) (Credentials, error) {
			return Credentials{Password: testPassword("alice"), Code: totp(t, secret, time.Now())}, nil
		},
	})
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if res.Profile.ProxyAddr != proxyAddr {
		t.Fatalf("the login learned proxy %q, want %q", res.Profile.ProxyAddr, proxyAddr)
	}
	list, err := ListSessions(context.Background(), SessionsConfig{Home: home, Server: c.server})
	if err != nil {
		t.Fatalf("ListSessions: %v (%s)", err, Describe(err))
	}
	if list == nil || len(list) != 0 {
		t.Errorf("ListSessions = %v, want an empty list", list)
	}

	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("ssh not installed; .ci/run installs openssh-client")
	}
	host, _, _ := net.SplitHostPort(proxyAddr)
	ssh := func(args ...string) (string, error) {
		cmd := exec.Command("ssh", append([]string{"-F", res.Profile.SSHConfigFile(), "-o", "BatchMode=yes",
			"-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10"}, args...)...)
		cmd.Env = append(testbin.Environ(), "SSH_AUTH_SOCK=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := ssh(host, "sessions", "--json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("ssh %s sessions --json: %v\n%s", host, err, out)
	}
	// One hop: the proxy takes the user name apart and routes to the
	// target, and says so when there is no such node.
	if out, err := ssh("alice@node9@"+host, "true"); err == nil || !strings.Contains(out, `no node "node9" is registered`) {
		t.Errorf("ssh alice@node9@%s: %v\n%s", host, err, out)
	}
}
