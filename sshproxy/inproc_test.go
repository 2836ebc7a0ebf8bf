package sshproxy_test

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opensshca/suite/ca"
	"github.com/opensshca/suite/internal/testbin"
	"github.com/opensshca/suite/sshproxy"
)

// skewClock is the real clock moved by an offset a test may change: the
// CA and the proxy run in-process on such clocks, while sshd and ssh on
// the other side keep the real one, so the skew between them is genuine.
type skewClock struct{ off atomic.Int64 }

func (c *skewClock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

func (c *skewClock) set(d time.Duration) { c.off.Store(int64(d)) }

// inprocCluster is a cluster whose CA and proxy run in this process, on
// skewable clocks and with the timeouts a test chooses. The embedded
// cluster's helpers (token, startNode, user, caadm) work on it unchanged:
// its testbin.CA value carries only the in-process CA's addresses.
type inprocCluster struct {
	*cluster
	caClock, proxyClock *skewClock
	authority           *ca.Authority
	proxy               *sshproxy.Proxy
	proxyLogs           *testbin.Buffer
}

// newInprocCluster starts a CA (recording mode proxy) and a proxy joined
// to it in-process; edit may change the proxy's configuration first.
func newInprocCluster(t *testing.T, srv ca.ServerConfig, edit func(*sshproxy.Config)) *inprocCluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the proxy tests run sshd and need root; CI runs them as root")
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("ssh not installed; .ci/run installs openssh-client")
	}
	bins := testbin.Build(t, testbin.Node, testbin.Authkeys, testbin.Caadm)
	c := &cluster{
		t: t, bins: bins,
		authkeys: testbin.RootOnlyCopy(t, bins["teleport-authkeys"]),
		proxyDir: filepath.Join(testbin.ShortTempDir(t), "proxy"),
	}
	ic := &inprocCluster{cluster: c, caClock: new(skewClock), proxyClock: new(skewClock), proxyLogs: new(testbin.Buffer)}
	ic.startCA(srv)
	ic.startProxy(edit)
	return ic
}

func (ic *inprocCluster) startCA(srv ca.ServerConfig) {
	t := ic.t
	t.Helper()
	a, err := ca.New(ca.Config{
		DataDir: filepath.Join(t.TempDir(), "ca"), Clock: ic.caClock.Now,
		Argon2:    ca.Argon2Params{Time: 1, MemoryKiB: 8192, Threads: 1},
		PublicURL: "https://127.0.0.1:3080",
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(testbin.ShortTempDir(t), "admin.sock")
	adm, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener, srv.AdminListener = ln, adm
	s, err := ca.NewServer(a, srv)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("CA Serve: %v", err)
		}
		a.Close()
	})
	ic.authority = a
	ic.ca = &testbin.CA{DataDir: "", Listen: ln.Addr().String(), AdminSocket: sock, Pin: a.Pin()}
	info, err := ic.ca.Admin().AdminCA(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ic.hostCA = info.HostCA
}

func (ic *inprocCluster) startProxy(edit func(*sshproxy.Config)) {
	t := ic.t
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ic.proxyAddr, ic.tunAddr = ln.Addr().String(), tln.Addr().String()
	cfg := sshproxy.Config{
		DataDir:  ic.proxyDir,
		Join:     sshproxy.JoinOptions{Server: ic.ca.URL(), Token: ic.token("proxy", nil), Pin: ic.ca.Pin, Name: "proxy1"},
		Listener: ln, TunnelListener: tln, PublicAddr: ic.proxyAddr,
		PolicyWait: time.Second, ReportInterval: time.Second,
		Logger: slog.New(slog.NewTextHandler(ic.proxyLogs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Clock:  ic.proxyClock.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := sshproxy.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("proxy Run: %v", err)
		}
		if t.Failed() {
			t.Logf("teleport-proxy (in-process) log:\n%s", ic.proxyLogs)
		}
	})
	ic.proxy = p
	eventually(t, 15*time.Second, "the in-process proxy serving", func() bool {
		conn, err := net.DialTimeout("tcp", ic.proxyAddr, time.Second)
		if err != nil {
			return false
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		return strings.HasPrefix(line, "SSH-2.0-")
	})
}
