// Package tunnel holds the reverse tunnels that nodes keep open to the
// recording SSH proxy, so that a node needs no inbound port: the node dials
// the proxy's tunnel listener (default :3024) as an SSH client and keeps the
// connection up, and the proxy later opens channels over it, each asking the
// node to connect to its own sshd.
//
// Both ends authenticate with host certificates from the cluster host CA
// (DESIGN.md §2; certificate format in OpenSSH's PROTOCOL.certkeys):
//
//   - The node ([Client]) logs in with its host key and host certificate, the
//     same pair its sshd serves. The SSH user name is the node name; the proxy
//     ([Server]) accepts only a host certificate (never a user certificate or
//     a plain key) signed by a current host CA key, inside its validity
//     window, listing that name among its principals, for a name the CA has
//     registered. [ssh.CertChecker.Authenticate] accepts only user
//     certificates, so the server has its own callback.
//   - The proxy presents a host certificate from the same CA; the node accepts
//     it only if one of its principals is the host part of the address it
//     dialled, as ssh(1) does with an @cert-authority line in known_hosts.
//     Plain host keys are refused.
//
// A proxy asks for a connection by opening a channel of type [ChannelType]
// whose extra data is a [DialRequest] (session id, user, client address),
// which the node only logs. The node then connects to its configured
// [Client.Target] (default 127.0.0.1:22) and nothing else: the proxy cannot
// name a destination, so a compromised proxy reaches no more than each
// node's sshd, where the node's own sshd_config, TrustedUserCAKeys and
// teleport-authkeys still decide who logs in. The node accepts no other
// channel type, and the proxy accepts no channel from the node at all.
//
// Either end sends keepalive@openssh.com requests and drops a connection
// whose peer stops answering; the node reconnects with exponential backoff.
// A node that connects again replaces its previous tunnel on that proxy.
// [Pool] keeps one [Client] per proxy address.
//
// Algorithms: key exchange mlkem768x25519-sha256 or curve25519-sha256;
// ciphers aes128-gcm, aes256-gcm or chacha20-poly1305 (all AEAD, so no MAC
// is used); certificates signed with ed25519, ECDSA or rsa-sha2-256/512.
// Nothing SHA-1, nothing CBC.
package tunnel
