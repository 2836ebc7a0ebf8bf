package keyhelper

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
)

// Every error a user meets becomes one line that says what happened and
// what to do.
func TestDescribe(t *testing.T) {
	s := Server{Host: "ca.example.com", Port: "3080"}
	// As the client returns them: wrapped once by the client, once by
	// keyhelper.
	reach := func(err error) error {
		return remote(s, fmt.Errorf("client: cannot reach teleport-ca at https://ca.example.com:3080: %w", err))
	}
	apiErr := func(code, msg string) error { return remote(s, &api.Error{Code: code, Message: msg}) }
	tests := []struct {
		name string
		err  error
		want []string // substrings, all required
	}{
		{"wrong password or code", apiErr(api.CodeBadCredentials, "wrong user name, password or code"),
			[]string{"wrong user name, password or one-time code", "try again", "wait for the next one"}},
		{"locked until", apiErr(api.CodeLocked, "account is locked (5 failed sign-ins in a row) until 2030-01-01T00:00:00Z; try again then or ask an administrator"),
			[]string{"locked", "until 2030-01-01", "ask an administrator"}},
		{"locked, other wording", apiErr(api.CodeLocked, "on leave"),
			[]string{"your account is locked (on leave)", "ask an administrator"}},
		{"sign-in expired", apiErr(api.CodeSessionExpired, "sign-in session has expired or ended; sign in again"),
			[]string{"sign-in has expired", "teleport-keyhelper login"}},
		{"throttled", apiErr(api.CodeTooMany, "too many failed sign-ins from your address; try again in 9m0s"),
			[]string{"try again in 9m0s", "wait"}},
		{"forbidden", apiErr(api.CodeForbidden, `no login is allowed for "alice"`),
			[]string{"the CA at https://ca.example.com:3080 refused", `no login is allowed for "alice"`}},
		{"not enrolled", apiErr(api.CodeForbidden, "account is not enrolled yet: open the enrollment link your administrator gave you"),
			[]string{"refused", "enrollment link"}},
		{"internal", apiErr(api.CodeInternal, "internal error in teleport-ca; the CA log has details (request id 17)"),
			[]string{"failed", "request id 17", "administrator"}},
		{"control characters from the server", apiErr(api.CodeForbidden, "bad\x1b[31m\nthing"),
			[]string{"refused: bad [31m thing"}},
		{"pin mismatch", remote(s, &client.PinMismatchError{Want: []string{"sha256:aa"}, Got: []string{"sha256:bb", "sha256:cc"}}),
			[]string{"not the CA the pin names", "sha256:aa", "sha256:bb, sha256:cc", "caadm ca show", "do not sign in"}},
		{"connection refused", reach(&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}),
			[]string{"cannot reach the CA at https://ca.example.com:3080", "connection refused", "check --server"}},
		{"no such host", reach(&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Name: "ca.example.com", Err: "no such host", IsNotFound: true}}),
			[]string{"cannot reach", "ca.example.com does not resolve", "check --server"}},
		{"timeout", reach(&net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}),
			[]string{"cannot reach", "timed out"}},
		{"untrusted certificate", reach(x509.UnknownAuthorityError{}),
			[]string{"does not trust", "--ca-pin sha256:", "caadm ca show"}},
		{"wrong name", reach(x509.HostnameError{Certificate: &x509.Certificate{DNSNames: []string{"other.example.com"}}, Host: "ca.example.com"}),
			[]string{"other names", "other.example.com", "--tls-names"}},
		{"unsafe directory", &UnsafeError{Path: "/home/a/.teleport", Problem: "can be reached by group or others (mode 0755)", Fix: "run: chmod 700 /home/a/.teleport"},
			[]string{"/home/a/.teleport can be reached by group or others", "chmod 700"}},
		{"not logged in", ErrNotLoggedIn, []string{"not logged in", "teleport-keyhelper login --server"}},
		{"expired certificate", &ExpiredError{ValidBefore: time.Unix(0, 0)}, []string{"expired", "clock", "login again"}},
		{"no agent", ErrNoAgent, []string{"SSH_AUTH_SOCK is not set", "eval \"$(ssh-agent)\""}},
		{"dead agent", &AgentError{Socket: "/tmp/x/agent.sock", Op: "connecting", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
			[]string{"/tmp/x/agent.sock", "connection refused", "ssh-agent"}},
		{"interrupted", fmt.Errorf("keyhelper: %w", context.Canceled), []string{"interrupted"}},
		{"other", errors.New("keyhelper: something odd"), []string{"something odd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Describe(tt.err)
			if strings.ContainsAny(got, "\n\r") {
				t.Errorf("Describe = %q: more than one line", got)
			}
			if strings.HasPrefix(got, "keyhelper:") || strings.HasPrefix(got, "client:") {
				t.Errorf("Describe = %q: shows a package prefix", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("Describe = %q\n  lacks %q", got, w)
				}
			}
		})
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
