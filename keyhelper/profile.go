package keyhelper

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/opensshca/suite/internal/atomicfile"
)

// Names of the files in a cluster's state directory.
const (
	profileFile    = "profile.json"
	keyFile        = "key"          // private key, OpenSSH format, when the keyhelper made it
	pubKeyFile     = "key.pub"      // its public key instead, when the private key lives only in the agent (--confirm)
	certFile       = "key-cert.pub" // next to key, so ssh -i key finds it
	knownHostsFile = "known_hosts"
	sshConfigFile  = "ssh_config"
)

// profileVersion is the version of profile.json written.
const profileVersion = 1

// Secret is a string that must not be shown: it formats as "[redacted]"
// with fmt and log/slog, but is written as itself to JSON.
type Secret string

// String hides the value.
func (Secret) String() string { return "[redacted]" }

// GoString hides the value from %#v.
func (Secret) GoString() string { return "[redacted]" }

// LogValue hides the value from log/slog.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Profile is a cluster's profile.json: what the last login learned and
// needs again. Paths are absolute.
type Profile struct {
	Version int `json:"version"`
	// Server is the CA's base URL, "https://host:port".
	Server string `json:"server"`
	// User is the cluster user signed in.
	User string `json:"user"`
	// Pin is the CA's TLS root pin used, if any.
	Pin string `json:"pin,omitempty"`
	// ProxyAddr is the cluster's SSH proxy "host:port" as the CA last
	// reported it; empty while it has none.
	ProxyAddr string `json:"proxy_addr,omitempty"`
	// Hosts are the ssh_config host patterns given with --hosts; empty
	// means the default (see DefaultHosts).
	Hosts []string `json:"hosts,omitempty"`
	// Session is the sign-in session token, a bearer secret.
	Session Secret `json:"session,omitempty"`
	// SessionExpires is when the sign-in ends.
	SessionExpires time.Time `json:"session_expires,omitzero"`
	// Device is the device ID of the daemon that wrote the profile: the
	// sign-in is then a web sign-in (no Session), and SessionExpires is
	// its end as the daemon last learned it.
	Device string `json:"device,omitempty"`
	// KeyFile is the identity for ssh_config's IdentityFile: the private
	// key, or the public key when the private key's place is unknown.
	KeyFile string `json:"key_file"`
	// PublicKeyFile is the public key given with --key-path; empty when
	// the keyhelper made the key.
	PublicKeyFile string `json:"public_key_file,omitempty"`
	// CertFile is where the certificate is written.
	CertFile string `json:"cert_file"`

	dir string // the cluster's state directory
}

// Dir returns the cluster's state directory.
func (p *Profile) Dir() string { return p.dir }

// KnownHostsFile returns the path of the cluster's known_hosts file.
func (p *Profile) KnownHostsFile() string { return filepath.Join(p.dir, knownHostsFile) }

// SSHConfigFile returns the path of the cluster's ssh_config file.
func (p *Profile) SSHConfigFile() string { return filepath.Join(p.dir, sshConfigFile) }

// generated reports whether the keyhelper made the key (and so owns the
// key file in the state directory).
func (p *Profile) generated() bool { return p.PublicKeyFile == "" }

// LoadProfile reads the profile of s. It is ErrNotLoggedIn if there is
// none, and an *UnsafeError if the directory or file is not private.
func (h *Home) LoadProfile(s Server) (*Profile, error) {
	dir := h.serverDir(s)
	if err := ensurePrivateDir(dir, false); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, profileFile)
	if err := checkPrivateFile(path); errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotLoggedIn
	} else if err != nil {
		return nil, err
	}
	p, err := readProfileFile(path)
	if err != nil {
		return nil, err
	}
	got, err := ParseServer(p.Server)
	if err != nil || got != s {
		return nil, fmt.Errorf("keyhelper: %s is for server %q, not %s; remove it and log in again", path, p.Server, s)
	}
	p.dir = dir
	return p, nil
}

func readProfileFile(path string) (*Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: %w", err)
	}
	var p Profile
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("keyhelper: %s is damaged (%v); remove it and log in again", path, err)
	}
	if p.Version != profileVersion {
		return nil, fmt.Errorf("keyhelper: %s has version %d, this keyhelper reads version %d; remove it and log in again", path, p.Version, profileVersion)
	}
	// Save leaves an empty list out, and nil means the default patterns;
	// an empty list would give ssh_config a Host line without patterns.
	if len(p.Hosts) == 0 {
		p.Hosts = nil
	}
	return &p, nil
}

// newProfile returns an empty profile of s in h, making the cluster's
// directory.
func (h *Home) newProfile(s Server) (*Profile, error) {
	dir := h.serverDir(s)
	if err := ensurePrivateDir(dir, true); err != nil {
		return nil, err
	}
	return &Profile{Version: profileVersion, Server: s.URL(), dir: dir}, nil
}

// Save writes the profile atomically with mode 0600.
func (p *Profile) Save() error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("keyhelper: %w", err)
	}
	return writeFile(filepath.Join(p.dir, profileFile), append(b, '\n'))
}

// writeFile writes a state file: atomically, mode 0600.
func writeFile(path string, data []byte) error {
	if err := atomicfile.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("keyhelper: %w", err)
	}
	return nil
}
