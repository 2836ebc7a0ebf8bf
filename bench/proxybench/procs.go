package proxybench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Import paths of the programs the bench runs.
const (
	pkgCA       = "github.com/opensshca/suite/cmd/teleport-ca"
	pkgNode     = "github.com/opensshca/suite/cmd/teleport-node"
	pkgAuthkeys = "github.com/opensshca/suite/cmd/teleport-authkeys"
	pkgProxy    = "github.com/opensshca/suite/cmd/teleport-proxy"
	// pkgProfProxy is teleport-proxy's twin with CPU and heap profiles
	// (bench/cmd/proxybench/profproxy), used with Options.ProfileDir.
	pkgProfProxy = "github.com/opensshca/suite/bench/cmd/proxybench/profproxy"
)

// Binaries are the suite's programs the bench starts.
type Binaries struct {
	CA, Node, Authkeys, Proxy string
	// ProfProxy is the profiling twin of Proxy; empty unless built with
	// profiling.
	ProfProxy string
}

// Build compiles the programs into dir with "go build" (one invocation,
// so the build cache is shared) and returns their paths. With profile it
// also builds the profiling twin of teleport-proxy.
func Build(dir string, profile bool) (Binaries, error) {
	pkgs := []string{pkgCA, pkgNode, pkgAuthkeys, pkgProxy}
	if profile {
		pkgs = append(pkgs, pkgProfProxy)
	}
	cmd := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("proxybench: go build: %v\n%s", err, out)
	}
	bin := func(pkg string) string { return filepath.Join(dir, path.Base(pkg)) }
	b := Binaries{CA: bin(pkgCA), Node: bin(pkgNode), Authkeys: bin(pkgAuthkeys), Proxy: bin(pkgProxy)}
	if profile {
		b.ProfProxy = bin(pkgProfProxy)
	}
	return b, nil
}

// proc is a program the bench started. Its output goes to a buffer that
// keeps the last logKeep bytes, shown when something fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
}

// startProc starts bin with args and the bench's environment (without
// TELEPORT_* variables, SSH_AUTH_SOCK and systemd's NOTIFY_SOCKET) plus
// env.
func startProc(name string, env []string, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, cmd: exec.Command(bin, args...), out: &tailBuffer{}, done: make(chan struct{})}
	p.cmd.Env = append(environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("proxybench: starting %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to 10 s, then kills. Stopping a stopped
// process does nothing.
func (p *proc) stop() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// failure wraps err with the tail of the process's output.
func (p *proc) failure(err error) error {
	return fmt.Errorf("%w\n--- %s output (last lines) ---\n%s", err, p.name, p.out.String())
}

// logKeep is how much of a process's output a tailBuffer keeps.
const logKeep = 64 << 10

// tailBuffer keeps the last logKeep bytes written to it; it is safe for
// concurrent use.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - logKeep; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// environ is the bench's environment without what would change how the
// programs run: TELEPORT_* flags, systemd's variables, the user's agent.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "TELEPORT_"), strings.HasPrefix(name, "WATCHDOG_"),
			strings.HasPrefix(name, "LISTEN_"), name == "NOTIFY_SOCKET",
			name == "SSH_AUTH_SOCK", name == "SSH_AGENT_PID":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// freePorts returns n "127.0.0.1:PORT" addresses of loopback ports that
// were free a moment ago, all different.
func freePorts(n int) ([]string, error) {
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("proxybench: %w", err)
		}
		defer l.Close() // held until all are picked, so none repeats
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// waitFor calls check every 50 ms until it returns nil, p (if not nil)
// exits, or within has passed; the error names what was awaited and
// carries check's last error.
func waitFor(ctx context.Context, within time.Duration, what string, p *proc, check func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if p != nil && p.exited() {
			return p.failure(fmt.Errorf("proxybench: %s exited while waiting for %s: %v", p.name, what, err))
		}
		if time.Now().After(deadline) {
			err = fmt.Errorf("proxybench: %s: not within %v: %w", what, within, err)
			if p != nil {
				err = p.failure(err)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// sshBanner checks that an SSH server answers on addr.
func sshBanner(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("banner %q", line)
	}
	return nil
}

// rootOnlyDir makes a directory under /run owned by root with mode 0755
// all the way up: sshd runs AuthorizedPrincipalsCommand only from such a
// path (not from /tmp).
func rootOnlyDir() (string, error) {
	dir, err := os.MkdirTemp("/run", "proxybench-")
	if err != nil {
		return "", fmt.Errorf("proxybench: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("proxybench: %w", err)
	}
	return dir, nil
}

// copyExecutable copies the program src to dst with mode 0755.
func copyExecutable(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("proxybench: %w", err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		return fmt.Errorf("proxybench: %w", err)
	}
	return nil
}

// vmRSS returns the resident set size of process pid in bytes, from
// /proc/PID/status.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("proxybench: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				break
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("proxybench: no VmRSS line in /proc/PID/status")
}

// The helpers below are what bench/cmd/soak shares with the bench.

// Proc is a program started by StartProc.
type Proc = proc

// LogKeep is how much of a Proc's output is kept.
const LogKeep = logKeep

// StartProc starts bin with args and the bench's environment plus env;
// its output is kept (the last LogKeep bytes).
func StartProc(name string, env []string, bin string, args ...string) (*Proc, error) {
	return startProc(name, env, bin, args...)
}

// Pid is the process id.
func (p *proc) Pid() int { return p.pid() }

// Stop sends SIGTERM, waits up to 10 s, then kills.
func (p *proc) Stop() { p.stop() }

// Name is the name the process was started with.
func (p *proc) Name() string { return p.name }

// Output is the kept tail of the process's output.
func (p *proc) Output() string { return p.out.String() }

// Environ is the environment the bench gives its programs.
func Environ() []string { return environ() }

// FreePorts returns n loopback addresses that were free a moment ago.
func FreePorts(n int) ([]string, error) { return freePorts(n) }

// WaitFor calls check every 50 ms until it returns nil, p (if not nil)
// exits, or within has passed.
func WaitFor(ctx context.Context, within time.Duration, what string, p *Proc, check func() error) error {
	return waitFor(ctx, within, what, p, check)
}

// SSHBanner checks that an SSH server answers on addr.
func SSHBanner(addr string) error { return sshBanner(addr) }

// CopyExecutable copies the program src to dst with mode 0755.
func CopyExecutable(src, dst string) error { return copyExecutable(src, dst) }
