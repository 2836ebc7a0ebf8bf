package testbin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// NSS checks: libnss-extrausers files are looked up through the real
// glibc NSS in a private mount namespace, so the machine's own
// /etc/nsswitch.conf and /var/lib/extrausers are never touched.

// NSSLookup binds dir over /var/lib/extrausers and an nsswitch.conf that
// reads it after /etc in a private mount namespace, and returns the
// passwd line of user and the names of the user's groups there.
func NSSLookup(t testing.TB, dir, user string) (line string, groups []string) {
	t.Helper()
	args := ExtrausersNamespace(t, dir, nil, `getent passwd "$1" && id -Gn "$1"`, user)
	out, err := exec.CommandContext(context.Background(), args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("unshare %q: %v\n%s", args, err, out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("unshare %q printed %q, want a passwd line and a group list", args, out)
	}
	return lines[0], strings.Fields(lines[1])
}

// ExtrausersNamespace returns a command line that runs the shell command
// script (with args as "$1", "$2", ...) in a private mount namespace where
// dir is bound over /var/lib/extrausers and an nsswitch.conf reads it
// after /etc: the real glibc NSS resolves the accounts teleport-node
// wrote, and the machine's own files are never touched. /var/lib/extrausers
// must exist (MakeMountpoint). binds maps more host paths to the paths
// they are bound over (directories, so that files replaced by rename stay
// visible).
func ExtrausersNamespace(t testing.TB, dir string, binds map[string]string, script string, args ...string) []string {
	t.Helper()
	nsswitch := filepath.Join(t.TempDir(), "nsswitch.conf")
	conf := "passwd: files extrausers\ngroup: files extrausers\nshadow: files extrausers\n"
	if err := os.WriteFile(nsswitch, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	setup := `mount --make-rprivate / && mount --bind "$T_DIR" /var/lib/extrausers && mount --bind "$T_NSSWITCH" /etc/nsswitch.conf`
	env := []string{"T_DIR=" + dir, "T_NSSWITCH=" + nsswitch}
	if sock := nscdSocket(); sock != "" {
		// An nscd outside the namespace would answer from the machine's
		// configuration; a plain file over its socket makes glibc look
		// names up itself.
		notSocket := filepath.Join(t.TempDir(), "no-nscd")
		if err := os.WriteFile(notSocket, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		setup += ` && mount --bind "$T_NOTSOCK" "$T_SOCK"`
		env = append(env, "T_NOTSOCK="+notSocket, "T_SOCK="+sock)
	}
	i := 0
	for src, dst := range binds {
		setup += fmt.Sprintf(` && mount --bind "$T_SRC%d" "$T_DST%d"`, i, i)
		env = append(env, fmt.Sprintf("T_SRC%d=%s", i, src), fmt.Sprintf("T_DST%d=%s", i, dst))
		i++
	}
	out := append([]string{"env"}, env...)
	var names []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		names = append(names, name)
	}
	out = append(out, "unshare", "-m", "sh", "-c", setup+" && unset "+strings.Join(names, " ")+" && "+script, "sh")
	return append(out, args...)
}

// SkipUnlessExtrausers skips the test unless it runs as root on a machine
// with unshare, mount namespaces, getent, id and libnss-extrausers.
func SkipUnlessExtrausers(t testing.TB) {
	t.Helper()
	if err := ExtrausersAvailable(); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

// ExtrausersAvailable says why NSS tests cannot run here, or nil.
func ExtrausersAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("bind mounts in a mount namespace need root")
	}
	for _, tool := range []string{"unshare", "mount", "getent", "id", "sh", "env"} {
		if _, err := exec.LookPath(tool); err != nil {
			return err
		}
	}
	if lib := extrausersLib(); lib == "" {
		return errors.New("libnss_extrausers.so.2 not found (install libnss-extrausers)")
	}
	if out, err := exec.Command("unshare", "-m", "true").CombinedOutput(); err != nil {
		return fmt.Errorf("no mount namespace: unshare -m: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// extrausersLib returns the path of the NSS module, or "".
func extrausersLib() string {
	const name = "libnss_extrausers.so.2"
	if path := "/lib/x86_64-linux-gnu/" + name; fileExists(path) {
		return path
	}
	ldconfig, err := exec.LookPath("ldconfig")
	if err != nil {
		ldconfig = "/sbin/ldconfig"
	}
	out, _ := exec.Command(ldconfig, "-p").Output()
	for line := range strings.Lines(string(out)) {
		// "\tlibnss_extrausers.so.2 (libc6,x86-64) => /lib/libnss_extrausers.so.2"
		lib, path, ok := strings.Cut(line, " => ")
		if ok && strings.HasPrefix(strings.TrimSpace(lib), name+" ") {
			return strings.TrimSpace(path)
		}
	}
	return ""
}

// MakeMountpoint creates the directory path for a bind mount if it is
// missing, and removes it after the test.
func MakeMountpoint(t testing.TB, path string) {
	t.Helper()
	err := os.Mkdir(path, 0o755)
	if errors.Is(err, fs.ErrExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(path); err != nil {
			t.Errorf("removing the mountpoint this test created: %v", err)
		}
	})
}

// nscdSocket returns the socket of a running nscd, or "".
func nscdSocket() string {
	for _, path := range []string{"/run/nscd/socket", "/var/run/nscd/socket"} {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Type() == fs.ModeSocket {
			return path
		}
	}
	return ""
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
