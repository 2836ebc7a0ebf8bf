package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdBinary is where Debian's etcd-server package installs the server.
const EtcdBinary = "/usr/bin/etcd"

// SkipEtcdEnv names the environment variable that, set to 1, skips the
// tests that need a real etcd instead of failing them.
const SkipEtcdEnv = "STORE_SKIP_ETCD"

// etcdReadyTimeout bounds how long StartEtcd waits for the server to answer.
const etcdReadyTimeout = 20 * time.Second

// RequireEtcd fails the test if the etcd server binary is missing, with the
// package to install, unless STORE_SKIP_ETCD=1 asks to skip it.
func RequireEtcd(t testing.TB) {
	t.Helper()
	if os.Getenv(SkipEtcdEnv) == "1" {
		t.Skipf("%s=1: skipping a test that needs a real etcd", SkipEtcdEnv)
	}
	if err := etcdAvailable(EtcdBinary); err != nil {
		t.Fatal(err)
	}
}

// etcdAvailable returns an error saying what to install if there is no
// etcd binary at path.
func etcdAvailable(path string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("storetest: the etcd tests run a real etcd server, and %s is missing (%v): install it with apt-get install etcd-server (CI does), or set %s=1 to skip them", path, err, SkipEtcdEnv)
	}
	return nil
}

// EtcdConfig says how to start an etcd. The zero value is a plain-TCP
// server on a new data dir.
type EtcdConfig struct {
	// PKI, if set, makes the server speak TLS to clients with
	// PKI.ServerCert, trusting PKI.CAFile, and require a client
	// certificate signed by it (--client-cert-auth).
	PKI *PKI
}

// Etcd is an etcd server process a test started, with one member on
// loopback ports and its data in a temporary directory.
type Etcd struct {
	// Endpoint is the client URL: "http://127.0.0.1:PORT", or https:// with
	// a PKI.
	Endpoint string
	DataDir  string
	PKI      *PKI

	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer // the current process's output
	logs []string      // output of the processes before it
}

