// Package nodedir is the layout of a node's data directory, shared by
// teleport-node, which writes it, and teleport-authkeys, which sshd runs
// as an unprivileged user to read it:
//
//	node.json             where the CA is and who this node is (0644)
//	host_key              the node's ed25519 host key (0600)
//	host_key.pub          its public half (0644)
//	host_key-cert.pub     its host certificate (0644)
//	identity.key          TLS client key (0640, group of the authkeys user)
//	identity.crt          TLS client certificate (0644)
//	user_ca.pub, session_ca.pub, host_ca.pub   the CA's public keys (0644)
//	trusted_user_ca.pub   the CA sshd trusts for logins (TrustedUserCAKeys):
//	                      the session CA in recording mode proxy, the user
//	                      CA in mode off (0644)
//	revoked.krl           revoked serials as an OpenSSH KRL (RevokedKeys)
//	cache/policy          the login policy teleport-authkeys answers from
//	cache/ca-unreachable  when teleport-authkeys last failed to reach the CA
//
// The cache directory is writable by the authkeys user's group so that
// teleport-authkeys can store a policy it fetched itself.
package nodedir

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opensshca/suite/ca/client"
)

// File names inside the data directory.
const (
	Config       = "node.json"
	HostKey      = "host_key"
	HostPub      = "host_key.pub"
	HostCert     = "host_key-cert.pub"
	IdentityKey  = "identity.key"
	IdentityCert = "identity.crt"
	UserCA       = "user_ca.pub"
	SessionCA    = "session_ca.pub"
	HostCA       = "host_ca.pub"
	TrustedCA    = "trusted_user_ca.pub"
	KRL          = "revoked.krl"
	CacheDir     = "cache"
	Cache        = "cache/policy"
	Unreachable  = "cache/ca-unreachable"
	// Denials is appended to by teleport-authkeys (one JSON line per
	// refused login) and sent to the CA's audit log by teleport-node,
	// which first renames it to DenialsSending.
	Denials        = "cache/denials"
	DenialsSending = "cache/denials.sending"
	Proxies        = "proxies.json"
)

// DefaultDir is the data directory of a packaged install.
const DefaultDir = "/var/lib/teleport-node"

// NodeConfig is node.json: written at join, read by every later command.
type NodeConfig struct {
	Server string            `json:"server"` // https://ca:3080
	Pin    string            `json:"pin"`    // sha256:...
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Joined time.Time         `json:"joined"`
	// AuthkeysUser is the account sshd runs teleport-authkeys as; its
	// group owns identity.key and the cache directory.
	AuthkeysUser string `json:"authkeys_user"`
}

// Dir is a node data directory.
type Dir string

// Path returns the path of a file in the directory.
func (d Dir) Path(name string) string { return filepath.Join(string(d), name) }

// CheckPath refuses data directory paths that cannot be written into an
// sshd_config line safely: relative paths and paths with white space,
// quotes, '%' (sshd's token character) or control characters.
func CheckPath(p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("data dir %q must be an absolute, clean path", p)
	}
	if i := strings.IndexFunc(p, func(r rune) bool {
		return r <= ' ' || r == '"' || r == '\'' || r == '%' || r == '\\' || r == '#' || r >= 0x7f
	}); i >= 0 {
		return fmt.Errorf("data dir %q contains %q, which sshd_config cannot carry; choose another path", p, p[i])
	}
	return nil
}

// LoadConfig reads node.json.
func (d Dir) LoadConfig() (NodeConfig, error) {
	var c NodeConfig
	b, err := os.ReadFile(d.Path(Config))
	if errors.Is(err, os.ErrNotExist) {
		return c, fmt.Errorf("%s: the node has not joined (run teleport-node join)", d.Path(Config))
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: damaged: %w", d.Path(Config), err)
	}
	if c.Server == "" || c.Pin == "" || c.Name == "" {
		return c, fmt.Errorf("%s: damaged: server, pin or name missing", d.Path(Config))
	}
	return c, nil
}

// Identity loads the node's TLS client certificate and key.
func (d Dir) Identity() (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(d.Path(IdentityCert), d.Path(IdentityKey))
	if err != nil {
		return nil, fmt.Errorf("node identity: %w", err)
	}
	return &c, nil
}

// Client returns a client of the node's CA that presents the node's
// identity, with the given per-request timeout.
func (d Dir) Client(timeout time.Duration) (*client.Client, NodeConfig, error) {
	cfg, err := d.LoadConfig()
	if err != nil {
		return nil, cfg, err
	}
	id, err := d.Identity()
	if err != nil {
		return nil, cfg, err
	}
	c, err := client.New(cfg.Server, client.Options{Pin: cfg.Pin, ClientCert: id, Timeout: timeout})
	return c, cfg, err
}
