package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// request is what the fake server saw.
type request struct {
	method, path string
	query        map[string][]string
	body         []byte
}

// fakeCA answers admin API requests from a table of canned responses
// keyed by "METHOD /path".
type fakeCA struct {
	socket string

	mu   sync.Mutex
	seen []request
	resp map[string]any // a value to encode, or *api.Error
}

func newFakeCA(t *testing.T, resp map[string]any) *fakeCA {
	t.Helper()
	f := &fakeCA{socket: filepath.Join(t.TempDir(), "admin.sock"), resp: resp}
	l, err := net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(f)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return f
}

func (f *fakeCA) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key := r.Method + " " + r.URL.EscapedPath()
	f.mu.Lock()
	f.seen = append(f.seen, request{r.Method, r.URL.EscapedPath(), r.URL.Query(), body})
	resp, ok := f.resp[key]
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch v := resp.(type) {
	case nil:
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(api.Error{Code: api.CodeNotFound, Message: "fake: no response for " + key})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case *api.Error:
		w.WriteHeader(v.Status)
		_ = json.NewEncoder(w).Encode(v)
	default:
		_ = json.NewEncoder(w).Encode(v)
	}
}

// requests returns what the server saw.
func (f *fakeCA) requests() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.seen...)
}

// only returns the single request the server saw, decoding its body into
// v if not nil.
func (f *fakeCA) only(t *testing.T, v any) request {
	t.Helper()
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("server saw %d requests, want 1: %+v", len(reqs), reqs)
	}
	if v != nil {
		if err := json.Unmarshal(reqs[0].body, v); err != nil {
			t.Fatalf("request body %q: %v", reqs[0].body, err)
		}
	}
	return reqs[0]
}

type result struct {
	code           int
	stdout, stderr string
}

func runCaadm(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// wantFailure checks a failed run: exit code and one "caadm: " line
// containing each of parts.
func wantFailure(t *testing.T, r result, code int, parts ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code = %d, want %d (stderr %q)", r.code, code, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "caadm: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr = %q, want one line starting with caadm: ", r.stderr)
	}
	for _, p := range parts {
		if !strings.Contains(r.stderr, p) {
			t.Errorf("stderr = %q, want it to contain %q", r.stderr, p)
		}
	}
}

func wantSuccess(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit code = %d, stderr = %q, want success", r.code, r.stderr)
	}
}

func TestUsersAddPasswordStdin(t *testing.T) {
	const uri = "otpauth://totp/teleport-ca:alice?secret=JBSWY3DPEHPK3PXP&issuer=teleport-ca"
	f := newFakeCA(t, map[string]any{
		"POST " + api.PathAdminUsers: api.AddUserResponse{
			User:       api.User{Name: "alice", Roles: []string{"user:alice", "dev"}, Status: "active"},
			OTPAuthURI: uri,
		},
	})
	r := runCaadm(t, "hunter2 \nsecond line\n", "--socket", f.socket,
		"users", "add", "alice", "--logins", "alice", "--roles", "dev,ops", "--password-stdin")
	wantSuccess(t, r)
	var got api.AddUserRequest
	f.only(t, &got)
	want := api.AddUserRequest{Name: "alice", Logins: []string{"alice"}, Roles: []string{"dev", "ops"}, Password: "hunter2 "}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("server got %+v, want %+v", got, want)
	}
	if !strings.Contains(r.stdout, "alice") || !strings.Contains(r.stdout, "authenticator app") || !strings.Contains(r.stdout, uri+"\n") {
		t.Errorf("stdout = %q", r.stdout)
	}
}

func TestUsersAddEnrollLink(t *testing.T) {
	f := newFakeCA(t, map[string]any{
		"POST " + api.PathAdminUsers: api.AddUserResponse{
			User:          api.User{Name: "bob", Status: "pending"},
			EnrollURL:     "https://ca.example.com/enroll#abc",
			EnrollExpires: time.Now().Add(24 * time.Hour),
		},
	})
	r := runCaadm(t, "", "--socket", f.socket, "users", "add", "bob")
	wantSuccess(t, r)
	var got api.AddUserRequest
	f.only(t, &got)
	if got.Password != "" {
		t.Errorf("password sent without --password-stdin: %q", got.Password)
	}
	if !strings.HasSuffix(r.stdout, "\nhttps://ca.example.com/enroll#abc\n") || !strings.Contains(r.stdout, "(in 2") {
		t.Errorf("stdout = %q", r.stdout)
	}
}

