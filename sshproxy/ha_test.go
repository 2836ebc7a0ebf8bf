package sshproxy_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store/storetest"
	"github.com/opensshca/suite/internal/testbin"
)

// Two CA replicas on one etcd behind a TCP balancer, two proxies behind
// another, one node holding a tunnel to each proxy. Users log in through
// the proxies' balancer without pause while one replica and then one
// proxy are killed with SIGKILL: no login fails after the client retries
// once.
func TestReplicasAndProxiesFailover(t *testing.T) {
	requireOpenSSH(t)
	etcd := storetest.StartEtcd(t, storetest.EtcdConfig{})
	keyFile := filepath.Join(t.TempDir(), "ca.key")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	replicaArgs := []string{"--storage", "etcd", "--etcd-endpoints", etcd.Endpoint, "--etcd-prefix", "/ha/",
		"--key-file", keyFile, "--recordings-dir", t.TempDir()}
	caA := testbin.StartCA(t, replicaArgs...)
	caB := testbin.StartCA(t, replicaArgs...)
	if caA.Pin != caB.Pin {
		t.Fatalf("the replicas have different TLS roots: %s and %s", caA.Pin, caB.Pin)
	}
	caLB := testbin.StartBalancer(t, caA.Listen, caB.Listen)

	c := newClusterWith(t, caA)
	c.caURL = "https://" + caLB.Addr
	p1 := c.withProxy("proxy1")
	p2 := c.withProxy("proxy2")
	proxyLB := testbin.StartBalancer(t, p1.proxyAddr, p2.proxyAddr)
	p1.publicAddr, p2.publicAddr = proxyLB.Addr, proxyLB.Addr

	c.caadm("roles", "add", "prod-root", "--logins", "root", "--labels", "env=prod")
	if _, err := caA.Admin().AddUser(context.Background(), api.AddUserRequest{Name: "alice", Roles: []string{"prod-root"}, Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	p1.startProxy()
	p2.startProxy()
	node := c.startNode("node1", map[string]string{"env": "prod"})
	users := c.withProxy("view") // ssh_config points at the proxies' balancer
	users.proxyAddr = proxyLB.Addr
	alice := users.user("alice")
	// Both proxies reach the node (each balancer connection goes to the
	// next proxy in turn).
	waitTunnel(t, alice, "root", node, 30*time.Second)
	eventually(t, 30*time.Second, "node1 reachable through both proxies", func() bool {
		for range 4 {
			if _, code := alice.run(t, nil, "ssh", "root@node1", "true"); code != 0 {
				return false
			}
		}
		return true
	})

	var (
		logins, retried, failed atomic.Int64
		mu                      sync.Mutex
		failures                []string
	)
	login := func(i int) {
		marker := fmt.Sprintf("login-%d-ok", i)
		for attempt := 0; attempt < 2; attempt++ {
			out, code := alice.run(t, nil, "ssh", "root@node1", "echo "+marker)
			if code == 0 && strings.Contains(out, marker) {
				logins.Add(1)
				return
			}
			if attempt == 0 {
				retried.Add(1)
				continue
			}
			failed.Add(1)
			mu.Lock()
			failures = append(failures, fmt.Sprintf("login %d: exit %d: %s", i, code, out))
			mu.Unlock()
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var seq atomic.Int64
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				login(int(seq.Add(1)))
			}
		})
	}
	time.Sleep(3 * time.Second)
	caA.Kill()
	c.ca = caB // admin work from here on goes to the surviving replica
	t.Log("replica A killed")
	time.Sleep(4 * time.Second)
	p1.stopProxy(syscall.SIGKILL)
	t.Log("proxy1 killed")
	time.Sleep(6 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d logins, %d needed a retry, %d failed after the retry", logins.Load(), retried.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("logins failed after one retry:\n%s", strings.Join(failures, "\n"))
	}
	if logins.Load() < 20 {
		t.Fatalf("only %d logins in 13 s", logins.Load())
	}

	// The surviving replica serves the cluster: a change through it
	// reaches the proxy, and certificates it issues work.
	c.caadm("users", "lock", "alice")
	eventually(t, 20*time.Second, "alice locked out through proxy2", func() bool {
		_, code := alice.run(t, nil, "ssh", "root@node1", "true")
		return code != 0
	})
	if out := c.caadm("audit", "ls", "--type", "session.start"); !strings.Contains(out, "proxy:proxy2") {
		t.Errorf("replica B has no session events from proxy2:\n%s", out)
	}
}
