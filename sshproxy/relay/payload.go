package relay

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"golang.org/x/crypto/ssh"
)

// Request and channel-open payloads the relay reads, in the layouts of
// RFC 4254 (sections 6.2, 6.5, 6.7, 6.10, 7.1, 7.2 and 6.3.2) and
// OpenSSH's PROTOCOL (2.4, streamlocal). ssh.Unmarshal rejects a payload
// that is truncated, declares a string longer than what follows, or has
// bytes left over.

// ptyRequest is the "pty-req" payload.
type ptyRequest struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32 // pixels
	Modes         string // encoded terminal modes
}

// windowChange is the "window-change" payload.
type windowChange struct {
	Cols, Rows    uint32
	Width, Height uint32
}

// execRequest is the "exec" payload.
type execRequest struct {
	Command string
}

// subsystemRequest is the "subsystem" payload.
type subsystemRequest struct {
	Name string
}

// exitStatus is the "exit-status" payload.
type exitStatus struct {
	Status uint32
}

// exitSignal is the "exit-signal" payload.
type exitSignal struct {
	Signal     string // without "SIG"
	CoreDumped bool
	Message    string
	Lang       string
}

// x11Request is the "x11-req" payload. The cookie is a secret: never log
// or report it.
type x11Request struct {
	SingleConnection bool
	AuthProtocol     string
	AuthCookie       string
	Screen           uint32
}

// forwardRequest is the "tcpip-forward" and "cancel-tcpip-forward" payload.
type forwardRequest struct {
	Addr string
	Port uint32
}

// forwardReply is the reply to a "tcpip-forward" for port 0.
type forwardReply struct {
	Port uint32
}

// tcpipChannel is the extra data of "direct-tcpip" (target, originator) and
// "forwarded-tcpip" (listening address, originator) channels.
type tcpipChannel struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

// x11Channel is the extra data of "x11" channels.
type x11Channel struct {
	OrigHost string
	OrigPort uint32
}

// streamLocalChannel is the extra data of
// "direct-streamlocal@openssh.com" channels.
type streamLocalChannel struct {
	Path      string
	Reserved  string
	Reserved2 uint32
}

// streamLocalForward is the "streamlocal-forward@openssh.com" payload.
type streamLocalForward struct {
	Path string
}

// errMalformed is wrapped by every parse error.
var errMalformed = errors.New("relay: malformed payload")

func parse[T any](what string, p []byte) (T, error) {
	var v T
	if err := ssh.Unmarshal(p, &v); err != nil {
		return v, fmt.Errorf("%w: %s (%d bytes): %v", errMalformed, what, len(p), err)
	}
	return v, nil
}

func parsePTYRequest(p []byte) (ptyRequest, error) { return parse[ptyRequest]("pty-req", p) }
func parseWindowChange(p []byte) (windowChange, error) {
	return parse[windowChange]("window-change", p)
}
func parseExec(p []byte) (execRequest, error) { return parse[execRequest]("exec", p) }
func parseSubsystem(p []byte) (subsystemRequest, error) {
	return parse[subsystemRequest]("subsystem", p)
}
func parseExitStatus(p []byte) (exitStatus, error) { return parse[exitStatus]("exit-status", p) }
func parseExitSignal(p []byte) (exitSignal, error) { return parse[exitSignal]("exit-signal", p) }
func parseX11Request(p []byte) (x11Request, error) { return parse[x11Request]("x11-req", p) }
func parseForwardRequest(p []byte) (forwardRequest, error) {
	return parse[forwardRequest]("tcpip-forward", p)
}
func parseForwardReply(p []byte) (forwardReply, error) {
	return parse[forwardReply]("tcpip-forward reply", p)
}
func parseTCPIPChannel(p []byte) (tcpipChannel, error) {
	return parse[tcpipChannel]("tcpip channel", p)
}
func parseX11Channel(p []byte) (x11Channel, error) { return parse[x11Channel]("x11 channel", p) }
func parseStreamLocalChannel(p []byte) (streamLocalChannel, error) {
	return parse[streamLocalChannel]("direct-streamlocal", p)
}
func parseStreamLocalForward(p []byte) (streamLocalForward, error) {
	return parse[streamLocalForward]("streamlocal-forward", p)
}

// hostPort formats an address and port for audit records.
func hostPort(host string, port uint32) string {
	return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
}