func TestUsersAddEmptyPassword(t *testing.T) {
	f := newFakeCA(t, nil)
	for _, stdin := range []string{"", "\n", "\r\n"} {
		r := runCaadm(t, stdin, "--socket", f.socket, "users", "add", "alice", "--password-stdin")
		wantFailure(t, r, 1, "empty password")
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("server saw %d requests", n)
	}
}

func TestTokensAddSecretLast(t *testing.T) {
	const secret = "5f2b7c9e0a1d3f4b5f2b7c9e0a1d3f4b"
	f := newFakeCA(t, map[string]any{
		"POST " + api.PathAdminTokens: api.AddTokenResponse{
			Token:  api.Token{ID: "0123456789abcdef", Role: "node", Labels: map[string]string{"env": "prod"}, Expires: time.Now().Add(time.Hour)},
			Secret: secret,
		},
	})
	r := runCaadm(t, "", "--socket", f.socket, "tokens", "add", "--role", "node", "--labels", "env=prod,team=db", "--ttl", "1h")
	wantSuccess(t, r)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) < 2 || lines[len(lines)-1] != secret {
		t.Errorf("stdout = %q, want the secret as the last line", r.stdout)
	}
	var got api.AddTokenRequest
	req := f.only(t, &got)
	if got.Role != "node" || got.Labels["env"] != "prod" || got.Labels["team"] != "db" || got.TTL != api.Duration(time.Hour) {
		t.Errorf("server got %+v", got)
	}
	if !strings.Contains(string(req.body), `"ttl":"1h0m0s"`) {
		t.Errorf("body = %s, want ttl as duration text", req.body)
	}
}

func TestJSONOutput(t *testing.T) {
	f := newFakeCA(t, map[string]any{
		"GET " + api.PathAdminUsers: []api.User{{Name: "alice", Status: "active"}},
		"GET " + api.PathAdminRoles: []api.Role(nil), // null: prints []
		"POST " + api.PathAdminTokens: api.AddTokenResponse{
			Token: api.Token{ID: "0123456789abcdef", Role: "proxy"}, Secret: "s3cret",
		},
		"GET " + api.PathAdminCA: api.CAInfo{UserCA: "ssh-ed25519 AAAA", Pin: "sha256:00"},
	})
	for _, args := range [][]string{
		{"--json", "users", "ls"},
		{"users", "ls", "--json"},
		{"roles", "ls", "--json"},
		{"tokens", "add", "--role", "proxy", "--json"},
		{"--json", "ca", "show"},
	} {
		r := runCaadm(t, "", append([]string{"--socket", f.socket}, args...)...)
		wantSuccess(t, r)
		if !json.Valid([]byte(r.stdout)) {
			t.Errorf("caadm %q: stdout is not JSON: %q", args, r.stdout)
		}
	}
	r := runCaadm(t, "", "--socket", f.socket, "tokens", "add", "--role", "proxy", "--json")
	var resp api.AddTokenResponse
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || resp.Secret != "s3cret" || resp.Token.ID != "0123456789abcdef" {
		t.Errorf("tokens add --json = %q (%v)", r.stdout, err)
	}
	r = runCaadm(t, "", "--socket", f.socket, "roles", "ls", "--json")
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("roles ls --json with no roles = %q, want []", r.stdout)
	}
}

func TestServerError(t *testing.T) {
	f := newFakeCA(t, map[string]any{
		"POST " + api.PathAdminUsers: &api.Error{Code: api.CodeExists, Message: "user alice exists", Status: http.StatusConflict},
	})
	r := runCaadm(t, "", "--socket", f.socket, "users", "add", "alice", "--logins", "alice")
	wantFailure(t, r, 1)
	if r.stderr != "caadm: user alice exists\n" {
		t.Errorf("stderr = %q", r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout = %q, want nothing", r.stdout)
	}
}

func TestMissingSocket(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "admin.sock")
	r := runCaadm(t, "", "--socket", socket, "users", "ls")
	wantFailure(t, r, 1, "is teleport-ca running? (socket "+socket+")")
}

func TestSocketFromEnv(t *testing.T) {
	f := newFakeCA(t, map[string]any{"GET " + api.PathAdminUsers: []api.User{}})
	t.Setenv("TELEPORT_ADMIN_SOCKET", f.socket)
	wantSuccess(t, runCaadm(t, "", "users", "ls"))
	if n := len(f.requests()); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
}

