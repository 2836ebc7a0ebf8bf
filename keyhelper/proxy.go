package keyhelper

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultProxyTimeout bounds a conversation with the proxy (connecting,
// the handshake, the command) when none is given.
const DefaultProxyTimeout = 20 * time.Second

// maxProxyOutput caps what a proxy command may write on each of standard
// output and standard error.
const maxProxyOutput = 4 << 20

// ErrNoProxy reports a cluster for which the last login learned no proxy
// address: the cluster had none registered then.
var ErrNoProxy = errors.New("keyhelper: no proxy is known for the cluster")

// ProxyStage is the step of a conversation with the proxy that failed.
type ProxyStage int

const (
	// ProxyConnect is the TCP connection and the start of the SSH
	// handshake: the proxy is unreachable, refuses, or does not speak SSH.
	ProxyConnect ProxyStage = iota + 1
	// ProxyHostKey is the check of the proxy's host key: it is not a
	// valid host certificate from the cluster's host CA for the proxy's
	// address.
	ProxyHostKey
	// ProxyAuth is the user authentication: the proxy refused the user's
	// certificate.
	ProxyAuth
	// ProxyCommand is the command: it failed, or answered nonsense.
	ProxyCommand
)

func (s ProxyStage) String() string {
	switch s {
	case ProxyConnect:
		return "connecting"
	case ProxyHostKey:
		return "verifying its host certificate"
	case ProxyAuth:
		return "logging in"
	case ProxyCommand:
		return "running the command"
	}
	return fmt.Sprintf("stage %d", int(s))
}

// ProxyError is a failed conversation with a cluster's proxy.
type ProxyError struct {
	// Addr is the proxy's "host:port".
	Addr  string
	Stage ProxyStage
	Err   error
}

func (e *ProxyError) Error() string {
	return fmt.Sprintf("keyhelper: proxy %s: %s: %v", e.Addr, e.Stage, e.Err)
}

func (e *ProxyError) Unwrap() error { return e.Err }

// ProxyCommandError is a proxy command that exited with a status other
// than zero. It comes wrapped in a *ProxyError.
type ProxyCommandError struct {
	Command string
	Status  int
	// Stderr is what the command wrote on standard error, as sent: clean
	// it before showing it (Describe does).
	Stderr string
}

func (e *ProxyCommandError) Error() string {
	return fmt.Sprintf("%q exited with status %d: %s", e.Command, e.Status, serverMessage(e.Stderr))
}

// proxyCert reads the certificate in p.CertFile and checks that it is a
// user certificate valid at now: a missing one is ErrNotLoggedIn, an
// expired one an *ExpiredError.
func (p *Profile) proxyCert(now time.Time) (*ssh.Certificate, error) {
	cert, err := readCert(p.CertFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("keyhelper: no certificate at %s: %w", p.CertFile, ErrNotLoggedIn)
	}
	if err != nil {
		return nil, err
	}
	if cert.CertType != ssh.UserCert {
		return nil, fmt.Errorf("keyhelper: %s holds no user certificate; log in again", p.CertFile)
	}
	if _, err := AgentLifetime(cert.ValidBefore, now); err != nil {
		return nil, err
	}
	if start := time.Unix(int64(min(cert.ValidAfter, maxUnix)), 0); now.Before(start) {
		return nil, fmt.Errorf("keyhelper: the certificate in %s is valid only from %s; is this machine's clock right?",
			p.CertFile, start.Local().Format(timeLayout))
	}
	return cert, nil
}

// proxySigner returns the signer for cert: its private key from
// p.KeyFile or, when that file holds none that can be used (login
// --confirm keeps the key only in the agent; a key of --key-path may need
// a passphrase), from the agent at agentSocket, used until deadline. done
// ends the use of the agent.
func (p *Profile) proxySigner(cert *ssh.Certificate, agentSocket string, deadline time.Time) (signer ssh.Signer, done func(), err error) {
	priv, note := loadPrivate(p.KeyFile, cert.Key)
	if priv != nil {
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			return nil, nil, fmt.Errorf("keyhelper: %s: %w", p.KeyFile, err)
		}
		cs, err := ssh.NewCertSigner(cert, s)
		if err != nil {
			return nil, nil, fmt.Errorf("keyhelper: %s: %w", p.CertFile, err)
		}
		return cs, func() {}, nil
	}
	noKey := func(why string) error {
		return fmt.Errorf("keyhelper: the certificate's private key is not at hand: %s, and %s; add the key to ssh-agent (ssh-add) or log in again", note, why)
	}
	ag, err := DialAgent(agentSocket)
	if err != nil {
		return nil, nil, noKey(Describe(err))
	}
	// The agent may ask the user to confirm the use (login --confirm).
	_ = ag.conn.SetDeadline(deadline)
	signers, err := ag.client.Signers()
	if err != nil {
		ag.Close()
		return nil, nil, noKey(Describe(&AgentError{Socket: agentSocket, Op: "listing keys", Err: err}))
	}
	certBlob, keyBlob := cert.Marshal(), cert.Key.Marshal()
	if i := slices.IndexFunc(signers, func(s ssh.Signer) bool { return string(s.PublicKey().Marshal()) == string(certBlob) }); i >= 0 {
		return signers[i], func() { ag.Close() }, nil
	}
	if i := slices.IndexFunc(signers, func(s ssh.Signer) bool { return string(s.PublicKey().Marshal()) == string(keyBlob) }); i >= 0 {
		cs, err := ssh.NewCertSigner(cert, signers[i])
		if err != nil {
			ag.Close()
			return nil, nil, fmt.Errorf("keyhelper: %s: %w", p.CertFile, err)
		}
		return cs, func() { ag.Close() }, nil
	}
	ag.Close()
	return nil, nil, noKey("the ssh-agent at " + agentSocket + " does not hold it")
}

