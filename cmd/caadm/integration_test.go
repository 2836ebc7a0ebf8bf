package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.RemoveAll()
	os.Exit(code)
}

// caadmRun runs caadm's run() against the real teleport-ca c.
func caadmRun(t *testing.T, c *testbin.CA, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"--socket", c.AdminSocket}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func mustCaadm(t *testing.T, c *testbin.CA, stdin string, args ...string) string {
	t.Helper()
	code, out, errs := caadmRun(t, c, stdin, args...)
	if code != 0 {
		t.Fatalf("caadm %v: exit %d\n%s%s", args, code, out, errs)
	}
	return out
}

func writePub(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	f := filepath.Join(t.TempDir(), "id.pub")
	if err := os.WriteFile(f, ssh.MarshalAuthorizedKey(sp), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// keygenL reads a certificate with the real ssh-keygen -L.
func keygenL(t *testing.T, certLine string) string {
	t.Helper()
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed; .ci/run installs openssh-client")
	}
	f := filepath.Join(t.TempDir(), "cert.pub")
	if err := os.WriteFile(f, []byte(certLine), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ssh-keygen", "-L", "-f", f).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
	}
	return string(out)
}

// TestAgainstRealCA drives every caadm command against a running
// teleport-ca and checks the results through the CA and ssh-keygen.
func TestAgainstRealCA(t *testing.T) {
	c := testbin.StartCA(t)

	// Roles and users.
	mustCaadm(t, c, "", "roles", "add", "prod", "--logins", "root,{user}", "--labels", "env=prod,env=staging", "--max-ttl", "2h", "--port-forwarding")
	out := mustCaadm(t, c, "password-123\n", "users", "add", "alice", "--logins", "alice", "--roles", "prod", "--password-stdin")
	if !regexp.MustCompile(`otpauth://totp/[^ ]*secret=[A-Z2-7]+`).MatchString(out) {
		t.Errorf("users add --password-stdin did not print the otpauth URI:\n%s", out)
	}
	out = mustCaadm(t, c, "", "users", "add", "bob", "--logins", "bob")
	if !strings.Contains(out, "https://") || !strings.Contains(out, "/enroll/") {
		t.Errorf("users add without a password did not print an enrollment link:\n%s", out)
	}
	var users []api.User
	if err := json.Unmarshal([]byte(mustCaadm(t, c, "", "users", "ls", "--json")), &users); err != nil || len(users) != 2 {
		t.Fatalf("users ls --json: %v %+v", err, users)
	}
	if users[0].Name != "alice" || users[0].Status != "active" || users[1].Status != "pending" {
		t.Errorf("users = %+v", users)
	}
	if code, _, errs := caadmRun(t, c, "", "users", "add", "alice", "--logins", "x", "--password-stdin"); code == 0 || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "caadm: ") {
		t.Errorf("duplicate user: exit %d, stderr %q; want one caadm: line", code, errs)
	}
	if code, _, errs := caadmRun(t, c, "", "users", "add", "eve", "--logins", `r"oot`); code == 0 || !strings.Contains(errs, "quote") {
		t.Errorf("injected login: exit %d, %q", code, errs)
	}

	// sign: a user certificate narrowed to root, read back by ssh-keygen.
	certLine := strings.TrimSpace(mustCaadm(t, c, "", "sign", "--user", "alice", "--pubkey", writePub(t), "--logins", "root", "--ttl", "10h"))
	l := keygenL(t, certLine)
	for _, want := range []string{"user certificate", `Key ID: "alice"`, "permit-port-forwarding", "permit-pty"} {
		if !strings.Contains(l, want) {
			t.Errorf("ssh-keygen -L lacks %q:\n%s", want, l)
		}
	}
	if !regexp.MustCompile(`Principals: \n\s+root\n\s+Critical`).MatchString(l) {
		t.Errorf("principals not narrowed to root:\n%s", l)
	}
	// sign --host.
	hostLine := strings.TrimSpace(mustCaadm(t, c, "", "sign", "--host", "--user", "node1", "--principals", "node1.example.com,10.0.0.7", "--pubkey", writePub(t)))
	if l := keygenL(t, hostLine); !strings.Contains(l, "host certificate") || !strings.Contains(l, "10.0.0.7") {
		t.Errorf("host certificate:\n%s", l)
	}
	if code, _, errs := caadmRun(t, c, "", "sign", "--user", "alice", "--pubkey", writePub(t), "--logins", "postgres"); code == 0 || !strings.Contains(errs, `"postgres"`) {
		t.Errorf("login outside roles: exit %d, %q", code, errs)
	}

	// certs ls finds both.
	var certs []api.IssuedCert
	if err := json.Unmarshal([]byte(mustCaadm(t, c, "", "--json", "certs", "ls")), &certs); err != nil || len(certs) != 2 {
		t.Fatalf("certs ls: %v %+v", err, certs)
	}

	// Tokens: the secret is the last line; ls shows it; rm removes it.
	out = mustCaadm(t, c, "", "tokens", "add", "--role", "node", "--labels", "env=prod", "--ttl", "1h")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if secret := lines[len(lines)-1]; !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(secret) {
		t.Fatalf("last line of tokens add is %q, want the 64-hex secret", secret)
	}
	var toks []api.Token
	json.Unmarshal([]byte(mustCaadm(t, c, "", "tokens", "ls", "--json")), &toks)
	if len(toks) != 1 || toks[0].Labels["env"] != "prod" {
		t.Fatalf("tokens ls = %+v", toks)
	}
	mustCaadm(t, c, "", "tokens", "rm", toks[0].ID)
	if out := mustCaadm(t, c, "", "tokens", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("after rm: %s", out)
	}

	// Update: swap roles and personal logins; the next certificate follows.
	mustCaadm(t, c, "", "roles", "add", "web", "--logins", "www", "--labels", "*=*")
	out = mustCaadm(t, c, "", "users", "update", "alice", "--roles", "web", "--logins", "alice,deploy")
	if !strings.Contains(out, "user:alice") || !strings.Contains(out, "web") {
		t.Errorf("users update output:\n%s", out)
	}
	l = keygenL(t, strings.TrimSpace(mustCaadm(t, c, "", "sign", "--user", "alice", "--pubkey", writePub(t))))
	if !regexp.MustCompile(`Principals: \n\s+alice\n\s+deploy\n\s+www\n\s+Critical`).MatchString(l) {
		t.Errorf("after users update, principals are not alice, deploy, www:\n%s", l)
	}
	if code, _, errs := caadmRun(t, c, "", "users", "update", "alice"); code != 2 || !strings.Contains(errs, "give --roles") {
		t.Errorf("update without flags: exit %d %q", code, errs)
	}
	mustCaadm(t, c, "", "users", "update", "alice", "--roles", "prod", "--logins", "alice")

	// Reset: a new enrollment link, and the account is pending.
	out = mustCaadm(t, c, "", "users", "reset", "alice")
	if !strings.Contains(out, "/enroll/") || !strings.Contains(out, "pending") {
		t.Errorf("users reset output:\n%s", out)
	}
	out = mustCaadm(t, c, "another-password\n", "users", "reset", "alice", "--password-stdin")
	if !strings.Contains(out, "otpauth://") || !strings.Contains(out, "active") {
		t.Errorf("users reset --password-stdin output:\n%s", out)
	}

	// Devices: register one over HTTPS with a keyhelper token from caadm,
	// list it, revoke it.
	out = mustCaadm(t, c, "", "tokens", "add", "--role", "keyhelper", "--user", "alice")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	dk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&dk.PublicKey)
	ident, err := c.HTTPS().RegisterDevice(context.Background(), api.RegisterDeviceRequest{
		Token: lines[len(lines)-1], User: "alice",
		PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	})
	if err != nil {
		t.Fatalf("register device: %v", err)
	}
	if out := mustCaadm(t, c, "", "devices", "ls", "--user", "alice"); !strings.Contains(out, ident.DeviceID) || !strings.Contains(out, "active") {
		t.Errorf("devices ls:\n%s", out)
	}
	mustCaadm(t, c, "", "devices", "revoke", "alice", ident.DeviceID)
	var devs []api.Device
	json.Unmarshal([]byte(mustCaadm(t, c, "", "devices", "ls", "--json")), &devs)
	if len(devs) != 1 || !devs[0].Revoked {
		t.Errorf("after revoke: %+v", devs)
	}
	if code, _, errs := caadmRun(t, c, "", "devices", "revoke", "alice", "0000000000000000"); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("revoke unknown device: exit %d %q", code, errs)
	}

	// Lock, unlock, remove.
	mustCaadm(t, c, "", "users", "lock", "alice", "--until", "2h", "--reason", "on leave")
	if code, _, errs := caadmRun(t, c, "", "sign", "--user", "alice", "--pubkey", writePub(t)); code == 0 || !strings.Contains(errs, "locked") {
		t.Errorf("sign for locked user: exit %d %q", code, errs)
	}
	mustCaadm(t, c, "", "users", "unlock", "alice")
	mustCaadm(t, c, "", "sign", "--user", "alice", "--pubkey", writePub(t))
	mustCaadm(t, c, "", "users", "rm", "bob")
	mustCaadm(t, c, "", "roles", "rm", "prod")
	var roles []api.Role
	json.Unmarshal([]byte(mustCaadm(t, c, "", "roles", "ls", "--json")), &roles)
	if len(roles) != 2 || roles[0].Name != "user:alice" || roles[1].Name != "web" {
		t.Errorf("roles after rm = %+v (bob's personal role must go with bob)", roles)
	}

	// ca show ends with the pin; the audit log recorded the admin actions.
	out = mustCaadm(t, c, "", "ca", "show")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); lines[len(lines)-1] != c.Pin {
		t.Errorf("ca show last line %q, want pin %s", lines[len(lines)-1], c.Pin)
	}
	var evs []api.AuditEvent
	json.Unmarshal([]byte(mustCaadm(t, c, "", "audit", "ls", "--json", "--type", "user.lock")), &evs)
	if len(evs) != 1 || evs[0].User != "alice" || evs[0].Fields["reason"] != "on leave" || !strings.HasPrefix(evs[0].Actor, "admin(uid=") {
		t.Errorf("lock audit = %+v", evs)
	}
	if out := mustCaadm(t, c, "", "audit", "ls", "--user", "alice"); !strings.Contains(out, "cert.issue") || !strings.Contains(out, "user.unlock") ||
		!strings.Contains(out, "user.update") || !strings.Contains(out, "user.reset") {
		t.Errorf("audit ls --user alice:\n%s", out)
	}
}
