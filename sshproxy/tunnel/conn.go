package tunnel

import (
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// errNoDeadline is what the deadline methods of a tunnel connection return.
var errNoDeadline = fmt.Errorf("tunnel: deadlines on a tunnel channel: %w", errors.ErrUnsupported)

// channelConn is the net.Conn Server.Dial returns: one channel on a node's
// tunnel, connected to the node's sshd.
//
// Its addresses are those of the tunnel's TCP connection: LocalAddr is the
// proxy's end, RemoteAddr the node's. It has CloseWrite, which sends EOF on
// the channel. Like the net.Conn x/crypto's ssh.Client.Dial returns, it
// does not support deadlines: SetDeadline, SetReadDeadline and
// SetWriteDeadline return an error matching errors.ErrUnsupported and change
// nothing. Bound a handshake over it with a timer that calls Close.
type channelConn struct {
	ssh.Channel
	local, remote net.Addr
}

func (c *channelConn) LocalAddr() net.Addr  { return c.local }
func (c *channelConn) RemoteAddr() net.Addr { return c.remote }

func (c *channelConn) SetDeadline(time.Time) error      { return errNoDeadline }
func (c *channelConn) SetReadDeadline(time.Time) error  { return errNoDeadline }
func (c *channelConn) SetWriteDeadline(time.Time) error { return errNoDeadline }
