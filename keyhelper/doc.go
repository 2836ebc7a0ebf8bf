// Package keyhelper is the user's side of the certificate authority: it
// signs in to teleport-ca with a password and a TOTP code, gets a
// short-lived user certificate for a key, and hands both to stock OpenSSH
// through ssh-agent and files, so that plain ssh, scp and sftp log in with
// them. The teleport-keyhelper command is a thin front end to it.
//
// # Trust
//
// The keyhelper trusts the CA's HTTPS API through the TLS root pin the
// administrator hands out (--ca-pin, DESIGN.md section 2) or the system's
// roots. Over that connection it learns the host CA key and writes it as
// the one "@cert-authority" line of a private known_hosts file: hosts of
// the cluster are verified by their host certificates, never by trust on
// first use. The ssh_config block it prints refers to that file and allows
// only certificate host key algorithms for the cluster's hosts.
//
// The block reaches the cluster's hosts through its proxy in two ways:
// ProxyJump, and the proxy's one-hop form, where "LOGIN@NODE" is the user
// name on the proxy (ssh splits user@host at the last "@"), which needs
// only the proxy's own Host block.
//
// [ListSessions] talks to the proxy itself, over SSH as the cluster user
// with the certificate of the last login, to run the proxy's "sessions"
// command. It trusts the proxy as ssh does with the block: an
// ssh.CertChecker accepts only a host certificate, valid now for the
// proxy's address, from the host CA of that known_hosts file; there is no
// fallback to a plain host key.
//
// # State
//
// Everything lives under a per-user directory, ~/.teleport by default
// ($TELEPORT_HOME or --home move it), with one subdirectory per cluster,
// named after the CA's host and port. Directories are 0700 and files 0600,
// owned by the user; a state directory that others can read or change is
// refused rather than used. Files are replaced atomically
// (internal/atomicfile). The sign-in session token in profile.json is a
// secret: it is never printed or logged (see [Secret]).
//
// # Agent entries
//
// A certificate goes into the ssh-agent at $SSH_AUTH_SOCK with a lifetime
// equal to its remaining validity, clamped to what the agent protocol can
// carry (PROTOCOL.agent: a uint32 of seconds), and with the comment
// "teleport-keyhelper <host:port> <user>". That comment is how a later
// login or logout finds and removes the cluster's earlier entries, so
// stale certificates do not pile up in the agent.
//
// # The daemon
//
// [Daemon] is the seed document's key helper (DESIGN.md section 3, "User,
// browser"). It registers the machine once as a device of one user with a
// single-use token: an ECDSA P-256 key made here, and a TLS client
// certificate for it from the CA's TLS root, kept in the cluster's
// device/ directory and renewed at two thirds of its life. Over mutual
// TLS it long-polls the user's sign-in state; when the user signs in on
// the web page it gets a certificate within that sign-in, delivers it as
// login does, renews it at two thirds of its life, and removes it when
// the sign-in ends, the user is locked, or the device is refused. One
// goroutine runs the state machine on an injected clock; waits are
// short and re-read the wall clock, so a suspended laptop catches up on
// resume.
package keyhelper
