package keyhelper

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// AgentEnv is the environment variable that names the ssh-agent socket.
const AgentEnv = "SSH_AUTH_SOCK"

// agentTimeout bounds one conversation with the agent, so a wedged agent
// cannot hang the keyhelper.
const agentTimeout = 10 * time.Second

// commentPrefix starts the comment of every agent entry the keyhelper
// adds.
const commentPrefix = "teleport-keyhelper "

// ErrNoAgent reports that $SSH_AUTH_SOCK is not set.
var ErrNoAgent = errors.New("keyhelper: no ssh-agent: $SSH_AUTH_SOCK is not set; start one with: eval \"$(ssh-agent)\" (or log in to a desktop session that runs one)")

// AgentError reports an ssh-agent that could not be reached or that
// refused a request.
type AgentError struct {
	Socket string
	Op     string // "connecting", "adding the certificate", ...
	Err    error
}

func (e *AgentError) Error() string {
	return fmt.Sprintf("keyhelper: ssh-agent at %s: %s: %v", e.Socket, e.Op, e.Err)
}

func (e *AgentError) Unwrap() error { return e.Err }

// AgentComment returns the comment of the agent entry for user's
// certificate from the cluster s: "teleport-keyhelper <host:port> <user>".
func AgentComment(s Server, user string) string {
	return commentPrefix + s.Addr() + " " + user
}

// isClusterEntry reports whether an agent comment names an entry of s, for
// any user.
func isClusterEntry(comment string, s Server) bool {
	return strings.HasPrefix(comment, commentPrefix+s.Addr()+" ")
}

// Agent is a connection to an ssh-agent.
type Agent struct {
	socket string
	conn   net.Conn
	client agent.ExtendedAgent
}

// DialAgent connects to the agent at socket; "" is ErrNoAgent.
func DialAgent(socket string) (*Agent, error) {
	if socket == "" {
		return nil, ErrNoAgent
	}
	conn, err := net.DialTimeout("unix", socket, agentTimeout)
	if err != nil {
		return nil, &AgentError{Socket: socket, Op: "connecting", Err: err}
	}
	_ = conn.SetDeadline(time.Now().Add(agentTimeout))
	return &Agent{socket: socket, conn: conn, client: agent.NewClient(conn)}, nil
}

// Close closes the connection.
func (a *Agent) Close() error { return a.conn.Close() }

// AgentEntry is one certificate to put into the agent.
type AgentEntry struct {
	Server Server
	User   string
	// Key is the private key: ed25519.PrivateKey, *ecdsa.PrivateKey or
	// *rsa.PrivateKey (or a pointer to an ed25519 key).
	Key  any
	Cert *ssh.Certificate
	// Confirm asks the agent to confirm each use with the user
	// (ssh-add -c).
	Confirm bool
	// PlainKey adds the key without the certificate too, as ssh-add
	// does. ssh with IdentitiesOnly uses an agent key only when it
	// equals an IdentityFile, and a certificate entry never equals the
	// plain public key; so a key that lives only in the agent needs this
	// entry for the ssh_config block (IdentityFile key.pub) to use it.
	PlainKey bool
}

// Add puts e into the agent with the lifetime AgentLifetime gives at now,
// then removes the cluster's other entries (any user's). Adding first
// means a concurrent ssh never finds the agent without a certificate for
// the cluster. It returns the lifetime and how many entries it removed.
func (a *Agent) Add(e AgentEntry, now time.Time) (lifetime uint32, removed int, err error) {
	lifetime, err = AgentLifetime(e.Cert.ValidBefore, now)
	if err != nil {
		return 0, 0, err
	}
	entry := agent.AddedKey{
		PrivateKey:       e.Key,
		Comment:          AgentComment(e.Server, e.User),
		LifetimeSecs:     lifetime,
		ConfirmBeforeUse: e.Confirm,
	}
	keep := [][]byte{e.Cert.Marshal()}
	if e.PlainKey {
		if err := a.client.Add(entry); err != nil {
			return 0, 0, &AgentError{Socket: a.socket, Op: "adding the key", Err: err}
		}
		keep = append(keep, e.Cert.Key.Marshal())
	}
	entry.Certificate = e.Cert
	if err := a.client.Add(entry); err != nil {
		return 0, 0, &AgentError{Socket: a.socket, Op: "adding the certificate", Err: err}
	}
	removed, err = a.remove(e.Server, keep...)
	return lifetime, removed, err
}

// RemoveCluster removes every entry of the cluster s and returns how many
// there were.
func (a *Agent) RemoveCluster(s Server) (int, error) { return a.remove(s) }

// remove removes the entries of s except those whose blob is in keep.
func (a *Agent) remove(s Server, keep ...[]byte) (int, error) {
	keys, err := a.client.List()
	if err != nil {
		return 0, &AgentError{Socket: a.socket, Op: "listing keys", Err: err}
	}
	n := 0
	for _, k := range keys {
		if !isClusterEntry(k.Comment, s) || slices.ContainsFunc(keep, func(b []byte) bool { return bytes.Equal(k.Blob, b) }) {
			continue
		}
		if err := a.client.Remove(k); err != nil {
			return n, &AgentError{Socket: a.socket, Op: "removing an earlier certificate", Err: err}
		}
		n++
	}
	return n, nil
}

// Holds reports whether the agent holds cert.
func (a *Agent) Holds(cert *ssh.Certificate) (bool, error) {
	keys, err := a.client.List()
	if err != nil {
		return false, &AgentError{Socket: a.socket, Op: "listing keys", Err: err}
	}
	blob := cert.Marshal()
	for _, k := range keys {
		if bytes.Equal(k.Blob, blob) {
			return true, nil
		}
	}
	return false, nil
}
