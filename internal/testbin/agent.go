package testbin

import (
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Agent is a running OpenSSH ssh-agent, started by StartAgent.
type Agent struct {
	// Socket is the agent's socket, the SSH_AUTH_SOCK to give clients.
	Socket string
	Cmd    *exec.Cmd
	// Stderr collects the agent's output (its debug log with -d).
	Stderr *Buffer
}

// StartAgent starts "ssh-agent -D -a SOCKET" on a socket in a new short
// temporary directory, with the test's environment (without
// SSH_AUTH_SOCK and SSH_AGENT_PID) plus env, such as SSH_ASKPASS for keys
// added with confirmation. It waits until the socket accepts connections
// and kills the agent when the test ends. The test is skipped if ssh-agent
// is not installed.
func StartAgent(t testing.TB, env ...string) *Agent {
	t.Helper()
	bin, err := exec.LookPath("ssh-agent")
	if err != nil {
		t.Skip("ssh-agent not installed; .ci/run installs openssh-client")
	}
	a := &Agent{Socket: filepath.Join(ShortTempDir(t), "agent.sock"), Stderr: new(Buffer)}
	a.Cmd = exec.Command(bin, "-D", "-a", a.Socket)
	a.Cmd.Env = append(withoutAgent(Environ()), env...)
	a.Cmd.Stdout, a.Cmd.Stderr = a.Stderr, a.Stderr
	if err := a.Cmd.Start(); err != nil {
		t.Fatalf("testbin: starting ssh-agent: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = a.Cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = a.Cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(ReadyTimeout)
	for {
		c, err := net.Dial("unix", a.Socket)
		if err == nil {
			c.Close()
			return a
		}
		select {
		case <-done:
			t.Fatalf("testbin: ssh-agent exited before its socket answered:\n%s", a.Stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("testbin: ssh-agent socket %s did not answer within %v: %v", a.Socket, ReadyTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Env returns the test's environment with SSH_AUTH_SOCK naming the agent.
func (a *Agent) Env() []string {
	return append(withoutAgent(Environ()), "SSH_AUTH_SOCK="+a.Socket)
}

// Command returns a command that runs with the agent as SSH_AUTH_SOCK.
func (a *Agent) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = a.Env()
	return cmd
}

// Keys returns the lines "ssh-add -L" prints for the agent's keys: one
// per key, "type base64 comment"; none when the agent is empty.
func (a *Agent) Keys(t testing.TB) []string {
	t.Helper()
	out, err := a.Command("ssh-add", "-L").CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 && strings.Contains(string(out), "no identities") {
		return nil
	}
	if err != nil {
		t.Fatalf("testbin: ssh-add -L: %v\n%s", err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// withoutAgent drops SSH_AUTH_SOCK and SSH_AGENT_PID from env.
func withoutAgent(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "SSH_AUTH_SOCK=") && !strings.HasPrefix(kv, "SSH_AGENT_PID=") {
			out = append(out, kv)
		}
	}
	return out
}
