package sshproxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/sshproxy/relay"
	"github.com/opensshca/suite/sshproxy/tunnel"
)

// nodeInfo is a routed target.
type nodeInfo struct {
	api.ProxyNode
}

// sessionLogin is the session-CA certificate lifetime: long enough to log
// in, short enough to be useless if it leaked. The CA backdates only the
// start, so its end counts from the CA's clock: five minutes (the most
// the CA gives) leave a minute to log in even when the CA's clock and the
// node's are each two minutes off, in opposite directions
// (docs/RELIABILITY.md).
const sessionLogin = 5 * time.Minute

func newSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// chanConn makes an SSH channel a net.Conn for a nested SSH connection.
type chanConn struct {
	ssh.Channel
	local, remote net.Addr
}

func (c *chanConn) LocalAddr() net.Addr              { return c.local }
func (c *chanConn) RemoteAddr() net.Addr             { return c.remote }
func (c *chanConn) SetDeadline(time.Time) error      { return nil }
func (c *chanConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chanConn) SetWriteDeadline(time.Time) error { return nil }

// terminate runs the inner SSH connection of ssh -J in mode proxy: the
// proxy answers as the node with a host certificate for its names,
// authenticates the same user's certificate again for the login, and
// relays to the node.
func (p *Proxy) terminate(ctx context.Context, outer *ssh.ServerConn, nc ssh.NewChannel, node nodeInfo) {
	user := outer.Permissions.Extensions[extUser]
	signer, err := p.targets.signer(ctx, node.Name)
	if err != nil {
		p.log.Error("no host certificate for the node", "node", node.Name, "err", err)
		_ = nc.Reject(ssh.ConnectionFailed, "the proxy cannot present node "+node.Name+" now (the CA is unreachable); try again shortly")
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	conn := &chanConn{Channel: ch, local: outer.LocalAddr(), remote: outer.RemoteAddr()}
	pol := p.policyNow()
	sc := &ssh.ServerConfig{
		Config:        sshAlgorithms(),
		ServerVersion: "SSH-2.0-teleport-proxy",
		MaxAuthTries:  6,
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			return p.authUser(pol, c, key, user)
		},
	}
	sc.AddHostKey(signer)
	done := make(chan struct{})
	go func() { // the handshake is bounded like the outer one
		select {
		case <-done:
		case <-time.After(p.cfg.HandshakeTimeout):
			conn.Close()
		case <-ctx.Done():
			conn.Close()
		}
	}()
	inner, chans, ireqs, err := ssh.NewServerConn(conn, sc)
	close(done)
	if err != nil {
		p.log.Debug("inner handshake failed", "user", user, "node", node.Name, "err", err)
		conn.Close()
		return
	}
	defer inner.Close()
	p.session(ctx, inner, chans, ireqs, user, inner.User(), node, outer.RemoteAddr().String())
}

// singleHop serves "ssh -p 3023 login@node@proxy": the outer connection
// is the user's connection to the node.
func (p *Proxy) singleHop(ctx context.Context, sconn *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, login, target string) {
	user := sconn.Permissions.Extensions[extUser]
	pol := p.policyNow()
	node, err := p.route(pol, user, target, 22)
	if err != nil {
		p.refused(user, sconn.RemoteAddr().String(), "route", fmt.Sprintf("%s: %v", target, err))
		refuseSessions(ctx, sconn, chans, reqs, publicMessage(err))
		return
	}
	if !pol.recording() {
		refuseSessions(ctx, sconn, chans, reqs, fmt.Sprintf("the cluster's recording mode is off: nodes check your certificate themselves, so use ssh -J %s@%s %s@%s", user, p.cfg.PublicAddr, login, target))
		return
	}
	p.session(ctx, sconn, chans, reqs, user, login, node, sconn.RemoteAddr().String())
}

