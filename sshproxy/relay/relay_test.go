package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/internal/testbin"
)

// all allows everything a role can allow.
var all = Permissions{AgentForwarding: true, PortForwarding: true, X11Forwarding: true, PTY: true}

const target = "root@127.0.0.1"

func TestRelayOpenSSH(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	t.Run("exec exit status", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{Permissions: all})
		res := p.run(t, nil, "ssh", []string{target, "echo hi; exit 7"})
		if res.stdout != "hi\n" || res.code != 7 {
			t.Errorf("ssh 'echo hi; exit 7' = %q, exit %d; want \"hi\\n\", exit 7 (stderr %q)", res.stdout, res.code, res.stderr)
		}
		p.waitEvent(t, "conn1 open 1 session")
		p.waitEvent(t, "conn1 exec 1 echo hi; exit 7")
		p.waitEvent(t, "conn1 exit 1 status 7")
		p.waitEvent(t, "conn1 closed 1 in=0 out=3")
		p.noEvent(t, "pty")
	})

	t.Run("stderr separate", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{Permissions: all})
		res := p.run(t, nil, "ssh", []string{target, "echo out; echo err >&2; kill -TERM $$"})
		if res.stdout != "out\n" || res.stderr != "err\n" {
			t.Errorf("stdout %q, stderr %q; want \"out\\n\", \"err\\n\"", res.stdout, res.stderr)
		}
		// OpenSSH's ssh exits 255 when the remote command died of a signal.
		if res.code != 255 {
			t.Errorf("exit %d, want 255 for a command killed by a signal", res.code)
		}
		p.waitEvent(t, "conn1 exit 1 signal TERM")
		p.waitEvent(t, "conn1 closed 1 in=0 out=8")
		if got := p.output(1, 1); got != "out\nerr\n" && got != "err\nout\n" {
			t.Errorf("observed output %q, want stdout and stderr", got)
		}
	})

	t.Run("pty shell", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{Permissions: all})
		script := "echo marker-$((6*7))\nexit 3\n"
		res := p.run(t, strings.NewReader(script), "ssh", []string{"-tt", target}, "TERM=xterm")
		if res.code != 3 || !strings.Contains(res.stdout, "marker-42") {
			t.Errorf("ssh -tt: exit %d, stdout %q; want exit 3 and marker-42", res.code, res.stdout)
		}
		p.waitEvent(t, "conn1 pty 1 xterm ")
		p.waitEvent(t, "conn1 shell 1")
		p.waitEvent(t, "conn1 exit 1 status 3")
		p.waitEvent(t, "conn1 closed 1")
		if got := p.output(1, 1); !strings.Contains(got, "marker-42") {
			t.Errorf("observed output %q lacks marker-42", got)
		}
	})

	t.Run("pty refused", func(t *testing.T) {
		t.Parallel()
		perms := all
		perms.PTY = false
		p := e.startProxy(t, Config{Permissions: perms})
		// ssh -t treats a refused PTY as fatal (clientloop.c,
		// client_status_confirm): it closes the session and exits 255.
		res := p.run(t, strings.NewReader("exit 4\n"), "ssh", []string{"-tt", target}, "TERM=xterm")
		if res.code != 255 || !strings.Contains(res.stderr, "PTY allocation request failed") {
			t.Errorf("ssh -tt without PTY permission: exit %d, stderr %q; want 255, PTY allocation request failed", res.code, res.stderr)
		}
		p.waitEvent(t, "conn1 closed 1")
		p.noEvent(t, "pty")
		// Without -t, the same shell runs.
		res = p.run(t, strings.NewReader("tty; exit 4\n"), "ssh", []string{target})
		if res.code != 4 || res.stdout != "not a tty\n" {
			t.Errorf("ssh without PTY: exit %d, stdout %q; want 4, \"not a tty\"", res.code, res.stdout)
		}
		p.waitEvent(t, "conn2 shell 1")
	})

	t.Run("stdin eof", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{})
		res := p.run(t, bytes.NewReader(make([]byte, 1<<20)), "ssh", []string{target, "wc -c"})
		if strings.TrimSpace(res.stdout) != "1048576" || res.code != 0 {
			t.Errorf("ssh 'wc -c' < 1 MiB = %q, exit %d (stderr %q)", res.stdout, res.code, res.stderr)
		}
		p.waitEvent(t, "conn1 closed 1 in=1048576 out=8")
	})

	t.Run("stdin eof before exec", func(t *testing.T) {
		t.Parallel()
		// ssh sends exec and, with stdin at EOF, the EOF right after it.
		// The relay carries requests and data separately; if the EOF
		// overtook the exec, sshd would never close the command's stdin
		// and cat would hang.
		p := e.startProxy(t, Config{})
		for i := range 3 {
			res := p.run(t, nil, "ssh", []string{target, "cat; echo done"})
			if res.stdout != "done\n" || res.code != 0 {
				t.Fatalf("run %d: ssh 'cat; echo done' < /dev/null = %q, exit %d (stderr %q)", i, res.stdout, res.code, res.stderr)
			}
		}
	})

	t.Run("transfers", func(t *testing.T) {
		t.Parallel()
		testTransfers(t, e)
	})

	t.Run("local forward", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{Permissions: Permissions{PortForwarding: true}})
		echo := echoServer(t)
		local := testbin.FreePort(t)
		p.start(t, "ssh", []string{"-N", "-o", "ExitOnForwardFailure=yes", "-L", local + ":" + echo, target})
		c := dialRetry(t, local)
		defer c.Close()
		if got, err := echoes(t, c); err != nil {
			t.Fatalf("echo through -L: got %q, %v", got, err)
		}
		p.waitEvent(t, "conn1 forward direct-tcpip "+echo+" allowed=true")
		p.noEvent(t, "open")
	})

	t.Run("local forward refused", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{Permissions: Permissions{AgentForwarding: true, X11Forwarding: true, PTY: true}})
		echo := echoServer(t)
		local := testbin.FreePort(t)
		stderr := p.start(t, "ssh", []string{"-N", "-L", local + ":" + echo, target})
		c := dialRetry(t, local)
		defer c.Close()
		if got, err := echoes(t, c); err == nil {
			t.Fatalf("echo through a refused -L answered %q", got)
		}
		p.waitEvent(t, "conn1 forward direct-tcpip "+echo+" allowed=false")
		waitFor(t, "ssh reports the refusal", func() bool {
			return strings.Contains(stderr.String(), "administratively prohibited")
		})
	})

	t.Run("remote forward", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{Permissions: Permissions{PortForwarding: true}})
		echo := echoServer(t)
		// Port 0: the node picks the port, and the relay must carry the
		// reply's port back for ssh to print it and match connections.
		stderr := p.start(t, "ssh", []string{"-N", "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:" + echo, target})
		allocated := regexp.MustCompile(`Allocated port (\d+) for remote forward`)
		var port string
		waitFor(t, "ssh prints the allocated port", func() bool {
			m := allocated.FindStringSubmatch(stderr.String())
			if m != nil {
				port = m[1]
			}
			return m != nil
		})
		c := dialRetry(t, net.JoinHostPort("127.0.0.1", port))
		defer c.Close()
		if got, err := echoes(t, c); err != nil {
			t.Fatalf("echo through -R: got %q, %v", got, err)
		}
		p.waitEvent(t, "conn1 forward tcpip-forward 127.0.0.1:"+port+" allowed=true")
		p.waitEvent(t, "conn1 forward forwarded-tcpip 127.0.0.1:"+port+" allowed=true")
	})

	t.Run("remote forward refused", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{Permissions: Permissions{AgentForwarding: true, PTY: true}})
		echo := echoServer(t)
		res := p.run(t, nil, "ssh", []string{"-N", "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:" + echo, target})
		if res.code != 255 || !strings.Contains(res.stderr, "remote port forwarding failed") {
			t.Errorf("refused -R: exit %d, stderr %q", res.code, res.stderr)
		}
		p.waitEvent(t, "conn1 forward tcpip-forward 127.0.0.1:0 allowed=false")
	})

	t.Run("agent forwarding", func(t *testing.T) {
		t.Parallel()
		agent := testbin.StartAgent(t)
		if out, err := agent.Command("ssh-add", e.userFile).CombinedOutput(); err != nil {
			t.Fatalf("ssh-add: %v\n%s", err, out)
		}
		fp := ssh.FingerprintSHA256(e.userKey.signer.PublicKey())
		sock := "SSH_AUTH_SOCK=" + agent.Socket

		p := e.startProxy(t, Config{Permissions: Permissions{AgentForwarding: true}})
		res := p.run(t, nil, "ssh", []string{"-A", target, "ssh-add -l"}, sock)
		if res.code != 0 || !strings.Contains(res.stdout, fp) {
			t.Errorf("ssh -A 'ssh-add -l': exit %d, %q; want %s listed", res.code, res.stdout+res.stderr, fp)
		}
		p.waitEvent(t, "conn1 forward auth-agent auth-agent-req@openssh.com on session 1 allowed=true")
		p.waitEvent(t, "conn1 forward auth-agent auth-agent@openssh.com allowed=true")

		refused := e.startProxy(t, Config{Permissions: Permissions{PortForwarding: true, PTY: true}})
		res = refused.run(t, nil, "ssh", []string{"-A", target, "ssh-add -l"}, sock)
		if res.code != 2 || !strings.Contains(res.stderr, "Could not open a connection to your authentication agent") {
			t.Errorf("ssh -A without agent permission: exit %d, %q; want exit 2, no agent", res.code, res.stdout+res.stderr)
		}
		refused.waitEvent(t, "conn1 forward auth-agent auth-agent-req@openssh.com on session 1 allowed=false")
		refused.noEvent(t, "allowed=true")
	})
}

