// Package relay joins the two halves of a recording jump proxy connection:
// the user's inner SSH connection, which the proxy has terminated as an SSH
// server, and the proxy's own SSH client connection to the node's real sshd.
// [Relay] passes every channel and request between them (shell, exec, sftp
// and other subsystems, window changes, signals, exit status, agent, port
// and X11 forwarding) and reports what it sees to an [Observer], which
// records terminal sessions and writes the audit trail (DESIGN.md §3,
// "Connection" and "Recording").
//
// Every forward is gated by the user's role permissions ([Permissions]),
// which the proxy derives from the same role that allowed the login and
// that the CA writes into user certificates as the permit-agent-forwarding,
// permit-port-forwarding, permit-X11-forwarding and permit-pty extensions
// (PROTOCOL.certkeys). The node's sshd sees only the proxy's short-lived
// session certificate, so the relay enforces the user's limits itself: a
// request the role does not allow is refused at the proxy and never reaches
// the node, and is still reported through [Observer.Forward]. Requests and
// channel types the relay does not know are refused rather than passed on,
// and the proxy answers the client's keepalives itself.
//
// Channel semantics follow RFC 4254 and OpenSSH's PROTOCOL: stdout and
// stderr stay separate, end of file is a half-close in each direction, and
// a session's exit-status or exit-signal reaches the client before the
// channel closes, so that ssh(1) exits with the remote command's status.
//
// Memory per channel is bounded: data is copied through one fixed 32 KiB
// buffer per direction and stream, read as soon as it arrives, and handed
// to the Observer as a slice of that buffer; nothing is queued for a slow
// observer. Beyond that, x/crypto/ssh buffers at most one channel window
// (2 MiB) per direction while the far side is slow to read.
package relay
