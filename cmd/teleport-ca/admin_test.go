package main

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/opensshca/suite/internal/testbin"
)

// The admin socket is created srw------- whatever the umask.
func TestAdminSocketMode(t *testing.T) {
	t.Parallel()
	c := testbin.StartCA(t)
	wantMode(t, c.AdminSocket, os.ModeSocket|0o600)
}

// worldReachable reports whether every directory above path lets other
// users through, so that nobody can reach path.
func worldReachable(path string) error {
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return errors.New(d + " is not searchable by other users")
		}
		if d == "/" {
			return nil
		}
	}
}

// Only root (and the CA's own user) may administer the CA: the socket's
// mode stops other users, and where the mode is too loose the server
// itself refuses them by their SO_PEERCRED uid.
func TestAdminSocketRefusesOthers(t *testing.T) {
	t.Parallel()
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("needs user nobody: %v", err)
	}
	setpriv, caadm, sock := asNobodySetup(t)
	c := testbin.Start(t, testbin.Config{AdminSocket: sock})

	asNobody := func() (string, error) {
		cmd := exec.Command(setpriv, "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
			caadm, "--socket", c.AdminSocket, "users", "ls")
		cmd.Env = testbin.Environ()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := asNobody()
	if err == nil {
		t.Fatalf("caadm as nobody succeeded on a 0600 socket:\n%s", out)
	}
	if !strings.Contains(out, "permission denied") {
		t.Errorf("caadm as nobody on a 0600 socket: %v, output %q, want \"permission denied\"", err, out)
	}

	// A misconfigured socket mode must not open the CA to everyone.
	chmod(t, c.AdminSocket, 0o666)
	out, err = asNobody()
	if err == nil {
		t.Fatalf("caadm as nobody succeeded on a 0666 socket: the server did not check SO_PEERCRED:\n%s", out)
	}
	want := "uid " + nobody.Uid + " may not administer"
	if !strings.Contains(out, want) {
		t.Errorf("caadm as nobody on a 0666 socket: %v, output %q, want %q", err, out, want)
	}
	if !strings.Contains(c.Stderr.String(), "refused peer") {
		t.Errorf("the CA did not log the refused peer; stderr:\n%s", c.Stderr)
	}

	cmd := exec.Command(caadm, "--socket", c.AdminSocket, "users", "ls")
	cmd.Env = testbin.Environ()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("caadm as root: %v\n%s", err, out)
	}
}

// TestAdminSocketGroup: with --admin-group, the socket is 0660 with that
// group, a member (here by supplementary group) may administer, and a
// non-member is refused by the mode and, if the mode is loosened, by the
// server. Uses the existing group "users", so the machine is not changed.
func TestAdminSocketGroup(t *testing.T) {
	t.Parallel()
	grp, err := user.LookupGroup("users")
	if err != nil {
		t.Skipf("needs group users: %v", err)
	}
	setpriv, caadm, sock := asNobodySetup(t)
	c := testbin.Start(t, testbin.Config{AdminSocket: sock, Args: []string{"--admin-group", "users"}})

	fi, err := os.Stat(c.AdminSocket)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o660 || strconv.Itoa(int(st.Gid)) != grp.Gid {
		t.Fatalf("socket mode %v gid %d, want 0660 and group users (%s)", fi.Mode().Perm(), st.Gid, grp.Gid)
	}
	asNobody := func(groups string) (string, error) {
		args := []string{"--reuid", "nobody", "--regid", "nogroup"}
		if groups == "" {
			args = append(args, "--clear-groups")
		} else {
			args = append(args, "--groups", groups)
		}
		cmd := exec.Command(setpriv, append(args, caadm, "--socket", c.AdminSocket, "users", "ls")...)
		cmd.Env = testbin.Environ()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := asNobody(grp.Gid); err != nil {
		t.Fatalf("member of the admin group (supplementary) refused: %v\n%s", err, out)
	}
	if out, err := asNobody(""); err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("non-member on a 0660 socket: %v %q, want permission denied", err, out)
	}
	chmod(t, c.AdminSocket, 0o666)
	if out, err := asNobody(""); err == nil || !strings.Contains(out, "may not administer") {
		t.Fatalf("non-member on a loosened socket: %v %q, want the server's refusal", err, out)
	}
}

// asNobodySetup prepares running caadm as user nobody: it skips unless the
// test runs as root with setpriv, and returns setpriv, a caadm binary
// nobody may run, and an admin socket path in a directory nobody may
// enter, so that only the socket's own mode (and the server) stands
// between nobody and the CA.
func asNobodySetup(t *testing.T) (setpriv, caadm, sock string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs caadm as user nobody with setpriv")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("needs setpriv (util-linux) to run caadm as user nobody")
	}
	caadm = testbin.Build(t, testbin.TeleportCA, testbin.Caadm)["caadm"]
	if err := worldReachable(caadm); err != nil {
		t.Skipf("nobody cannot run the test binaries: %v", err)
	}
	dir, err := os.MkdirTemp("/tmp", "tca-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	chmod(t, dir, 0o755)
	return setpriv, caadm, filepath.Join(dir, "admin.sock")
}