func TestDescribe(t *testing.T) {
	const socket = "/run/teleport-ca/admin.sock"
	dial := func(errno syscall.Errno) error {
		return fmt.Errorf("client: cannot reach teleport-ca at %s: %w", socket,
			&net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", errno)})
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{dial(syscall.EACCES), "permission denied on " + socket + ": caadm must run as root or a member of the admin group"},
		{dial(syscall.ECONNREFUSED), "connection refused on the admin socket; is teleport-ca running? (socket " + socket + ")"},
		{dial(syscall.ENOENT), "admin socket not found; is teleport-ca running? (socket " + socket + ")"},
		// A missing key file is not a missing socket.
		{&os.PathError{Op: "open", Path: "k.pub", Err: syscall.ENOENT}, "open k.pub: no such file or directory"},
		{&api.Error{Code: api.CodeForbidden, Message: "role dev is in use"}, "role dev is in use"},
	} {
		if got := describe(tc.err, socket); got != tc.want {
			t.Errorf("describe(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	f := newFakeCA(t, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"users"}, "users: missing command"},
		{[]string{"users", "ls", "--bogus"}, "users ls: flag provided but not defined: -bogus"},
		{[]string{"--bogus", "users", "ls"}, "flag provided but not defined: -bogus (see 'caadm -h')"},
		{[]string{"users", "rm"}, "users rm: missing NAME"},
		{[]string{"users", "rm", "a", "b"}, `unexpected argument "b"`},
		{[]string{"users", "lock", "bob", "--until", "soon"}, "is neither a duration"},
		{[]string{"users", "lock", "bob", "--until", "-2h"}, "must be positive"},
		{[]string{"roles", "add", "dev", "--logins", "a", "--labels", "env"}, `label "env" must look like key=value`},
		{[]string{"roles", "add", "dev", "--logins", "a", "--labels", "*=prod"}, "the key * only takes the value *"},
		{[]string{"roles", "add", "dev", "--labels", "a=b"}, "--logins is required"},
		{[]string{"roles", "add", "dev", "--logins", "a", "--labels", "a=b", "--max-ttl", "8"}, "not a duration"},
		{[]string{"roles", "add", "dev", "--logins", "a", "--labels", "a=b", "--source-address", "10.0.0.0/33"}, "not an address or CIDR"},
		{[]string{"tokens", "add"}, "--role is required"},
		{[]string{"tokens", "add", "--role", "admin"}, "must be node, proxy or keyhelper"},
		{[]string{"tokens", "add", "--role", "keyhelper"}, "--user is required"},
		{[]string{"tokens", "add", "--role", "node", "--labels", "a=b,a=c"}, "label a given twice"},
		{[]string{"sign", "--pubkey", "k.pub"}, "--user is required"},
		{[]string{"sign", "--user", "web1", "--pubkey", "k.pub", "--host", "--logins", "root"}, "--logins is for user certificates"},
		{[]string{"audit", "ls", "--limit", "-1"}, "--limit must not be negative"},
	} {
		r := runCaadm(t, "", append([]string{"--socket", f.socket}, tc.args...)...)
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			wantFailure(t, r, 2, tc.want)
		})
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("usage errors reached the server %d times", n)
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"users", "add", "-h"}, {"users", "add", "alice", "--help"}} {
		r := runCaadm(t, "", args...)
		if r.code != 0 || !strings.Contains(r.stderr, "USAGE") || strings.Count(r.stderr, "USAGE") != 1 {
			t.Errorf("caadm %q: code %d, stderr %q", args, r.code, r.stderr)
		}
	}
}

func TestLockUntil(t *testing.T) {
	f := newFakeCA(t, map[string]any{"POST " + api.PathAdminUser + "bob/lock": nil})
	r := runCaadm(t, "", "--socket", f.socket, "users", "lock", "bob", "--until", "2h", "--reason", "on leave")
	wantSuccess(t, r)
	var got api.LockRequest
	f.only(t, &got)
	if got.Until == nil {
		t.Fatal("lock request has no until")
	}
	if d := time.Until(*got.Until); d < 2*time.Hour-time.Minute || d > 2*time.Hour {
		t.Errorf("until is %v from now, want about 2h", d)
	}
	if got.Reason != "on leave" {
		t.Errorf("reason = %q", got.Reason)
	}
	if !strings.HasPrefix(r.stdout, "Locked user bob until ") {
		t.Errorf("stdout = %q", r.stdout)
	}
}

