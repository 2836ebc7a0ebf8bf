package main

import (
	"encoding/json"
	"os/exec"
	"os/user"
	"strings"
	"testing"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/testbin"
)

// TestSecurityAdminSocket proves docs/SECURITY.md "Access: refused and
// audited" for a non-root caller on the admin socket, with the real
// teleport-ca and caadm: with the socket's 0600 mode the kernel refuses
// the connection (the CA never sees it, so nothing can be audited; the
// caller reads "permission denied"); with a loosened mode the CA refuses
// the caller by its SO_PEERCRED uid, says so, and writes an
// admin.refused event naming the uid, which root reads with caadm audit.
func TestSecurityAdminSocket(t *testing.T) {
	t.Parallel()
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("needs user nobody: %v", err)
	}
	setpriv, caadm, sock := asNobodySetup(t)
	c := testbin.Start(t, testbin.Config{AdminSocket: sock})
	asNobody := func(args ...string) (string, error) {
		cmd := exec.Command(setpriv, append([]string{"--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
			caadm, "--socket", c.AdminSocket}, args...)...)
		cmd.Env = testbin.Environ()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	asRoot := func(args ...string) string {
		cmd := exec.Command(caadm, append([]string{"--socket", c.AdminSocket}, args...)...)
		cmd.Env = testbin.Environ()
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("caadm %v as root: %v\n%s", args, err, out)
		}
		return string(out)
	}

	if out, err := asNobody("users", "ls"); err == nil || !strings.Contains(out, "permission denied") {
		t.Fatalf("nobody on a 0600 socket: %v %q, want permission denied", err, out)
	}

	chmod(t, c.AdminSocket, 0o666)
	out, err := asNobody("users", "add", "mallory", "--logins", "root")
	want := "uid " + nobody.Uid + " may not administer this CA"
	if err == nil || !strings.Contains(out, want) {
		t.Fatalf("nobody on a 0666 socket: %v %q, want %q", err, out, want)
	}
	for _, bad := range []string{c.DataDir, "state.db", ".go:", "goroutine"} {
		if strings.Contains(out, bad) {
			t.Errorf("the refusal %q shows internals (%q)", out, bad)
		}
	}

	var evs []api.AuditEvent
	if err := json.Unmarshal([]byte(asRoot("audit", "ls", "--type", "admin.refused", "--json")), &evs); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Actor != "admin(uid="+nobody.Uid+")" || evs[0].Success ||
		evs[0].Fields["uid"] != nobody.Uid || evs[0].Fields["path"] != api.PathAdminUsers || evs[0].Fields["method"] != "POST" {
		t.Fatalf("admin.refused events: %+v; want one naming uid %s and POST %s", evs, nobody.Uid, api.PathAdminUsers)
	}
	if strings.Contains(asRoot("users", "ls"), "mallory") {
		t.Fatal("the refused caller added a user")
	}
}
