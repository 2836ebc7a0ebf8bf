package testbin

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SSHDPath is the sshd binary StartSSHD runs. It must be an absolute
// path: sshd re-executes itself by its argv[0].
const SSHDPath = "/usr/sbin/sshd"

// SSHDConfig says what a test sshd serves. Files are written into a new
// temporary directory; only HostKey is required.
type SSHDConfig struct {
	// HostKey is the host's private key in OpenSSH or PEM form. It may be
	// nil when an Extra line includes a drop-in that names the host key.
	HostKey []byte
	// HostCertificate, if set, is the host certificate for HostKey
	// (authorized_keys form).
	HostCertificate []byte
	// TrustedUserCAKeys, if set, are the user CA keys whose certificates
	// sshd accepts (authorized_keys form, one per line).
	TrustedUserCAKeys []byte
	// Extra lines are appended to sshd_config.
	Extra []string
	// ExtrausersDir, if set, runs sshd in a private mount namespace where
	// it is /var/lib/extrausers and NSS reads it (ExtrausersNamespace), so
	// accounts teleport-node writes there can log in. The test is skipped
	// unless SkipUnlessExtrausers passes; /var/lib/extrausers must exist.
	ExtrausersDir string
	// UsePAM turns on sshd's PAM (off by default; sshd keeps the first
	// value of an option, so an Extra line cannot turn it on).
	UsePAM bool
	// Binds are more host paths bound over others in that namespace
	// (source -> target), such as a directory over /etc/security.
	Binds map[string]string
}

// SSHD is a running OpenSSH sshd, started by StartSSHD.
type SSHD struct {
	// Addr is "127.0.0.1:PORT"; Port is the port alone.
	Addr, Port string
	// Dir holds sshd_config and the key files.
	Dir    string
	Cmd    *exec.Cmd
	Stderr *Buffer
}

// StartSSHD starts "sshd -D -e -f CONFIG" listening on a free loopback
// port, with public key authentication only, no PAM, no pid file and
// StrictModes off (the files are in a temporary directory). It waits until
// sshd sends its banner and stops it when the test ends, logging its
// stderr if the test failed. The test is skipped unless it runs as root
// and sshd is installed; /run/sshd (the privilege separation directory)
// is created if missing.
func StartSSHD(t testing.TB, cfg SSHDConfig) *SSHD {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sshd needs root; CI runs the tests as root")
	}
	if _, err := os.Stat(SSHDPath); err != nil {
		t.Skipf("%s not installed; .ci/run installs openssh-server", SSHDPath)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("testbin: %v", err)
	}
	s := &SSHD{Addr: FreePort(t), Dir: ShortTempDir(t), Stderr: new(Buffer)}
	_, s.Port, _ = net.SplitHostPort(s.Addr)
	conf := s.writeFiles(t, cfg)
	s.Cmd = exec.Command(SSHDPath, "-D", "-e", "-f", conf)
	if cfg.ExtrausersDir != "" {
		SkipUnlessExtrausers(t)
		args := ExtrausersNamespace(t, cfg.ExtrausersDir, cfg.Binds, `exec "$1" -D -e -f "$2"`, SSHDPath, conf)
		s.Cmd = exec.Command(args[0], args[1:]...)
	}
	s.Cmd.Env = Environ()
	s.Cmd.Stdout, s.Cmd.Stderr = s.Stderr, s.Stderr
	if err := s.Cmd.Start(); err != nil {
		t.Fatalf("testbin: starting sshd: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = s.Cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = s.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(stopTimeout):
			_ = s.Cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("sshd %s stderr:\n%s", s.Addr, s.Stderr)
		}
	})
	s.waitBanner(t, done)
	return s
}

func (s *SSHD) writeFiles(t testing.TB, cfg SSHDConfig) string {
	t.Helper()
	write := func(name string, data []byte) string {
		p := filepath.Join(s.Dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatalf("testbin: %v", err)
		}
		return p
	}
	lines := []string{
		"ListenAddress " + s.Addr,
		"AuthorizedKeysFile none",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"StrictModes no",
		"UsePAM " + map[bool]string{true: "yes", false: "no"}[cfg.UsePAM],
		"PidFile none",
		"LogLevel VERBOSE",
	}
	if cfg.HostKey != nil {
		lines = append(lines, "HostKey "+write("host_key", cfg.HostKey))
	}
	if cfg.HostCertificate != nil {
		lines = append(lines, "HostCertificate "+write("host_key-cert.pub", cfg.HostCertificate))
	}
	if cfg.TrustedUserCAKeys != nil {
		lines = append(lines, "TrustedUserCAKeys "+write("user_ca.pub", cfg.TrustedUserCAKeys))
	}
	lines = append(lines, cfg.Extra...)
	return write("sshd_config", []byte(strings.Join(lines, "\n")+"\n"))
}

// waitBanner waits until sshd answers with its SSH banner.
func (s *SSHD) waitBanner(t testing.TB, done <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(ReadyTimeout)
	for {
		err := readBanner(s.Addr)
		if err == nil {
			return
		}
		select {
		case <-done:
			t.Fatalf("testbin: sshd exited before it answered:\n%s", s.Stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("testbin: sshd on %s did not answer within %v (%v):\n%s", s.Addr, ReadyTimeout, err, s.Stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readBanner(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("banner %q", line)
	}
	return nil
}

// RootOnlyCopy copies the executable at src into a new directory under
// /run, owned by root with mode 0755 all the way up, and returns the
// copy's path: sshd runs AuthorizedPrincipalsCommand and
// AuthorizedKeysCommand only from such a path (not from /tmp). The
// directory is removed when the test ends. It needs root.
func RootOnlyCopy(t testing.TB, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("testbin: %v", err)
	}
	dir, err := os.MkdirTemp("/run", "opensshca-test-")
	if err != nil {
		t.Fatalf("testbin: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("testbin: %v", err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatalf("testbin: %v", err)
	}
	return dst
}
