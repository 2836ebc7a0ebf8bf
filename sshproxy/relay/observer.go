package relay

import "sync"

// Forward kinds passed to [Observer.Forward].
const (
	// KindDirectTCPIP is a "direct-tcpip" channel from the client (ssh -L,
	// ssh -W, ssh -D); the detail is the target "host:port".
	KindDirectTCPIP = "direct-tcpip"
	// KindTCPIPForward is a "tcpip-forward" global request (ssh -R); the
	// detail is the "address:port" to listen on, with the port the node
	// allocated when the client asked for port 0.
	KindTCPIPForward = "tcpip-forward"
	// KindForwardedTCPIP is a "forwarded-tcpip" channel from the node, one
	// connection to a remote forward; the detail is the listening
	// "address:port".
	KindForwardedTCPIP = "forwarded-tcpip"
	// KindAgent is an "auth-agent-req@openssh.com" session request (ssh -A)
	// or an "auth-agent@openssh.com" channel from the node; the detail
	// names which.
	KindAgent = "auth-agent"
	// KindX11 is an "x11-req" session request (ssh -X) or an "x11"
	// channel from the node; the detail names which.
	KindX11 = "x11"
	// KindStreamLocal is a Unix socket forward
	// ("direct-streamlocal@openssh.com" channel or
	// "streamlocal-forward@openssh.com" request), which the relay always
	// refuses; the detail is the socket path.
	KindStreamLocal = "streamlocal"
)

// Observer receives what the proxy records and audits.
//
// The relay calls an Observer inline, from the goroutines that move the
// data, and never calls two of its methods at once for the same
// connection: a method that blocks stalls every channel of that
// connection, and one that takes long slows it down. Implementations must
// return quickly and hand slow work (disk, network) to their own goroutine
// with a bounded queue. Byte slices passed to Output and Input are only
// valid during the call; copy what you keep.
type Observer interface {
	// SessionOpened reports a new "session" channel. ch stays the same
	// pointer for every later call about this channel.
	SessionOpened(ch *Channel)
	// PTY reports a pty-req the node accepted (or one sent without
	// asking for a reply), with the terminal type and its size in
	// characters.
	PTY(ch *Channel, term string, cols, rows uint32)
	// Resize reports a window-change request.
	Resize(ch *Channel, cols, rows uint32)
	// Exec reports an exec request, before the node sees it.
	Exec(ch *Channel, command string)
	// Shell reports a shell request, before the node sees it.
	Shell(ch *Channel)
	// Subsystem reports a subsystem request ("sftp"), before the node
	// sees it.
	Subsystem(ch *Channel, name string)
	// Output reports data from the node: stdout and stderr in the order
	// the relay read them.
	Output(ch *Channel, p []byte)
	// Input reports data from the client.
	Input(ch *Channel, p []byte)
	// Exit reports an exit-status (status set, signal "") or an
	// exit-signal (status nil, signal name without "SIG") from the node.
	Exit(ch *Channel, status *uint32, signal string)
	// SessionClosed reports the end of a session channel, with the bytes
	// relayed from the client (in) and from the node (out). It is the last
	// call for ch.
	SessionClosed(ch *Channel, bytesIn, bytesOut int64)
	// Forward audits a forward (see the Kind constants), including those
	// refused because the user's role does not allow them (allowed false).
	Forward(kind, detail string, allowed bool)
}

// Channel is a session channel as an [Observer] sees it.
type Channel struct {
	// ID numbers the connection's session channels from 1, in the order
	// the relay had them open on both sides.
	ID int
	// Type is the SSH channel type, "session".
	Type string
	// State is free for the Observer, for example to hold a recorder
	// created in SessionOpened. The relay never touches it.
	State any
}

// observer serialises calls to an Observer for one connection and stands
// in for a nil one.
type observer struct {
	mu sync.Mutex
	o  Observer
}

func (ob *observer) call(f func(Observer)) {
	if ob.o == nil {
		return
	}
	ob.mu.Lock()
	defer ob.mu.Unlock()
	f(ob.o)
}

func (ob *observer) forward(kind, detail string, allowed bool) {
	ob.call(func(o Observer) { o.Forward(kind, detail, allowed) })
}