// testTransfers copies a 20 MiB file up and down with scp -O (the legacy
// protocol: "scp -t" and "scp -f" over exec), scp in its default SFTP mode
// and sftp -b, and compares checksums.
func testTransfers(t *testing.T, e *env) {
	p := e.startProxy(t, Config{})
	local := t.TempDir()
	remote := t.TempDir() // the node is this machine
	data := make([]byte, 20<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(local, "src")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	check := func(path string) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(got) != want {
			t.Errorf("%s: %d bytes, checksum differs from the 20 MiB source", path, len(got))
		}
	}
	ok := func(what string, res result) {
		t.Helper()
		if res.code != 0 {
			t.Fatalf("%s: exit %d\n%s%s", what, res.code, res.stdout, res.stderr)
		}
	}
	at := func(name string) string { return target + ":" + filepath.Join(remote, name) }

	ok("scp -O up", p.run(t, nil, "scp", []string{"-O", src, at("scp-O")}))
	check(filepath.Join(remote, "scp-O"))
	ok("scp -O down", p.run(t, nil, "scp", []string{"-O", at("scp-O"), filepath.Join(local, "scp-O")}))
	check(filepath.Join(local, "scp-O"))

	ok("scp up", p.run(t, nil, "scp", []string{src, at("scp")}))
	check(filepath.Join(remote, "scp"))
	ok("scp down", p.run(t, nil, "scp", []string{at("scp"), filepath.Join(local, "scp")}))
	check(filepath.Join(local, "scp"))

	batch := filepath.Join(local, "batch")
	script := "put " + src + " " + filepath.Join(remote, "sftp") + "\n" +
		"get " + filepath.Join(remote, "sftp") + " " + filepath.Join(local, "sftp") + "\n"
	if err := os.WriteFile(batch, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	ok("sftp -b", p.run(t, nil, "sftp", []string{"-b", batch, target}))
	check(filepath.Join(remote, "sftp"))
	check(filepath.Join(local, "sftp"))

	p.waitEvent(t, "conn1 exec 1 scp -t "+filepath.Join(remote, "scp-O"))
	p.waitEvent(t, "conn2 exec 1 scp -f "+filepath.Join(remote, "scp-O"))
	p.waitEvent(t, "conn3 subsystem 1 sftp")
	p.waitEvent(t, "conn4 subsystem 1 sftp")
	p.waitEvent(t, "conn5 subsystem 1 sftp")
	// Uploads count at least the file as input, downloads as output.
	for _, n := range []int{1, 3} {
		if ev := p.waitEvent(t, "conn"+strconv.Itoa(n)+" closed 1"); bytesField(t, ev, "in") < int64(len(data)) {
			t.Errorf("upload %q: fewer bytes in than the file", ev)
		}
	}
	for _, n := range []int{2, 4} {
		if ev := p.waitEvent(t, "conn"+strconv.Itoa(n)+" closed 1"); bytesField(t, ev, "out") < int64(len(data)) {
			t.Errorf("download %q: fewer bytes out than the file", ev)
		}
	}
}

func bytesField(t *testing.T, ev, name string) int64 {
	t.Helper()
	m := regexp.MustCompile(name + `=(\d+)`).FindStringSubmatch(ev)
	if m == nil {
		t.Fatalf("event %q has no %s=", ev, name)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// TestRelayGoClient drives the relay with x/crypto's client where OpenSSH's
// cannot be steered: window changes, keepalives, unknown requests, and how
// Relay ends.
func TestRelayGoClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	dial := func(t *testing.T, p *proxy) (*ssh.Client, <-chan *ssh.Request) {
		t.Helper()
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn, chans, reqs, err := ssh.NewClientConn(c, p.addr, &ssh.ClientConfig{
			User:            "root",
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(e.userKey.signer)},
			HostKeyCallback: ssh.FixedHostKey(e.hostKey.signer.PublicKey()),
			Timeout:         10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return ssh.NewClient(conn, chans, nil), reqs
	}

	t.Run("pty resize exit", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{Permissions: Permissions{PTY: true}})
		client, reqs := dial(t, p)
		go ssh.DiscardRequests(reqs)
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.RequestPty("vt100", 40, 100, nil); err != nil {
			t.Fatalf("RequestPty: %v", err)
		}
		if err := s.WindowChange(50, 120); err != nil {
			t.Fatalf("WindowChange: %v", err)
		}
		err = s.Run("stty size; exit 4")
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 4 {
			t.Fatalf("Run = %v, want exit status 4", err)
		}
		p.waitEvent(t, "conn1 pty 1 vt100 100x40")
		p.waitEvent(t, "conn1 resize 1 120x50")
		p.waitEvent(t, "conn1 exec 1 stty size; exit 4")
		p.waitEvent(t, "conn1 exit 1 status 4")
		if got := p.output(1, 1); !strings.Contains(got, "50 120") {
			t.Errorf("stty size printed %q, want the changed size 50 120", got)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{})
		client, reqs := dial(t, p)
		go ssh.DiscardRequests(reqs)
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.RequestPty("xterm", 24, 80, nil); err == nil {
			t.Error("RequestPty succeeded without PTY permission")
		}
		if ok, err := s.SendRequest("x11-req", true, ssh.Marshal(&x11Request{AuthProtocol: "MIT-MAGIC-COOKIE-1", AuthCookie: "00"})); ok || err != nil {
			t.Errorf("x11-req = %t, %v; want refused", ok, err)
		}
		if ok, err := s.SendRequest("exec", true, []byte{0, 0, 0, 9, 'x'}); ok || err != nil {
			t.Errorf("malformed exec = %t, %v; want refused", ok, err)
		}
		if ok, err := s.SendRequest("made-up@example.com", true, nil); ok || err != nil {
			t.Errorf("unknown session request = %t, %v; want refused", ok, err)
		}
		for _, name := range []string{"keepalive@openssh.com", "made-up@example.com"} {
			if ok, _, err := client.SendRequest(name, true, nil); ok || err != nil {
				t.Errorf("global %s = %t, %v; want false", name, ok, err)
			}
		}
		fwd := ssh.Marshal(&forwardRequest{Addr: "127.0.0.1", Port: 0})
		if ok, _, err := client.SendRequest("tcpip-forward", true, fwd); ok || err != nil {
			t.Errorf("tcpip-forward = %t, %v; want refused", ok, err)
		}
		if _, err := client.Dial("tcp", echoServer(t)); err == nil {
			t.Error("direct-tcpip succeeded without permission")
		} else if oce := (*ssh.OpenChannelError)(nil); !errors.As(err, &oce) || oce.Reason != ssh.Prohibited {
			t.Errorf("direct-tcpip: %v, want administratively prohibited", err)
		}
		if _, _, err := client.OpenChannel("made-up@example.com", nil); err == nil {
			t.Error("unknown channel type accepted")
		}
		// The session still works after the refusals.
		if out, err := s.Output("echo still here"); err != nil || string(out) != "still here\n" {
			t.Errorf("exec after refusals = %q, %v", out, err)
		}
		p.waitEvent(t, "conn1 forward x11 x11-req on session 1 allowed=false")
		p.waitEvent(t, "conn1 forward tcpip-forward 127.0.0.1:0 allowed=false")
		p.waitEvent(t, "conn1 forward direct-tcpip")
		p.noEvent(t, "pty")
		p.noEvent(t, "allowed=true")
	})

	t.Run("no more sessions", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{})
		client, reqs := dial(t, p)
		go ssh.DiscardRequests(reqs)
		// OpenSSH sends it without asking for a reply; asking here orders
		// it before the session open.
		if _, _, err := client.SendRequest("no-more-sessions@openssh.com", true, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := client.NewSession(); err == nil {
			t.Error("session opened after no-more-sessions@openssh.com")
		}
	})

	t.Run("keepalive", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{KeepaliveInterval: 20 * time.Millisecond})
		_, reqs := dial(t, p)
		for i := 0; i < 3; i++ {
			select {
			case req := <-reqs:
				if req.Type != "keepalive@openssh.com" || !req.WantReply {
					t.Fatalf("request %q (want reply %t), want keepalive@openssh.com", req.Type, req.WantReply)
				}
				_ = req.Reply(false, nil)
			case <-time.After(5 * time.Second):
				t.Fatal("no keepalive from the relay")
			}
		}
	})

	t.Run("keepalive timeout", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{KeepaliveInterval: 20 * time.Millisecond, KeepaliveCountMax: 2})
		client, reqs := dial(t, p)
		go func() {
			for range reqs { // never answered
			}
		}()
		select {
		case err := <-p.results:
			if !errors.Is(err, ErrKeepaliveTimeout) {
				t.Errorf("Relay = %v, want ErrKeepaliveTimeout", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Relay did not end after unanswered keepalives")
		}
		waitClosed(t, client)
	})

	t.Run("client hangs up", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{})
		client, reqs := dial(t, p)
		go ssh.DiscardRequests(reqs)
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start("cat"); err != nil {
			t.Fatal(err)
		}
		p.waitEvent(t, "conn1 exec 1 cat")
		client.Close()
		select {
		case err := <-p.results:
			if err != nil {
				t.Errorf("Relay = %v, want nil after the client hung up", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Relay did not end after the client hung up")
		}
		// Relay has returned: the session was closed and observed.
		p.waitEvent(t, "conn1 closed 1")
	})

	t.Run("node hangs up", func(t *testing.T) {
		t.Parallel()
		p := e.startProxy(t, Config{})
		client, reqs := dial(t, p)
		go ssh.DiscardRequests(reqs)
		// The command's parent is the node's sshd session process; killing
		// it drops the node's connection without an exit status.
		err := mustSession(t, client).Run("kill -KILL $PPID")
		var missing *ssh.ExitMissingError
		if !errors.As(err, &missing) {
			t.Errorf("Run = %v, want an exit status missing", err)
		}
		select {
		case err := <-p.results:
			if !errors.Is(err, ErrNodeClosed) {
				t.Errorf("Relay = %v, want ErrNodeClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Relay did not end after the node hung up")
		}
		waitClosed(t, client)
		p.waitEvent(t, "conn1 closed 1")
		p.noEvent(t, "exit")
	})

	t.Run("context cancelled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p := e.startProxyContext(t, ctx, Config{})
		client, reqs := dial(t, p)
		go ssh.DiscardRequests(reqs)
		if out, err := mustSession(t, client).Output("echo up"); err != nil || string(out) != "up\n" {
			t.Fatalf("exec = %q, %v", out, err)
		}
		cancel()
		select {
		case err := <-p.results:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Relay = %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Relay did not return after its context was cancelled")
		}
		waitClosed(t, client)
	})
}

func mustSession(t *testing.T, c *ssh.Client) *ssh.Session {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitClosed waits until the relay has closed c.
func waitClosed(t *testing.T, c *ssh.Client) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		_ = c.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay did not close the client connection")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
