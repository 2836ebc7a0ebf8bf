package testbin

import (
	"bytes"
	"context"
	"errors"
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
	nsswitch := filepath.Join(t.TempDir(), "nsswitch.conf")
	conf := "passwd: files extrausers\ngroup: files extrausers\nshadow: files extrausers\n"
	if err := os.WriteFile(nsswitch, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `mount --make-rprivate / && mount --bind "$1" /var/lib/extrausers && mount --bind "$2" /etc/nsswitch.conf`
	args := []string{"-m", "sh", "-c", "", "sh", dir, nsswitch, user}
	if sock := nscdSocket(); sock != "" {
		// An nscd outside the namespace would answer from the machine's
		// configuration; a plain file over its socket makes glibc look
		// names up itself.
		notSocket := filepath.Join(t.TempDir(), "no-nscd")
		if err := os.WriteFile(notSocket, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		script += ` && mount --bind "$4" "$5"`
		args = append(args, notSocket, sock)
	}
	args[3] = script + ` && getent passwd "$3" && id -Gn "$3"`
	out, err := exec.CommandContext(context.Background(), "unshare", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("unshare %q: %v\n%s", args, err, out)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("unshare %q printed %q, want a passwd line and a group list", args, out)
	}
	return lines[0], strings.Fields(lines[1])
}

// SkipUnlessExtrausers skips the test unless it runs as root on a machine
// with unshare, mount namespaces, getent, id and libnss-extrausers.
func SkipUnlessExtrausers(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: bind mounts in a mount namespace need root")
	}
	for _, tool := range []string{"unshare", "mount", "getent", "id", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %v", err)
		}
	}
	if lib := extrausersLib(); lib == "" {
		t.Skip("skipping: libnss_extrausers.so.2 not found (install libnss-extrausers)")
	}
	if out, err := exec.Command("unshare", "-m", "true").CombinedOutput(); err != nil {
		t.Skipf("skipping: no mount namespace: unshare -m: %v: %s", err, bytes.TrimSpace(out))
	}
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
