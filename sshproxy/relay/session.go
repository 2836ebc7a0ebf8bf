package relay

import (
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
)

// Session request names (RFC 4254 section 6 and OpenSSH's PROTOCOL).
const (
	reqPTY          = "pty-req"
	reqX11          = "x11-req"
	reqEnv          = "env"
	reqShell        = "shell"
	reqExec         = "exec"
	reqSubsystem    = "subsystem"
	reqWindowChange = "window-change"
	reqSignal       = "signal"
	reqBreak        = "break"
	reqAgent        = "auth-agent-req@openssh.com"
	reqExitStatus   = "exit-status"
	reqExitSignal   = "exit-signal"
	reqXonXoff      = "xon-xoff"
)

// session is one relayed "session" channel: in is the client's end, out
// the node's.
type session struct {
	r       *relay
	ch      *Channel
	in, out ssh.Channel
	log     *slog.Logger

	started   chan struct{} // closed once shell, exec or subsystem was relayed
	startOnce sync.Once

	bytesIn, bytesOut atomic.Int64
}

// handleSession opens a session on the node for a session channel from
// the client and relays the two until both have closed.
func (r *relay) handleSession(nc ssh.NewChannel) {
	if r.noMoreSessions.Load() {
		r.log.Info("relay: refused session after no-more-sessions@openssh.com")
		_ = nc.Reject(ssh.Prohibited, "no more sessions")
		return
	}
	out, outReqs, err := r.out.OpenChannel(chanSession, nil)
	if err != nil {
		r.log.Info("relay: node refused session channel", "err", err)
		rejectLike(nc, err)
		return
	}
	in, inReqs, err := nc.Accept()
	if err != nil {
		r.log.Debug("relay: accepting session channel", "err", err)
		_ = out.Close()
		ssh.DiscardRequests(outReqs)
		return
	}
	s := &session{
		r:       r,
		ch:      &Channel{ID: int(r.sessions.Add(1)), Type: chanSession},
		in:      in,
		out:     out,
		started: make(chan struct{}),
	}
	s.log = r.log.With("session", s.ch.ID)
	s.log.Debug("relay: session opened")
	r.obs.call(func(o Observer) { o.SessionOpened(s.ch) })

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		direction{
			dst: out, src: in, reqs: inReqs,
			handle:    s.clientRequest,
			observe:   s.input,
			beforeEOF: s.waitStarted,
		}.run()
	}()
	go func() {
		defer wg.Done()
		direction{
			dst: in, src: out, reqs: outReqs,
			handle:  s.nodeRequest,
			stderr:  true,
			observe: s.output,
		}.run()
	}()
	wg.Wait()

	bytesIn, bytesOut := s.bytesIn.Load(), s.bytesOut.Load()
	s.log.Debug("relay: session closed", "bytes_in", bytesIn, "bytes_out", bytesOut)
	r.obs.call(func(o Observer) { o.SessionClosed(s.ch, bytesIn, bytesOut) })
}

func (s *session) input(p []byte) {
	s.bytesIn.Add(int64(len(p)))
	s.r.obs.call(func(o Observer) { o.Input(s.ch, p) })
}

func (s *session) output(p []byte) {
	s.bytesOut.Add(int64(len(p)))
	s.r.obs.call(func(o Observer) { o.Output(s.ch, p) })
}

// waitStarted holds the client's EOF back until the node has the shell,
// exec or subsystem request (or the client closed the channel). Requests
// and data travel separately through the relay, and an EOF that overtook
// the exec request would reach sshd before the command has a stdin.
func (s *session) waitStarted(reqsDone <-chan struct{}) {
	select {
	case <-s.started:
	case <-reqsDone:
	}
}

