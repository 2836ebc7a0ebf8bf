package relay

import (
	"golang.org/x/crypto/ssh"
)

// handleDirectTCPIP relays a direct-tcpip channel (ssh -L, -W, -D) from the
// client if the role allows port forwarding. The node's sshd opens the
// connection and applies its own rules (AllowTcpForwarding, PermitOpen).
func (r *relay) handleDirectTCPIP(nc ssh.NewChannel) {
	p, err := parseTCPIPChannel(nc.ExtraData())
	if err != nil {
		r.obs.forward(KindDirectTCPIP, "(malformed)", false)
		r.log.Info("relay: refused malformed direct-tcpip channel", "err", err)
		_ = nc.Reject(ssh.ConnectionFailed, "malformed channel open")
		return
	}
	target := hostPort(p.Host, p.Port)
	log := r.log.With("type", chanDirectTCPIP, "target", target)
	r.obs.forward(KindDirectTCPIP, target, r.perms.PortForwarding)
	if !r.perms.PortForwarding {
		log.Info("relay: refused local forward: port forwarding not permitted")
		_ = nc.Reject(ssh.Prohibited, "port forwarding not permitted")
		return
	}
	out, outReqs, err := r.out.OpenChannel(chanDirectTCPIP, nc.ExtraData())
	if err != nil {
		log.Info("relay: node refused direct-tcpip channel", "err", err)
		rejectLike(nc, err)
		return
	}
	in, inReqs, err := nc.Accept()
	if err != nil {
		log.Debug("relay: accepting direct-tcpip channel", "err", err)
		_ = out.Close()
		ssh.DiscardRequests(outReqs)
		return
	}
	log.Debug("relay: direct-tcpip channel opened")
	splice(in, inReqs, out, outReqs)
	log.Debug("relay: direct-tcpip channel closed")
}

// handleNodeChannel relays a channel the node opens toward the client: a
// connection to a remote forward, to the forwarded agent, or to the
// forwarded X11 display, each only if the role allows it.
func (r *relay) handleNodeChannel(nc ssh.NewChannel) {
	typ := nc.ChannelType()
	var kind, detail string
	var allowed bool
	switch typ {
	case chanForwardedTCPIP:
		kind, allowed = KindForwardedTCPIP, r.perms.PortForwarding
		p, err := parseTCPIPChannel(nc.ExtraData())
		if err != nil {
			r.malformedNodeChannel(nc, kind, err)
			return
		}
		detail = hostPort(p.Host, p.Port)
	case chanAgent:
		kind, detail, allowed = KindAgent, chanAgent, r.perms.AgentForwarding
	case chanX11:
		kind, allowed = KindX11, r.perms.X11Forwarding
		p, err := parseX11Channel(nc.ExtraData())
		if err != nil {
			r.malformedNodeChannel(nc, kind, err)
			return
		}
		detail = chanX11 + " from " + hostPort(p.OrigHost, p.OrigPort)
	default:
		_ = nc.Reject(ssh.UnknownChannelType, "unknown channel type")
		return
	}
	log := r.log.With("type", typ, "detail", detail)
	r.obs.forward(kind, detail, allowed)
	if !allowed {
		log.Info("relay: refused channel from node: not permitted")
		_ = nc.Reject(ssh.Prohibited, "not permitted")
		return
	}
	in, inReqs, err := r.in.OpenChannel(typ, nc.ExtraData())
	if err != nil {
		log.Info("relay: client refused channel", "err", err)
		rejectLike(nc, err)
		return
	}
	out, outReqs, err := nc.Accept()
	if err != nil {
		log.Debug("relay: accepting channel from node", "err", err)
		_ = in.Close()
		ssh.DiscardRequests(inReqs)
		return
	}
	log.Debug("relay: channel from node opened")
	splice(in, inReqs, out, outReqs)
	log.Debug("relay: channel from node closed")
}

func (r *relay) malformedNodeChannel(nc ssh.NewChannel, kind string, err error) {
	r.obs.forward(kind, "(malformed)", false)
	r.log.Warn("relay: node opened a malformed channel", "type", nc.ChannelType(), "err", err)
	_ = nc.Reject(ssh.ConnectionFailed, "malformed channel open")
}