func TestLockForever(t *testing.T) {
	f := newFakeCA(t, map[string]any{"POST " + api.PathAdminUser + "a%20b/lock": nil})
	wantSuccess(t, runCaadm(t, "", "--socket", f.socket, "users", "lock", "a b"))
	if req := f.only(t, nil); string(req.body) != "{}\n" && string(req.body) != "{}" {
		t.Errorf("body = %q, want {}", req.body)
	}
}

func TestRolesAdd(t *testing.T) {
	f := newFakeCA(t, nil)
	f.resp = map[string]any{"POST " + api.PathAdminRoles: api.Role{Name: "dev", Logins: []string{"{user}"}}}
	r := runCaadm(t, "", "--socket", f.socket, "roles", "add", "dev", "--logins", "{user},deploy",
		"--labels", "env=prod,env=staging", "--labels", "team=db", "--max-ttl", "8h", "--agent-forwarding",
		"--source-address", "10.0.0.0/8,192.0.2.1")
	wantSuccess(t, r)
	var got api.Role
	f.only(t, &got)
	want := api.Role{
		Name: "dev", Logins: []string{"{user}", "deploy"},
		NodeLabels: map[string][]string{"env": {"prod", "staging"}, "team": {"db"}},
		MaxTTL:     api.Duration(8 * time.Hour), PermitAgentForwarding: true,
		SourceAddress: []string{"10.0.0.0/8", "192.0.2.1"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("server got %+v, want %+v", got, want)
	}
}

func TestSign(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "id.pub")
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
	if err := os.WriteFile(keyFile, []byte(line+" bot@example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const cert = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQ="
	f := newFakeCA(t, map[string]any{"POST " + api.PathAdminSign: api.Cert{Certificate: cert, Serial: "42"}})
	r := runCaadm(t, "", "--socket", f.socket, "sign", "--host", "--user", "web1", "--pubkey", keyFile, "--principals", "web1.example.com,10.0.0.5", "--ttl", "24h")
	wantSuccess(t, r)
	if r.stdout != cert+"\n" {
		t.Errorf("stdout = %q, want the certificate line only", r.stdout)
	}
	var got api.AdminSignRequest
	f.only(t, &got)
	if !got.Host || got.Name != "web1" || got.PublicKey != line || len(got.Principals) != 2 || got.TTL != api.Duration(24*time.Hour) {
		t.Errorf("server got %+v", got)
	}

	r = runCaadm(t, "", "--socket", f.socket, "sign", "--user", "bot", "--pubkey", filepath.Join(t.TempDir(), "none.pub"))
	wantFailure(t, r, 1, "reading the public key", "no such file")
}

func TestAuditLs(t *testing.T) {
	f := newFakeCA(t, map[string]any{
		"GET " + api.PathAdminAudit: []api.AuditEvent{{
			Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Type: "cert.issue", User: "alice", Actor: "api", Success: true,
			Fields: map[string]string{"serial": "42", "logins": "alice root", "a": ""},
		}},
	})
	r := runCaadm(t, "", "--socket", f.socket, "audit", "ls", "--user", "alice", "--since", "24h", "--limit", "10")
	wantSuccess(t, r)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[1], `a="" logins="alice root" serial=42`) {
		t.Errorf("stdout = %q", r.stdout)
	}
	q := f.only(t, nil).query
	since, err := time.Parse(time.RFC3339, first(q["since"]))
	if err != nil || time.Since(since) < 24*time.Hour-time.Minute || time.Since(since) > 24*time.Hour+time.Minute {
		t.Errorf("since = %q (%v), want about 24h ago", q["since"], err)
	}
	if first(q["user"]) != "alice" || first(q["limit"]) != "10" || q["type"] != nil {
		t.Errorf("query = %v", q)
	}
}

func TestCertsLs(t *testing.T) {
	f := newFakeCA(t, map[string]any{
		"GET " + api.PathAdminCerts: []api.IssuedCert{{Serial: "42", Type: "user", KeyID: "alice", Principals: []string{"alice", "root"}}},
	})
	r := runCaadm(t, "", "--socket", f.socket, "certs", "ls", "--serial", "42")
	wantSuccess(t, r)
	if !strings.Contains(r.stdout, "SERIAL") || !strings.Contains(r.stdout, "alice,root") {
		t.Errorf("stdout = %q", r.stdout)
	}
	if q := f.only(t, nil).query; first(q["serial"]) != "42" {
		t.Errorf("query = %v", q)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}
