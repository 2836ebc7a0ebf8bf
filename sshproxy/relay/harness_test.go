package relay

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/opensshca/suite/internal/testbin"
)

// The integration tests run the real OpenSSH programs on both ends: ssh,
// scp and sftp talk to an in-process x/crypto server, which terminates the
// connection and hands it to Relay with an ssh.Client logged in to a real
// sshd as root, as the proxy does.

// fastCipher is offered on both hops: AES-GCM has assembly in Go (and so
// is not slowed down by the race detector); chacha20 has not.
const fastCipher = "aes128-gcm@openssh.com"

// key is a plain ed25519 key pair.
type key struct {
	signer ssh.Signer
	pem    []byte // OpenSSH private key file
}

func newKey(t testing.TB) key {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return key{signer: signer, pem: pem.EncodeToMemory(block)}
}

// env is one real sshd (the node) and the keys around it, shared by the
// subtests of one test.
type env struct {
	sshd      *testbin.SSHD
	dir       string
	userKey   key    // the user's key, accepted by the proxy
	userFile  string // userKey's private key file, for ssh -i
	hostKey   key    // the proxy's host key
	nodeLogin *ssh.ClientConfig
}

func newEnv(t *testing.T) *env {
	t.Helper()
	for _, bin := range []string{"ssh", "scp", "sftp", "ssh-add"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed; .ci/run installs openssh-client", bin)
		}
	}
	e := &env{dir: testbin.ShortTempDir(t), userKey: newKey(t), hostKey: newKey(t)}
	e.userFile = e.write(t, "user_key", e.userKey.pem)

	proxyKey, nodeHostKey := newKey(t), newKey(t)
	authorized := e.write(t, "authorized_keys", ssh.MarshalAuthorizedKey(proxyKey.signer.PublicKey()))
	e.sshd = testbin.StartSSHD(t, testbin.SSHDConfig{
		HostKey: nodeHostKey.pem,
		Extra: []string{
			"AllowTcpForwarding yes",
			"AllowAgentForwarding yes",
			"X11Forwarding no",
			"Subsystem sftp internal-sftp",
			"PrintMotd no",
			"PrintLastLog no",
			// testbin sets "AuthorizedKeysFile none", and the first value
			// of a keyword wins; a Match block overrides it.
			"Match all",
			"AuthorizedKeysFile " + authorized,
		},
	})
	e.nodeLogin = &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(proxyKey.signer)},
		HostKeyCallback: ssh.FixedHostKey(nodeHostKey.signer.PublicKey()),
		Config:          ssh.Config{Ciphers: []string{fastCipher}},
		Timeout:         10 * time.Second,
	}
	return e
}

func (e *env) write(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// proxy is an in-process SSH server that relays each connection to the
// node with one Config.
type proxy struct {
	e          *env
	addr, port string
	knownHosts string
	results    chan error // what Relay returned, one per connection

	mu    sync.Mutex
	conns []*recorder // one per connection, in accept order
}

var proxyCount atomic.Int64

func (e *env) startProxy(t *testing.T, cfg Config) *proxy {
	t.Helper()
	return e.startProxyContext(t, context.Background(), cfg)
}

// startProxyContext starts a proxy whose Relay calls get a context derived
// from ctx.
func (e *env) startProxyContext(t *testing.T, ctx context.Context, cfg Config) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{e: e, addr: ln.Addr().String(), results: make(chan error, 100)}
	_, p.port, _ = net.SplitHostPort(p.addr)
	line := knownhosts.Line([]string{p.addr}, e.hostKey.signer.PublicKey())
	p.knownHosts = e.write(t, fmt.Sprintf("known_hosts.%d", proxyCount.Add(1)), []byte(line+"\n"))

	server := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), e.userKey.signer.PublicKey().Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	server.AddHostKey(e.hostKey.signer)

	logs := new(testbin.Buffer)
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(ctx)
	var conns sync.WaitGroup
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rec := newRecorder(t)
			p.mu.Lock()
			p.conns = append(p.conns, rec)
			p.mu.Unlock()
			cfg := cfg
			cfg.Observer = rec
			cfg.Logger = logger.With("conn", n)
			conns.Add(1)
			go func() {
				defer conns.Done()
				p.results <- p.serve(ctx, c, server, cfg)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		<-accepted
		conns.Wait()
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs)
		}
	})
	return p
}

func (p *proxy) serve(ctx context.Context, c net.Conn, server *ssh.ServerConfig, cfg Config) error {
	in, chans, reqs, err := ssh.NewServerConn(c, server)
	if err != nil {
		c.Close()
		return err
	}
	out, err := ssh.Dial("tcp", p.e.sshd.Addr, p.e.nodeLogin)
	if err != nil {
		in.Close()
		return err
	}
	return Relay(ctx, in, chans, reqs, out, cfg)
}

// opts are the OpenSSH client options that reach the proxy (ssh, scp and
// sftp all take them).
func (p *proxy) opts() []string {
	return []string{
		"-F", "/dev/null",
		"-o", "UserKnownHostsFile=" + p.knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityFile=" + p.e.userFile,
		"-o", "BatchMode=yes",
		"-o", "Port=" + p.port,
		"-o", "Ciphers=" + fastCipher,
	}
}

