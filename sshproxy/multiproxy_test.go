package sshproxy_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/testbin"
)

// withProxy returns a view of the cluster for another proxy: same CA,
// binaries and nodes, its own data directory, addresses and name.
func (c *cluster) withProxy(name string) *cluster {
	c2 := *c
	c2.proxyName = name
	c2.proxyDir = filepath.Join(testbin.ShortTempDir(c.t), "proxy")
	c2.proxyAddr, c2.tunAddr = testbin.FreePort(c.t), testbin.FreePort(c.t)
	c2.proxy, c2.proxyLog, c2.proxyDone = nil, nil, nil
	return &c2
}

// Two proxies: a node holds a tunnel to each proxy the CA lists,
// including one that joins after the node started; a user reaches the
// node through either; with one proxy killed, a session through the
// other goes on and new ones start.
func TestTwoProxies(t *testing.T) {
	c := newCluster(t)
	c.caadm("roles", "add", "prod-root", "--logins", "root", "--labels", "env=prod")
	if _, err := c.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: "alice", Roles: []string{"prod-root"}, Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	c.startProxy()
	node := c.startNode("node1", map[string]string{"env": "prod"})
	via1 := c.user("alice")
	waitTunnel(t, via1, "root", node, 20*time.Second)

	c2 := c.withProxy("proxy2")
	c2.startProxy()
	via2 := c2.user("alice")
	took := waitTunnel(t, via2, "root", node, 30*time.Second)
	t.Logf("node1 picked up proxy2, which joined after it, in %v", took)
	if out := c.caadm("proxies", "ls"); !strings.Contains(out, "proxy1") || !strings.Contains(out, "proxy2") {
		t.Fatalf("caadm proxies ls:\n%s", out)
	}
	for i, u := range []user{via1, via2} {
		if out, code := u.run(t, nil, "ssh", "root@node1", fmt.Sprintf("echo via-proxy%d", i+1)); code != 0 || !strings.Contains(out, fmt.Sprintf("via-proxy%d", i+1)) {
			t.Fatalf("through proxy%d: exit %d\n%s", i+1, code, out)
		}
	}

	// A session through proxy2 while proxy1 is killed.
	cmd := exec.Command("ssh", "-F", via2.config, "-tt", "root@node1")
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
	fmt.Fprintf(in, "echo before-$((1+1))\n")
	eventually(t, 10*time.Second, "the session through proxy2 to answer", func() bool { return strings.Contains(out.String(), "before-2") })
	c.stopProxy(syscall.SIGKILL)
	fmt.Fprintf(in, "echo after-$((2+3))\nexit\n")
	in.Close()
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "after-5") {
		t.Fatalf("the session through proxy2 after proxy1 was killed: %v\n%s", err, out)
	}
	if out, code := via2.run(t, nil, "ssh", "root@node1", "echo new-via-proxy2"); code != 0 || !strings.Contains(out, "new-via-proxy2") {
		t.Fatalf("a new session through proxy2 with proxy1 down: exit %d\n%s", code, out)
	}
	if _, code := via1.run(t, nil, "ssh", "-o", "ConnectTimeout=3", "root@node1", "true"); code == 0 {
		t.Fatal("a login through the killed proxy1 succeeded")
	}
}

// cpuTime is the user+system CPU time a process has used so far.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	// Fields after the command name (which is in parentheses): utime and
	// stime are the 14th and 15th fields of the line, in clock ticks.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// While the CA is down the proxy and the node neither exit nor spin:
// they back off (policy polls, renewals, spool, audit queue, tunnels
// stay up), and come back when it returns.
func TestCADownNoSpin(t *testing.T) {
	c := newCluster(t)
	c.caadm("roles", "add", "prod-root", "--logins", "root", "--labels", "env=prod")
	if _, err := c.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: "alice", Roles: []string{"prod-root"}, Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	c.startProxy()
	node := c.startNode("node1", map[string]string{"env": "prod"})
	alice := c.user("alice")
	waitTunnel(t, alice, "root", node, 20*time.Second)

	dataDir, listen, sock := c.ca.DataDir, c.ca.Listen, c.ca.AdminSocket
	c.ca.Stop()
	time.Sleep(2 * time.Second) // let the first retries happen
	p0, n0 := cpuTime(t, c.proxy.Process.Pid), cpuTime(t, node.run.Process.Pid)
	const window = 20 * time.Second
	time.Sleep(window)
	p1, n1 := cpuTime(t, c.proxy.Process.Pid), cpuTime(t, node.run.Process.Pid)
	t.Logf("CPU used in %v with the CA down: teleport-proxy %v, teleport-node %v", window, p1-p0, n1-n0)
	// An idle daemon uses a few ms here; a retry loop without backoff
	// uses whole seconds. The bound leaves room for a loaded machine.
	for name, used := range map[string]time.Duration{"teleport-proxy": p1 - p0, "teleport-node": n1 - n0} {
		if used > 2*time.Second {
			t.Errorf("%s used %v of CPU in %v while the CA was down: it spins", name, used, window)
		}
	}
	select {
	case <-c.proxyDone:
		t.Fatal("teleport-proxy exited while the CA was down")
	default:
	}
	if out, code := alice.run(t, nil, "ssh", "root@node1", "echo during-outage"); code != 0 || !strings.Contains(out, "during-outage") {
		t.Fatalf("a session while the CA is down: exit %d\n%s", code, out)
	}
	c.ca = testbin.Start(c.t, testbin.Config{DataDir: dataDir, Listen: listen, AdminSocket: sock})
	eventually(t, 40*time.Second, "the proxy's events of the outage at the CA", func() bool {
		return strings.Contains(c.caadm("audit", "ls", "--type", "session.cert"), "signer=proxy")
	})
}