// session checks the policy for user as login on node, logs in to the
// node with a session certificate and relays the user's connection to it
// while recording.
func (p *Proxy) session(ctx context.Context, in *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, user, login string, node nodeInfo, clientAddr string) {
	pol := p.policyNow()
	sid := newSessionID()
	log := p.log.With("session", sid, "user", user, "login", login, "node", node.Name, "remote", clientAddr)
	if msg, deny := in.Permissions.Extensions[extDeny]; deny {
		p.refused(user, clientAddr, "certificate", msg)
		refuseSessions(ctx, in, chans, reqs, msg)
		return
	}
	perms, err := pol.allow(user, login, node.ProxyNode)
	if err != nil {
		p.refused(user, clientAddr, "policy", err.Error())
		refuseSessions(ctx, in, chans, reqs, publicMessage(err))
		return
	}
	rec := true
	if err := p.checkRecording(); err != nil {
		log.Error("recording is not possible", "err", err)
		ev := event("recording.unavailable", user, false, clientAddr)
		ev.Fields["session"], ev.Fields["node"], ev.Fields["reason"] = sid, node.Name, err.Error()
		ev.Fields["action"] = p.cfg.OnRecordingFailure
		p.events.add(ev)
		if p.cfg.OnRecordingFailure == "refuse" {
			refuseSessions(ctx, in, chans, reqs, "the proxy cannot record sessions now (its recording disk is full or failing), and recording is required; tell your administrator")
			return
		}
		rec = false
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client, err := p.loginToNode(ctx, pol, node, user, login, sid, clientAddr)
	if err != nil {
		log.Warn("logging in to the node failed", "err", err)
		ev := event("session.start", user, false, clientAddr)
		ev.Fields["session"], ev.Fields["login"], ev.Fields["node"], ev.Fields["reason"] = sid, login, node.Name, err.Error()
		p.events.add(ev)
		refuseSessions(ctx, in, chans, reqs, publicNodeError(node.Name, err))
		return
	}
	defer client.Close()
	s := p.sessions.add(api.Session{
		ID: sid, Proxy: p.Name(), User: user, Login: login, Node: node.Name, ClientAddr: clientAddr,
		Started: p.cfg.Clock().UTC(), Recorded: rec,
	}, in.Permissions.Extensions[extSerial], false, cancel)
	defer p.sessions.remove(sid)
	obs := newObserver(p, s, rec, log, cancel)
	ev := event("session.start", user, true, clientAddr)
	ev.Fields["session"], ev.Fields["login"], ev.Fields["node"] = sid, login, node.Name
	ev.Fields["recorded"] = fmt.Sprint(rec)
	p.events.add(ev)
	log.Info("session started", "recorded", rec)
	err = relay.Relay(ctx, in, chans, reqs, client, relay.Config{
		Permissions: perms, Observer: obs, Logger: log, KeepaliveInterval: p.cfg.ClientKeepalive,
	})
	obs.finish()
	end := event("session.end", user, true, clientAddr)
	end.Fields["session"], end.Fields["login"], end.Fields["node"] = sid, login, node.Name
	if err != nil && !errors.Is(err, relay.ErrNodeClosed) && !errors.Is(err, context.Canceled) {
		end.Fields["error"] = err.Error()
	}
	if r := s.terminated.Load(); r != nil {
		end.Fields["terminated"] = *r
	}
	p.events.add(end)
	log.Info("session ended", "err", err)
}

// loginToNode dials the node (through its tunnel) and logs in to its sshd
// as login with a fresh session-CA certificate, verifying the node's host
// certificate against the host CA.
func (p *Proxy) loginToNode(ctx context.Context, pol *policy, node nodeInfo, user, login, sid, clientAddr string) (*ssh.Client, error) {
	conn, err := p.dialNode(ctx, node, user, sid, clientAddr)
	if err != nil {
		return nil, err
	}
	// When the proxy dials the node's sshd itself (a registered address),
	// the session certificate is bound to the address sshd sees. Through a
	// tunnel the connection to sshd starts on the node, so the proxy cannot
	// know that address and sets none.
	var source []string
	if direct, ok := conn.(*net.TCPConn); ok {
		tcp := direct.LocalAddr().(*net.TCPAddr)
		if ip, ok := netip.AddrFromSlice(tcp.IP); ok {
			source = []string{netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()).String()}
		}
	}
	signer, err := p.sessionSigner(ctx, pol, node, user, login, sid, source)
	if err != nil {
		conn.Close()
		return nil, err
	}
	cc := &ssh.ClientConfig{
		Config:            sshAlgorithms(),
		User:              login,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   p.nodeHostKeyCallback(pol, node.ProxyNode),
		HostKeyAlgorithms: []string{ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01},
		ClientVersion:     "SSH-2.0-teleport-proxy",
		Timeout:           15 * time.Second,
	}
	cc.Ciphers = append(cc.Ciphers, ssh.CipherChaCha20Poly1305)
	var c ssh.Conn
	var chans <-chan ssh.NewChannel
	var reqs <-chan *ssh.Request
	done := make(chan error, 1)
	go func() {
		var err error
		c, chans, reqs, err = ssh.NewClientConn(conn, net.JoinHostPort(node.Name, "22"), cc)
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(cc.Timeout):
		conn.Close()
		<-done
		err = errors.New("the node's sshd did not finish the handshake in time")
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("logging in to %s as %s: %w", node.Name, login, err)
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// dialNode reaches a node's sshd through its tunnel.
func (p *Proxy) dialNode(ctx context.Context, node nodeInfo, user, sid, clientAddr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := p.tunnels.Dial(dctx, node.Name, tunnel.DialRequest{SessionID: sid, User: user, ClientAddr: clientAddr})
	if errors.Is(err, tunnel.ErrNoTunnel) && node.Addr != "" {
		// The node registered a reachable address (teleport-node join
		// --ssh-addr), or DNS fallback resolved an unregistered target.
		var d net.Dialer
		conn, err = d.DialContext(dctx, "tcp", node.Addr)
		if err != nil {
			return nil, fmt.Errorf("%w, and its address %s does not answer: %v", errNoTunnel, node.Addr, err)
		}
		return conn, nil
	}
	if errors.Is(err, tunnel.ErrNoTunnel) {
		return nil, errNoTunnel
	}
	return conn, err
}

var errNoTunnel = errors.New("the node holds no tunnel to this proxy")

func publicNodeError(node string, err error) string {
	if errors.Is(err, errNoTunnel) {
		return fmt.Sprintf("node %s is not connected to this proxy (its tunnel is down: is teleport-node running there, and can it reach the proxy's tunnel port?)", node)
	}
	var ce *clockError
	if errors.As(err, &ce) {
		return ce.msg
	}
	var se *staleError
	if errors.As(err, &se) {
		return se.msg
	}
	var de *deniedError
	if errors.As(err, &de) {
		return publicMessage(de)
	}
	if isAuthError(err) {
		return fmt.Sprintf("node %s refused the proxy's login (does its sshd trust the session CA? run teleport-node install-sshd-config there; "+
			"is its clock within a few minutes of the CA's? check NTP there)", node)
	}
	return fmt.Sprintf("cannot reach node %s now; try again shortly", node)
}

func isAuthError(err error) bool {
	var se *ssh.ServerAuthError
	return errors.As(err, &se) || strings.Contains(err.Error(), "unable to authenticate")
}

// passThrough relays ssh -J's direct-tcpip stream to the node's sshd
// unopened (mode off): the node authenticates the user itself. Who went
// where, when and how many bytes are audited.
func (p *Proxy) passThrough(ctx context.Context, outer *ssh.ServerConn, nc ssh.NewChannel, node nodeInfo) {
	user := outer.Permissions.Extensions[extUser]
	pol := p.policyNow()
	clientAddr := outer.RemoteAddr().String()
	if len(pol.loginsOn(user, node.ProxyNode)) == 0 {
		msg := fmt.Sprintf("access denied: no role of yours gives a login on node %q", node.Name)
		p.refused(user, clientAddr, "policy", msg)
		_ = nc.Reject(ssh.Prohibited, msg)
		return
	}
	sid := newSessionID()
	conn, err := p.dialNode(ctx, node, user, sid, clientAddr)
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, publicNodeError(node.Name, err))
		return
	}
	defer conn.Close()
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := p.sessions.add(api.Session{
		ID: sid, Proxy: p.Name(), User: user, Node: node.Name, ClientAddr: clientAddr,
		Started: p.cfg.Clock().UTC(), Channels: []string{"ssh (mode off, not recorded)"},
	}, outer.Permissions.Extensions[extSerial], !pol.known(node.Name), cancel)
	defer p.sessions.remove(sid)
	ev := event("session.start", user, true, clientAddr)
	ev.Fields["session"], ev.Fields["node"], ev.Fields["recorded"] = sid, node.Name, "false"
	p.events.add(ev)
	var up, down atomic.Int64
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		n, _ := io.Copy(conn, ch)
		up.Add(n)
		closeWrite(conn)
	}()
	go func() {
		defer wg.Done()
		n, _ := io.Copy(ch, conn)
		down.Add(n)
		_ = ch.CloseWrite()
	}()
	go func() {
		<-ctx.Done()
		conn.Close()
		ch.Close()
	}()
	wg.Wait()
	end := event("session.end", user, true, clientAddr)
	end.Fields["session"], end.Fields["node"] = sid, node.Name
	end.Fields["bytes_in"], end.Fields["bytes_out"] = fmt.Sprint(up.Load()), fmt.Sprint(down.Load())
	if r := s.terminated.Load(); r != nil {
		end.Fields["terminated"] = *r
	}
	p.events.add(end)
}

// refuseSessions tells the user why on every session channel (stderr and
// exit status 1) and closes the connection. It is how a user whose
// certificate is valid learns that the policy, the route or the node
// refused them, instead of a bare "Permission denied".
func refuseSessions(ctx context.Context, conn ssh.Conn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request, msg string) {
	go ssh.DiscardRequests(reqs)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.Prohibited, msg)
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		for r := range creqs {
			switch r.Type {
			case "shell", "exec", "subsystem":
				if r.WantReply {
					_ = r.Reply(true, nil)
				}
				fmt.Fprintf(ch.Stderr(), "teleport-proxy: %s\r\n", msg)
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{1}))
				_ = ch.CloseWrite()
				// Closing the channel (not the connection) lets the
				// client read the message and hang up itself; closing
				// the TCP connection first could reset it and lose the
				// message. The timeout above is the backstop.
				ch.Close()
			default:
				if r.WantReply {
					_ = r.Reply(r.Type == "pty-req" || r.Type == "env", nil)
				}
			}
		}
	}
}