// clientRequest checks, observes and relays one request from the client.
func (s *session) clientRequest(req *ssh.Request) {
	perms := s.r.perms
	var accepted func() // observation once the node accepted the request
	start := false
	switch req.Type {
	case reqPTY:
		if !perms.PTY {
			s.refuse(req, "pty not permitted")
			return
		}
		p, err := parsePTYRequest(req.Payload)
		if err != nil {
			s.malformed(req, err)
			return
		}
		accepted = func() { s.r.obs.call(func(o Observer) { o.PTY(s.ch, p.Term, p.Cols, p.Rows) }) }
	case reqWindowChange:
		p, err := parseWindowChange(req.Payload)
		if err != nil {
			s.malformed(req, err)
			return
		}
		s.r.obs.call(func(o Observer) { o.Resize(s.ch, p.Cols, p.Rows) })
	case reqExec:
		p, err := parseExec(req.Payload)
		if err != nil {
			s.malformed(req, err)
			return
		}
		s.r.obs.call(func(o Observer) { o.Exec(s.ch, p.Command) })
		start = true
	case reqShell:
		s.r.obs.call(func(o Observer) { o.Shell(s.ch) })
		start = true
	case reqSubsystem:
		p, err := parseSubsystem(req.Payload)
		if err != nil {
			s.malformed(req, err)
			return
		}
		s.r.obs.call(func(o Observer) { o.Subsystem(s.ch, p.Name) })
		start = true
	case reqEnv, reqSignal, reqBreak, reqEOW:
		// Passed on; the node's sshd decides (AcceptEnv and so on).
	case reqAgent:
		s.r.obs.forward(KindAgent, s.detail(req.Type), perms.AgentForwarding)
		if !perms.AgentForwarding {
			s.refuse(req, "agent forwarding not permitted")
			return
		}
	case reqX11:
		if _, err := parseX11Request(req.Payload); err != nil {
			s.malformed(req, err)
			return
		}
		s.r.obs.forward(KindX11, s.detail(req.Type), perms.X11Forwarding)
		if !perms.X11Forwarding {
			s.refuse(req, "x11 forwarding not permitted")
			return
		}
	default:
		// Including keepalive@openssh.com, which the relay answers itself.
		s.log.Debug("relay: refused unknown session request", "request", req.Type)
		_ = req.Reply(false, nil)
		return
	}
	ok, err := s.out.SendRequest(req.Type, req.WantReply, req.Payload)
	if err != nil {
		s.log.Debug("relay: relaying session request", "request", req.Type, "err", err)
		ok = false
	}
	if start {
		s.startOnce.Do(func() { close(s.started) })
	}
	if accepted != nil && (ok || !req.WantReply) {
		accepted()
	}
	s.log.Debug("relay: relayed session request", "request", req.Type, "ok", ok)
	_ = req.Reply(ok, nil)
}

// nodeRequest observes and relays one request from the node.
func (s *session) nodeRequest(req *ssh.Request) {
	switch req.Type {
	case reqExitStatus:
		if p, err := parseExitStatus(req.Payload); err == nil {
			s.r.obs.call(func(o Observer) { o.Exit(s.ch, &p.Status, "") })
		} else {
			s.log.Warn("relay: node sent a malformed request", "request", req.Type, "err", err)
		}
	case reqExitSignal:
		if p, err := parseExitSignal(req.Payload); err == nil {
			s.r.obs.call(func(o Observer) { o.Exit(s.ch, nil, p.Signal) })
		} else {
			s.log.Warn("relay: node sent a malformed request", "request", req.Type, "err", err)
		}
	case reqEOW, reqKeepalive, reqXonXoff:
	default:
		s.log.Debug("relay: refused unknown session request from node", "request", req.Type)
		_ = req.Reply(false, nil)
		return
	}
	ok, err := s.in.SendRequest(req.Type, req.WantReply, req.Payload)
	_ = req.Reply(ok && err == nil, nil)
}

// refuse refuses a request the user's roles do not permit. OpenSSH asks
// for agent and X11 forwarding without wanting a reply, so the refusal
// alone would go unseen: the user is told on the session's stderr.
func (s *session) refuse(req *ssh.Request, why string) {
	s.log.Info("relay: refused session request", "request", req.Type, "reason", why)
	_ = req.Reply(false, nil)
	_, _ = fmt.Fprintf(s.in.Stderr(), "teleport-proxy: %s by your roles on this node\r\n", why)
}

func (s *session) malformed(req *ssh.Request, err error) {
	s.log.Info("relay: refused malformed session request", "request", req.Type, "err", err)
	_ = req.Reply(false, nil)
}

// detail names a session request for an audit record.
func (s *session) detail(request string) string {
	return request + " on session " + strconv.Itoa(s.ch.ID)
}