// StartEtcd starts an etcd for the test: on free loopback ports, with its
// data in a new directory under t.TempDir(), and waits until it serves
// requests. It is killed when the test ends; its output is logged if the
// test failed. A missing etcd binary fails the test (see RequireEtcd).
func StartEtcd(t testing.TB, cfg EtcdConfig) *Etcd {
	t.Helper()
	RequireEtcd(t)
	e, err := startEtcd(t.TempDir(), cfg)
	if e != nil {
		t.Cleanup(func() {
			e.Kill()
			if t.Failed() {
				t.Logf("etcd output:\n%s", e.Output())
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// startEtcd starts an etcd with its data under dir. A port another process
// took between being chosen and being bound fails the start; it is tried
// again on other ports.
func startEtcd(dir string, cfg EtcdConfig) (*Etcd, error) {
	var err error
	for range 3 {
		var e *Etcd
		e, err = newEtcd(dir, cfg)
		if err != nil {
			return nil, err
		}
		if err = e.start(); err == nil {
			return e, nil
		}
		e.Kill()
		if !strings.Contains(err.Error(), "address already in use") {
			return e, err
		}
		os.RemoveAll(e.DataDir)
	}
	return nil, err
}

func newEtcd(dir string, cfg EtcdConfig) (*Etcd, error) {
	client, peer := freePort(), freePort()
	if client == "" || peer == "" {
		return nil, errors.New("storetest: no free loopback port")
	}
	dataDir, err := os.MkdirTemp(dir, "etcd-")
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if cfg.PKI != nil {
		scheme = "https"
	}
	e := &Etcd{Endpoint: scheme + "://" + client, DataDir: dataDir, PKI: cfg.PKI}
	peerURL := "http://" + peer
	e.args = []string{
		"--name", "test",
		"--data-dir", filepath.Join(dataDir, "member-data"),
		"--listen-client-urls", e.Endpoint,
		"--advertise-client-urls", e.Endpoint,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "test=" + peerURL,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", filepath.Base(dataDir),
		// A single member elects itself after one election timeout.
		"--heartbeat-interval", "50",
		"--election-timeout", "250",
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
	}
	if p := cfg.PKI; p != nil {
		e.args = append(e.args,
			"--cert-file", p.ServerCert, "--key-file", p.ServerKey,
			"--trusted-ca-file", p.CAFile, "--client-cert-auth")
	}
	return e, nil
}

// freePort returns "127.0.0.1:PORT" for a port that was free a moment ago.
func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return ""
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs the server process and waits until it answers.
func (e *Etcd) start() error {
	cmd := exec.Command(EtcdBinary, e.args...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	// The server must not outlive a test binary that crashes.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	log := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = &lockedWriter{mu: &e.mu, w: log}, &lockedWriter{mu: &e.mu, w: log}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("storetest: starting %s: %w", EtcdBinary, err)
	}
	done := make(chan struct{})
	e.mu.Lock()
	e.cmd, e.done, e.log = cmd, done, log
	e.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	return e.waitReady(done)
}

// waitReady polls the server with a read until it answers.
func (e *Etcd) waitReady(done <-chan struct{}) error {
	cli, err := e.newClient(time.Second)
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(etcdReadyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("storetest: etcd exited before serving requests:\n%s", e.currentLog())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("storetest: etcd at %s did not answer within %v (last error: %v):\n%s", e.Endpoint, etcdReadyTimeout, err, e.currentLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Client returns a client of the server with full rights (the client
// certificate of its PKI, if any), closed when the test ends. Tests use it
// to act on the server behind a store's back: compact, enable auth.
func (e *Etcd) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := e.newClient(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func (e *Etcd) newClient(dialTimeout time.Duration) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   []string{e.Endpoint},
		DialTimeout: dialTimeout,
		Logger:      zap.NewNop(),
	}
	if e.PKI != nil {
		tc, err := e.PKI.ClientTLS()
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("storetest: etcd client: %w", err)
	}
	return cli, nil
}

// Kill kills the server (SIGKILL, as a crash would) and waits for it to
// exit. Killing a stopped server does nothing.
func (e *Etcd) Kill() {
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart kills the server and starts it again on the same data dir and
// ports, waiting until it answers.
func (e *Etcd) Restart(t testing.TB) {
	t.Helper()
	e.Kill()
	e.mu.Lock()
	e.logs = append(e.logs, e.log.String())
	e.mu.Unlock()
	if err := e.start(); err != nil {
		t.Fatal(err)
	}
}

// Output returns what the server processes wrote, oldest first.
func (e *Etcd) Output() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	all := append([]string(nil), e.logs...)
	if e.log != nil {
		all = append(all, e.log.String())
	}
	return strings.Join(all, "\n--- restarted ---\n")
}

func (e *Etcd) currentLog() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.log.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

var shared struct {
	once sync.Once
	dir  string
	etcd *Etcd
	err  error
}

// SharedEtcd returns the etcd shared by the tests of this test binary,
// starting it on first use. Tests that use it must not run in parallel with
// each other when they count revisions, which are the whole server's; each
// takes its own key prefix (Prefix). Call StopSharedEtcd from TestMain after
// m.Run.
func SharedEtcd(t testing.TB) *Etcd {
	t.Helper()
	RequireEtcd(t)
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "storetest-etcd-")
		if shared.err == nil {
			shared.etcd, shared.err = startEtcd(shared.dir, EtcdConfig{})
		}
	})
	if shared.err != nil {
		if shared.etcd != nil {
			t.Logf("etcd output:\n%s", shared.etcd.Output())
		}
		t.Fatal(shared.err)
	}
	return shared.etcd
}

// StopSharedEtcd kills the shared etcd, if one was started, and removes its
// data.
func StopSharedEtcd() {
	if shared.etcd != nil {
		shared.etcd.Kill()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

var prefixes struct {
	mu sync.Mutex
	n  int
}

// Prefix returns a key prefix no other test of this process uses, such as
// "/test/TestEtcdAuth/3/".
func Prefix(t testing.TB) string {
	prefixes.mu.Lock()
	defer prefixes.mu.Unlock()
	prefixes.n++
	return fmt.Sprintf("/test/%s/%d/", t.Name(), prefixes.n)
}