// command returns an OpenSSH client command through the proxy: name's
// options, then args. It runs with no agent unless env names one.
func (p *proxy) command(ctx context.Context, name string, args []string, env ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, append(p.opts(), args...)...)
	cmd.Env = append(withoutAgent(testbin.Environ()), env...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// result is a finished command.
type result struct {
	stdout, stderr string
	code           int
}

// run runs an OpenSSH client command to the end with stdin and a time
// limit; exit codes are part of the result, not errors.
func (p *proxy) run(t *testing.T, stdin io.Reader, name string, args []string, env ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := p.command(ctx, name, args, env...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%s %q: %v\n%s", name, args, err, stderr.String())
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// start starts a long-running OpenSSH client command (ssh -N) and kills
// it when the test ends; its stderr collects into the returned buffer.
func (p *proxy) start(t *testing.T, name string, args []string, env ...string) *testbin.Buffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := p.command(ctx, name, args, env...)
	stderr := new(testbin.Buffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s %q stderr:\n%s", name, args, stderr)
		}
	})
	return stderr
}

// events returns every connection's observer events, in connection order.
func (p *proxy) events() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var all []string
	for i, rec := range p.conns {
		for _, ev := range rec.snapshot() {
			all = append(all, fmt.Sprintf("conn%d %s", i+1, ev))
		}
	}
	return all
}

// waitEvent waits until an event contains want and returns it.
func (p *proxy) waitEvent(t *testing.T, want string) string {
	t.Helper()
	var got []string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		got = p.events()
		for _, ev := range got {
			if strings.Contains(ev, want) {
				return ev
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no observer event contains %q; got:\n%s", want, strings.Join(got, "\n"))
	return ""
}

// noEvent fails if an event contains s.
func (p *proxy) noEvent(t *testing.T, s string) {
	t.Helper()
	for _, ev := range p.events() {
		if strings.Contains(ev, s) {
			t.Errorf("unexpected observer event %q", ev)
		}
	}
}

// output returns the first bytes of what a connection's session sent.
func (p *proxy) output(conn, session int) string {
	p.mu.Lock()
	rec := p.conns[conn-1]
	p.mu.Unlock()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return string(rec.output[session])
}

// recorder is the Observer of one connection. It checks the Observer
// contract (no concurrent calls, nothing after SessionClosed) and keeps a
// bounded prefix of each session's output.
type recorder struct {
	t      *testing.T
	busy   atomic.Bool
	mu     sync.Mutex
	evs    []string
	output map[int][]byte
	closed map[int]bool
}

const keepOutput = 64 << 10

func newRecorder(t *testing.T) *recorder {
	return &recorder{t: t, output: map[int][]byte{}, closed: map[int]bool{}}
}

func (r *recorder) enter(ch *Channel) func() {
	if r.busy.Swap(true) {
		r.t.Error("Observer called concurrently for one connection")
	}
	r.mu.Lock()
	if ch != nil {
		if r.closed[ch.ID] {
			r.t.Errorf("Observer called for session %d after SessionClosed", ch.ID)
		}
		if ch.State != ch.ID {
			r.t.Errorf("session %d: Channel.State = %v, want what SessionOpened set", ch.ID, ch.State)
		}
	}
	return func() {
		r.mu.Unlock()
		r.busy.Store(false)
	}
}

func (r *recorder) add(format string, args ...any) {
	r.evs = append(r.evs, fmt.Sprintf(format, args...))
}

func (r *recorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.evs...)
}

func (r *recorder) SessionOpened(ch *Channel) {
	ch.State = ch.ID
	defer r.enter(ch)()
	r.add("open %d %s", ch.ID, ch.Type)
}

func (r *recorder) PTY(ch *Channel, term string, cols, rows uint32) {
	defer r.enter(ch)()
	r.add("pty %d %s %dx%d", ch.ID, term, cols, rows)
}

func (r *recorder) Resize(ch *Channel, cols, rows uint32) {
	defer r.enter(ch)()
	r.add("resize %d %dx%d", ch.ID, cols, rows)
}

func (r *recorder) Exec(ch *Channel, command string) {
	defer r.enter(ch)()
	r.add("exec %d %s", ch.ID, command)
}

func (r *recorder) Shell(ch *Channel) {
	defer r.enter(ch)()
	r.add("shell %d", ch.ID)
}

func (r *recorder) Subsystem(ch *Channel, name string) {
	defer r.enter(ch)()
	r.add("subsystem %d %s", ch.ID, name)
}

func (r *recorder) Output(ch *Channel, p []byte) {
	defer r.enter(ch)()
	if n := keepOutput - len(r.output[ch.ID]); n > 0 {
		r.output[ch.ID] = append(r.output[ch.ID], p[:min(n, len(p))]...)
	}
}

func (r *recorder) Input(ch *Channel, p []byte) {
	defer r.enter(ch)()
}

func (r *recorder) Exit(ch *Channel, status *uint32, signal string) {
	defer r.enter(ch)()
	if status != nil {
		r.add("exit %d status %d", ch.ID, *status)
	} else {
		r.add("exit %d signal %s", ch.ID, signal)
	}
}

func (r *recorder) SessionClosed(ch *Channel, bytesIn, bytesOut int64) {
	defer r.enter(ch)()
	r.closed[ch.ID] = true
	r.add("closed %d in=%d out=%d", ch.ID, bytesIn, bytesOut)
}

func (r *recorder) Forward(kind, detail string, allowed bool) {
	defer r.enter(nil)()
	r.add("forward %s %s allowed=%t", kind, detail, allowed)
}

// withoutAgent drops SSH_AUTH_SOCK and SSH_AGENT_PID from env.
func withoutAgent(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "SSH_AUTH_SOCK=") && !strings.HasPrefix(kv, "SSH_AGENT_PID=") {
			out = append(out, kv)
		}
	}
	return out
}

// echoServer listens on loopback and echoes every connection.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// dialRetry dials addr until it answers (a forwarding ssh binds its
// listener some time after it starts).
func dialRetry(t *testing.T, addr string) net.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// echoes writes a line to c and reports whether it came back.
func echoes(t *testing.T, c net.Conn) (string, error) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	const msg = "ping through the relay\n"
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}
