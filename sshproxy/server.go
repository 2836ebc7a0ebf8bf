package sshproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"

	"github.com/opensshca/suite/ca/api"
)

// Algorithms offered to users. OpenSSH clients prefer chacha20-poly1305
// whatever the server lists first, and x/crypto's chacha20 has no amd64
// assembly while AES-GCM does (FIELD-NOTES.md: 197 against 309 MiB/s), so
// on CPUs with AES instructions the proxy offers only AES-GCM. No SHA-1,
// no CBC, no non-AEAD cipher.
func sshAlgorithms() ssh.Config {
	ciphers := []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM}
	if !hasAESHardware() {
		ciphers = append(ciphers, ssh.CipherChaCha20Poly1305)
	}
	return ssh.Config{
		KeyExchanges: []string{ssh.KeyExchangeMLKEM768X25519, ssh.KeyExchangeCurve25519, ssh.KeyExchangeECDHP256},
		Ciphers:      ciphers,
		MACs:         []string{ssh.HMACSHA256ETM, ssh.HMACSHA512ETM},
	}
}

func hasAESHardware() bool {
	switch runtime.GOARCH {
	case "amd64":
		return cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ
	case "arm64":
		return cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
	}
	return false
}

// Permission extension keys the user authentication leaves for later
// stages (not sent anywhere).
const (
	extUser   = "teleport-user@opensshca"
	extSerial = "teleport-serial@opensshca"
	extKey    = "teleport-key@opensshca"
	// extDeny holds why a user whose certificate is valid may still not
	// log in as the login asked for; the session refuses with it.
	extDeny = "teleport-deny@opensshca"
)

// serve accepts user connections until the listener closes.
func (p *Proxy) serve(ctx context.Context) error {
	limit := &handshakeLimit{max: p.cfg.MaxUnauthenticated, perSource: p.cfg.MaxUnauthenticatedPerSource}
	for {
		conn, err := p.listener.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return err
		}
		release, ok, why := limit.acquire(conn.RemoteAddr())
		if !ok {
			p.log.Warn(why+"; closing a new one", "remote", conn.RemoteAddr().String())
			conn.Close()
			continue
		}
		go p.handleConn(ctx, conn, release)
	}
}

// serverConfig is the configuration for one user connection.
func (p *Proxy) serverConfig(pol *policy) *ssh.ServerConfig {
	sc := &ssh.ServerConfig{
		Config:        sshAlgorithms(),
		ServerVersion: "SSH-2.0-teleport-proxy",
		MaxAuthTries:  6,
		PublicKeyCallback: func(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			return p.authUser(pol, conn, key, "")
		},
	}
	sc.AddHostKey(p.currentHostSigner())
	return sc
}

// connMeta overrides the user name a CertChecker checks principals for.
type connMeta struct {
	ssh.ConnMetadata
	user string
}

func (c connMeta) User() string { return c.user }

// authUser accepts a user certificate from the user CA, valid now, not
// revoked, whose user is in the policy and not locked. For a
// "login@target" user name the certificate must carry login; otherwise
// any of its principals will do (the outer connection of ssh -J logs in
// nowhere). wantUser, when set, must be the certificate's user (the inner
// connection of ssh -J must be the same user as the outer one).
func (p *Proxy) authUser(pol *policy, conn ssh.ConnMetadata, key ssh.PublicKey, wantUser string) (*ssh.Permissions, error) {
	cert, ok := key.(*ssh.Certificate)
	remote := conn.RemoteAddr().String()
	if !ok {
		p.log.Debug("refused a plain key: only user certificates are accepted", "remote", remote, "user", conn.User())
		return nil, errors.New("only certificates from the user CA are accepted")
	}
	// The login is checked against the certificate's principals after
	// authentication, so that a user whose certificate lacks it is told
	// so (refuseSessions) instead of a bare "Permission denied".
	login := ""
	if l, _, single := splitTarget(conn.User()); single {
		login = l
	} else if wantUser != "" {
		login = conn.User()
	}
	principal := conn.User()
	if login != "" {
		principal = login
	}
	if !slices.Contains(cert.ValidPrincipals, principal) && len(cert.ValidPrincipals) > 0 {
		principal = cert.ValidPrincipals[0]
	}
	if _, err := p.userCertChecker(pol).Authenticate(connMeta{conn, principal}, key); err != nil {
		if msg := p.clockRefusal(pol, connMeta{conn, principal}, cert); msg != "" {
			// ssh prints an authentication banner on stderr: the user
			// learns that the clocks, not the certificate, are wrong.
			p.refused(cert.KeyId, remote, "certificate", err.Error()+": "+msg)
			return nil, &ssh.BannerError{Err: err, Message: "teleport-proxy: " + msg + "\n"}
		}
		p.refused(cert.KeyId, remote, "certificate", err.Error())
		return nil, refusedBanner(err, certRefusal(pol, cert, err))
	}
	// x/crypto enforces source-address only on the Permissions a callback
	// returns; the proxy checks it here, explicitly, and returns it too.
	if err := checkSourceAddress(conn.RemoteAddr(), cert.CriticalOptions["source-address"]); err != nil {
		p.refused(cert.KeyId, remote, "certificate", err.Error())
		return nil, refusedBanner(err, err.Error())
	}
	user := cert.KeyId
	if wantUser != "" && user != wantUser {
		p.refused(user, remote, "certificate", fmt.Sprintf("inner connection as %q inside a connection of %q", user, wantUser))
		return nil, errors.New("certificate user differs from the jump connection's")
	}
	if _, err := pol.activeUser(user); err != nil {
		p.refused(user, remote, "policy", err.Error())
		return nil, refusedBanner(err, publicMessage(err))
	}
	perms := &ssh.Permissions{CriticalOptions: maps.Clone(cert.CriticalOptions), Extensions: map[string]string{
		extUser:   user,
		extSerial: fmt.Sprint(cert.Serial),
		extKey:    ssh.FingerprintSHA256(cert.Key),
	}}
	if login != "" && !slices.Contains(cert.ValidPrincipals, login) {
		perms.Extensions[extDeny] = fmt.Sprintf("access denied: your certificate does not carry login %q (it carries %s); if your roles now give it, get a new certificate with teleport-keyhelper login",
			login, strings.Join(cert.ValidPrincipals, ", "))
	}
	return perms, nil
}

