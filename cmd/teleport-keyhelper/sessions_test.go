package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/testbin"
)

// startProxy joins and starts a real teleport-proxy for c on a loopback
// port (also its public address) and returns that address.
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
		"--ca-pin", c.ca.Pin, "--name", "proxy1")
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
	for deadline := time.Now().Add(20 * time.Second); ; {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return addr
		}
		select {
		case <-done:
			t.Fatalf("teleport-proxy exited:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("teleport-proxy does not listen on %s:\n%s", addr, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sessions asks the real teleport-proxy the login learned about: the
// table, the JSON, and a clear message once the proxy is gone.
func TestSessionsCommand(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	secret := c.addUser(t, "hana", "hana")
	c.startProxy(t)
	home := filepath.Join(t.TempDir(), ".teleport")
	mustOK(t, kh(t, nil, credentials(t, "hana", secret, time.Now()), c.loginArgs(home, "hana")...), "login")

	r := kh(t, nil, "", "sessions", "--home", home)
	mustOK(t, r, "sessions")
	if r.stdout != "No active sessions on the nodes you may log in to.\n" {
		t.Errorf("sessions printed %q", r.stdout)
	}
	r = kh(t, nil, "", "sessions", "--home", home, "--server", c.ca.URL(), "--json")
	mustOK(t, r, "sessions --json")
	var list []api.Session
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || list == nil || len(list) != 0 {
		t.Errorf("sessions --json printed %q (%v); want []", r.stdout, err)
	}

	// The profile names a proxy that is not there (any more).
	gone := testbin.FreePort(t)
	editProfile(t, filepath.Join(c.stateDir(home), "profile.json"), func(p map[string]any) { p["proxy_addr"] = gone })
	r = kh(t, nil, "", "sessions", "--home", home)
	if r.code != 1 || !strings.Contains(r.stderr, "cannot reach the proxy at "+gone+": connection refused") {
		t.Errorf("proxy gone: exit %d, stderr %q", r.code, r.stderr)
	}
	editProfile(t, filepath.Join(c.stateDir(home), "profile.json"), func(p map[string]any) { delete(p, "proxy_addr") })
	r = kh(t, nil, "", "sessions", "--home", home)
	if r.code != 1 || !strings.Contains(r.stderr, "no proxy is known for this cluster") {
		t.Errorf("no proxy: exit %d, stderr %q", r.code, r.stderr)
	}
}

// With several clusters, --json needs --server, and each cluster's
// failure is reported under its name while the others go on.
func TestSessionsSeveralClusters(t *testing.T) {
	t.Parallel()
	home := filepath.Join(t.TempDir(), ".teleport")
	for _, name := range []string{"a.example.com_3080", "b.example.com_3080"} {
		dir := filepath.Join(home, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(home, 0o700); err != nil {
			t.Fatal(err)
		}
		host := strings.TrimSuffix(name, "_3080")
		profile := `{"version": 1, "server": "https://` + host + `:3080", "user": "alice", "cert_file": "` + filepath.Join(dir, "key-cert.pub") + `"}`
		if err := os.WriteFile(filepath.Join(dir, "profile.json"), []byte(profile), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := kh(t, nil, "", "sessions", "--home", home, "--json")
	if r.code != 2 || !strings.Contains(r.stderr, "--json needs --server: you are logged in to 2 clusters") {
		t.Errorf("--json with two clusters: exit %d, stderr %q", r.code, r.stderr)
	}
	r = kh(t, nil, "", "sessions", "--home", home)
	if r.code != 1 || r.stdout != "Cluster a.example.com:3080:\n\nCluster b.example.com:3080:\n" ||
		strings.Count(r.stderr, "not logged in") != 2 || !strings.Contains(r.stderr, "teleport-keyhelper: b.example.com:3080: not logged in") {
		t.Errorf("two clusters without certificates: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
}