// proxyExec logs in to the proxy at addr as user with signer, verifying
// the proxy's host certificate with cas, runs command and returns what it
// wrote on standard output. Failures are *ProxyError; a status other than
// zero is a *ProxyCommandError inside one.
func proxyExec(ctx context.Context, addr, user string, signer ssh.Signer, cas *hostAuthorities, clock func() time.Time, command string) ([]byte, error) {
	fail := func(stage ProxyStage, err error) error {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return &ProxyError{Addr: addr, Stage: stage, Err: err}
	}
	checker := cas.checker(clock)
	var hk struct {
		sync.Mutex
		err error
		ok  bool
	}
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			err := checker.CheckHostKey(hostname, remote, key)
			hk.Lock()
			hk.err, hk.ok = err, err == nil
			hk.Unlock()
			return err
		},
		HostKeyAlgorithms: slices.Clone(HostKeyAlgorithms),
		ClientVersion:     "SSH-2.0-teleport-keyhelper",
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fail(ProxyConnect, err)
	}
	// Cancelling ctx ends the conversation wherever it is.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	sconn, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		hk.Lock()
		defer hk.Unlock()
		var ane *ssh.AlgorithmNegotiationError
		switch {
		case hk.err != nil:
			return nil, fail(ProxyHostKey, hk.err)
		case errors.As(err, &ane) && ane.What == "host key":
			// Only certificate algorithms are offered: a proxy without a
			// host certificate fails here, before the callback.
			return nil, fail(ProxyHostKey, fmt.Errorf("it offers no host certificate (only %s)", strings.Join(ane.RequestedAlgorithms, ", ")))
		case hk.ok:
			return nil, fail(ProxyAuth, err)
		}
		return nil, fail(ProxyConnect, err)
	}
	client := ssh.NewClient(sconn, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return nil, fail(ProxyCommand, err)
	}
	defer sess.Close()
	var stdout, stderr cappedBuffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	err = sess.Run(command)
	var ee *ssh.ExitError
	switch {
	case errors.As(err, &ee) && ctx.Err() == nil:
		return nil, fail(ProxyCommand, &ProxyCommandError{Command: command, Status: ee.ExitStatus(), Stderr: string(stderr.b)})
	case err != nil:
		return nil, fail(ProxyCommand, err)
	case stdout.over:
		return nil, fail(ProxyCommand, fmt.Errorf("%q wrote more than %d bytes", command, maxProxyOutput))
	}
	return stdout.b, nil
}

// cappedBuffer keeps the first maxProxyOutput bytes written to it and
// drops the rest, so that a flood neither fills memory nor stalls the
// channel.
type cappedBuffer struct {
	b    []byte
	over bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	n := min(len(p), maxProxyOutput-len(c.b))
	c.b = append(c.b, p[:n]...)
	c.over = c.over || n < len(p)
	return len(p), nil
}