// checkSourceAddress enforces a certificate's source-address critical
// option (PROTOCOL.certkeys: a comma-separated list of addresses or CIDR
// blocks the certificate may be used from).
func checkSourceAddress(remote net.Addr, option string) error {
	if option == "" {
		return nil
	}
	tcp, ok := remote.(*net.TCPAddr)
	if !ok {
		return fmt.Errorf("source-address: cannot check a %T remote address", remote)
	}
	ip, ok := netip.AddrFromSlice(tcp.IP)
	if !ok {
		return errors.New("source-address: bad remote address")
	}
	ip = ip.Unmap()
	for _, s := range strings.Split(option, ",") {
		if pfx, err := netip.ParsePrefix(s); err == nil {
			if pfx.Contains(ip) {
				return nil
			}
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil && a.Unmap() == ip {
			return nil
		}
	}
	return fmt.Errorf("source-address: %s is not allowed by the certificate (%s)", ip, option)
}

// refused logs and audits a refused authentication.
func (p *Proxy) refused(user, remote, stage, reason string) {
	p.log.Info("login refused", "user", user, "remote", remote, "stage", stage, "reason", reason)
	ev := event("proxy.auth", user, false, remote)
	ev.Fields["reason"] = reason
	if !validUser(user) {
		ev.User = ""
	}
	p.events.add(ev)
}

// splitTarget splits the single-hop user name "login@target" at the last
// '@' (ssh splits user@host at the last '@', so the user name itself may
// hold one).
func splitTarget(user string) (login, target string, ok bool) {
	i := strings.LastIndexByte(user, '@')
	if i <= 0 || i == len(user)-1 {
		return "", "", false
	}
	return user[:i], user[i+1:], true
}

// handleConn runs one user connection.
func (p *Proxy) handleConn(ctx context.Context, conn net.Conn, release func()) {
	pol := p.policyNow()
	// Deadlines are on the real clock: the injected Clock is for
	// certificate validity and may be skewed (TestClockSkew).
	_ = conn.SetDeadline(time.Now().Add(p.cfg.HandshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(conn, p.serverConfig(pol))
	release()
	if err != nil {
		p.log.Debug("handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	defer sconn.Close()
	p.log.Debug("user connected", "user", sconn.Permissions.Extensions[extUser], "remote", conn.RemoteAddr().String(), "as", sconn.User())
	if login, target, single := splitTarget(sconn.User()); single {
		p.singleHop(ctx, sconn, chans, reqs, login, target)
		return
	}
	p.jumpHost(ctx, sconn, chans, reqs)
}

// jumpHost serves the outer connection of ssh -J: direct-tcpip channels
// to nodes, and a session channel that tells the user what they can
// reach.
func (p *Proxy) jumpHost(ctx context.Context, sconn *ssh.ServerConn, chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go keepalive(ctx, sconn, p.cfg.ClientKeepalive, cancel)
	go ssh.DiscardRequests(reqs)
	var open atomic.Int64
	for nc := range chans {
		switch nc.ChannelType() {
		case "direct-tcpip":
			if open.Add(1) > maxJumpChannels {
				open.Add(-1)
				_ = nc.Reject(ssh.ResourceShortage, fmt.Sprintf("at most %d connections through one jump connection", maxJumpChannels))
				continue
			}
			go func() {
				defer open.Add(-1)
				p.directTCPIP(ctx, sconn, nc)
			}()
		case "session":
			go p.proxySession(ctx, sconn, nc)
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "this proxy relays ssh -J connections (direct-tcpip) only")
		}
	}
}

// maxJumpChannels caps the nodes one ssh -J connection may be connected
// to at once (OpenSSH's ControlMaster multiplexes several sessions over
// one jump connection; far more is a client misbehaving).
const maxJumpChannels = 64

// keepalive probes the client every interval and closes the connection
// after three unanswered probes.
func keepalive(ctx context.Context, conn ssh.Conn, every time.Duration, cancel func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	misses := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				cancel()
				conn.Close()
				return
			}
			misses = 0
		case <-time.After(every):
			if misses++; misses >= 3 {
				cancel()
				conn.Close()
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// directTCPIPPayload is RFC 4254 section 7.2.
type directTCPIPPayload struct {
	Host       string
	Port       uint32
	OriginAddr string
	OriginPort uint32
}

func (p *Proxy) directTCPIP(ctx context.Context, sconn *ssh.ServerConn, nc ssh.NewChannel) {
	var req directTCPIPPayload
	if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	user := sconn.Permissions.Extensions[extUser]
	pol := p.policyNow()
	node, err := p.route(pol, user, req.Host, req.Port)
	if err != nil {
		p.refused(user, sconn.RemoteAddr().String(), "route", fmt.Sprintf("%s: %v", req.Host, err))
		_ = nc.Reject(ssh.ConnectionFailed, publicMessage(err))
		return
	}
	if pol.recording() {
		p.terminate(ctx, sconn, nc, node)
		return
	}
	p.passThrough(ctx, sconn, nc, node)
}

// proxySession answers "ssh -p 3023 alice@proxy" (no target): the list of
// nodes the user may log in to, or, for the "sessions" command, the
// active sessions on them (teleport-keyhelper sessions).
func (p *Proxy) proxySession(ctx context.Context, sconn *ssh.ServerConn, nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	user := sconn.Permissions.Extensions[extUser]
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			return
		case r, ok := <-reqs:
			if !ok {
				return
			}
			switch r.Type {
			case "pty-req", "env", "window-change":
				if r.WantReply {
					_ = r.Reply(r.Type != "window-change", nil)
				}
				continue
			case "shell", "exec":
				var cmd struct{ Command string }
				if r.Type == "exec" {
					_ = ssh.Unmarshal(r.Payload, &cmd)
				}
				if r.WantReply {
					_ = r.Reply(true, nil)
				}
				status := p.proxyCommand(ctx, ch, user, strings.TrimSpace(cmd.Command))
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
				return
			default:
				if r.WantReply {
					_ = r.Reply(false, nil)
				}
			}
		}
	}
}

// proxyCommand runs one of the proxy's own commands for a user.
func (p *Proxy) proxyCommand(ctx context.Context, ch ssh.Channel, user, cmd string) uint32 {
	pol := p.policyNow()
	switch cmd {
	case "", "nodes":
		fmt.Fprintf(ch, "This is teleport-proxy %s, a jump host. Log in to a node with\r\n  ssh -J %s@%s LOGIN@NODE\r\nor in one hop\r\n  ssh -p PORT LOGIN@NODE@HOST\r\n\r\nNodes you may log in to:\r\n", p.Name(), user, p.cfg.PublicAddr)
		for _, name := range sortedNodeNames(pol) {
			if logins := pol.loginsOn(user, pol.nodes[name]); len(logins) > 0 {
				fmt.Fprintf(ch, "  %-30s %s\r\n", name, strings.Join(logins, ","))
			}
		}
		return 0
	case "sessions", "sessions --json":
		list, err := p.visibleSessions(ctx, pol, user)
		if err != nil {
			fmt.Fprintf(ch.Stderr(), "cannot list sessions: %v\r\n", err)
			return 1
		}
		if cmd == "sessions --json" {
			writeJSONTo(ch, list)
			return 0
		}
		writeSessionsTable(ch, list)
		return 0
	default:
		fmt.Fprintf(ch.Stderr(), "teleport-proxy runs no commands but \"nodes\" and \"sessions\"; to reach a node use ssh -J %s@%s LOGIN@NODE\r\n", user, p.cfg.PublicAddr)
		return 2
	}
}

// route resolves a target for a user: a registered node name or
// principal, or a label query, then, in mode off with DNS fallback on, any
// other host name (as a node without labels, so only roles that select
// every node reach it). Unknown targets get the names of similar nodes
// the user can reach.
func (p *Proxy) route(pol *policy, user, target string, port uint32) (nodeInfo, error) {
	n, err := pol.resolve(target)
	if errors.Is(err, errUnknownNode) && p.cfg.DNSFallback && !pol.recording() && validHostName(target) {
		return nodeInfo{ProxyNode: api.ProxyNode{Name: target, Addr: net.JoinHostPort(target, fmt.Sprint(port))}}, nil
	}
	if errors.Is(err, errUnknownNode) {
		msg := fmt.Sprintf("no node %q is registered", target)
		if s := pol.suggestions(user, target); len(s) > 0 {
			msg += "; similar nodes you can reach: " + strings.Join(s, ", ")
		}
		return nodeInfo{}, denied(msg, "unknown target %q", target)
	}
	if err != nil {
		return nodeInfo{}, err
	}
	return nodeInfo{ProxyNode: n}, nil
}

// validHostName is a DNS name or an IP address, nothing that could carry
// options or paths.
func validHostName(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Zone() == "" // a zone may hold anything ("fe80::1% x,y")
	}
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// closeWrite half-closes what supports it.
func closeWrite(w io.Writer) {
	if cw, ok := w.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}
