package storetest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Launch starts an etcd outside of a test, for programs such as the
// benchmarks (bench/cmd/cabench): one member on free loopback ports, its
// data in a new directory under dir, and waits until it serves requests.
// The caller must Close it. A missing etcd binary is an error that says
// what to install. STORE_SKIP_ETCD is not consulted.
func Launch(dir string, cfg EtcdConfig) (*Etcd, error) {
	if err := etcdAvailable(EtcdBinary); err != nil {
		return nil, err
	}
	e, err := startEtcd(dir, cfg)
	if err != nil {
		if e != nil {
			e.Close()
		}
		return nil, err
	}
	return e, nil
}

// Close kills the server and removes its data directory.
func (e *Etcd) Close() {
	e.Kill()
	_ = os.RemoveAll(e.DataDir)
}

// Pid returns the process id of the running server, or 0 if it was never
// started.
func (e *Etcd) Pid() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd == nil || e.cmd.Process == nil {
		return 0
	}
	return e.cmd.Process.Pid
}

// Version returns the first line of "etcd --version" of EtcdBinary, such
// as "etcd Version: 3.4.23".
func Version() (string, error) {
	out, err := exec.Command(EtcdBinary, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("storetest: %s --version: %w", EtcdBinary, err)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return first, nil
}
