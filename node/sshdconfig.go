package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/opensshca/suite/internal/atomicfile"
	"github.com/opensshca/suite/internal/nodedir"
)

// SSHDOptions shape the sshd_config drop-in.
type SSHDOptions struct {
	Dir string
	// Authkeys is the teleport-authkeys binary; sshd requires it and every
	// directory above it to be root-owned and not group- or
	// world-writable.
	Authkeys string
	// AuthkeysUser is AuthorizedPrincipalsCommandUser.
	AuthkeysUser string
	// KeysCommand uses AuthorizedKeysCommand (cert-authority lines)
	// instead of TrustedUserCAKeys + AuthorizedPrincipalsCommand.
	KeysCommand bool
	// MaxAge is passed to teleport-authkeys --max-age when not zero.
	MaxAge time.Duration
}

// DefaultAuthkeys is where the package installs teleport-authkeys.
const DefaultAuthkeys = "/usr/libexec/teleport-authkeys"

// DropIn is the path install-sshd-config writes by default. Debian's
// sshd_config includes /etc/ssh/sshd_config.d/*.conf first, and for most
// keywords sshd uses the first value it reads.
const DropIn = "/etc/ssh/sshd_config.d/50-teleport-node.conf"

// SSHDConfig returns the sshd_config drop-in for the node's data
// directory.
func SSHDConfig(o SSHDOptions) (string, error) {
	if err := nodedir.CheckPath(o.Dir); err != nil {
		return "", err
	}
	if o.Authkeys == "" {
		o.Authkeys = DefaultAuthkeys
	}
	if err := nodedir.CheckPath(o.Authkeys); err != nil {
		return "", fmt.Errorf("teleport-authkeys path: %w", err)
	}
	if o.AuthkeysUser == "" {
		o.AuthkeysUser = DefaultAuthkeysUser
	}
	if !loginName(o.AuthkeysUser) {
		return "", fmt.Errorf("authkeys user %q is not a valid user name", o.AuthkeysUser)
	}
	d := nodedir.Dir(o.Dir)
	cmd := o.Authkeys
	if o.Dir != nodedir.DefaultDir {
		cmd += " --data-dir " + o.Dir
	}
	if o.MaxAge != 0 {
		cmd += " --max-age " + o.MaxAge.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by teleport-node; regenerate with "teleport-node sshd-config".
# The node's host key and the certificate the cluster's host CA signed for it.
HostKey %s
HostCertificate %s
`, d.Path(nodedir.HostKey), d.Path(nodedir.HostCert))
	if o.KeysCommand {
		fmt.Fprintf(&b, `# teleport-authkeys prints a cert-authority line for the trusted CA when
# the certificate's user may log in as the requested account on this node.
AuthorizedKeysCommand %s keys %%u %%t %%k
AuthorizedKeysCommandUser %s
`, cmd, o.AuthkeysUser)
	} else {
		fmt.Fprintf(&b, `# Logins need a certificate from the CA in this file: the session CA in
# recording mode "proxy" (only the recording proxy can log in), the user CA
# in mode "off". teleport-node keeps it current.
TrustedUserCAKeys %s
# teleport-authkeys prints the account name when the certificate's user may
# log in as it on this node, from the cache teleport-node keeps current.
AuthorizedPrincipalsCommand %s principals %%u %%i %%s
AuthorizedPrincipalsCommandUser %s
`, d.Path(nodedir.TrustedCA), cmd, o.AuthkeysUser)
	}
	fmt.Fprintf(&b, `# Revoked certificate serials, as an OpenSSH KRL (ssh-keygen -Q -f FILE).
RevokedKeys %s
# Uncomment to refuse keys from users' own authorized_keys files, so that
# the cluster's policy is the only way in:
#AuthorizedKeysFile none
`, d.Path(nodedir.KRL))
	return b.String(), nil
}

func loginName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r == '_' || i > 0 && (r >= '0' && r <= '9' || r == '-')) {
			return false
		}
	}
	return true
}

// InstallOptions say where to install the drop-in and how to check it.
type InstallOptions struct {
	// Path of the drop-in (default DropIn).
	Path string
	// SSHD is the sshd binary (default /usr/sbin/sshd) and MainConfig the
	// sshd_config that includes the drop-in (default /etc/ssh/sshd_config).
	SSHD, MainConfig string
}

// Install writes the drop-in, checks the whole configuration with
// "sshd -t", and puts the previous file back (or removes the new one) if
// the check fails. It reports whether the file changed.
func Install(ctx context.Context, text string, o InstallOptions) (bool, error) {
	if o.Path == "" {
		o.Path = DropIn
	}
	if o.SSHD == "" {
		o.SSHD = "/usr/sbin/sshd"
	}
	if o.MainConfig == "" {
		o.MainConfig = "/etc/ssh/sshd_config"
	}
	prev, err := os.ReadFile(o.Path)
	hadPrev := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if hadPrev && bytes.Equal(prev, []byte(text)) {
		return false, check(ctx, o)
	}
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o755); err != nil {
		return false, err
	}
	if err := atomicfile.WriteFile(o.Path, []byte(text), 0o644); err != nil {
		return false, err
	}
	if cerr := check(ctx, o); cerr != nil {
		var rerr error
		if hadPrev {
			rerr = atomicfile.WriteFile(o.Path, prev, 0o644)
		} else {
			rerr = os.Remove(o.Path)
		}
		if rerr != nil {
			return false, fmt.Errorf("%w; restoring the previous %s also failed: %v", cerr, o.Path, rerr)
		}
		return false, fmt.Errorf("%w; the previous %s is back in place", cerr, o.Path)
	}
	return true, nil
}

func check(ctx context.Context, o InstallOptions) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, o.SSHD, "-t", "-f", o.MainConfig).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sshd -t -f %s refused the configuration: %s", o.MainConfig, strings.TrimSpace(string(out)))
	}
	return nil
}
