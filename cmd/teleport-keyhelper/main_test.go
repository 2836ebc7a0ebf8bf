package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/opensshca/suite/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.RemoveAll()
	os.Exit(code)
}

// result is one run of the program.
type result struct {
	code           int
	stdout, stderr string
}

// kh runs the program in-process with env as its environment for
// HOME and SSH_AUTH_SOCK (flags come only from args: the TELEPORT_*
// variables are read from the process, which parallel tests share) and
// stdin as its standard input.
func kh(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{
		stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb,
		getenv: func(k string) string { return env[k] },
	}
	code := a.run(context.Background(), args)
	return result{code, out.String(), errb.String()}
}

// Command lines that make no sense exit 2 with one line that names the
// command and points at its help; -h exits 0.
func TestUsage(t *testing.T) {
	home := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "missing command, want one of login, config, status, sessions, logout, daemon"},
		{"unknown command", []string{"register"}, `unknown command "register"`},
		{"login without server", []string{"login", "--user", "alice"}, "login: missing --server"},
		{"login without user", []string{"login", "--server", "ca.example.com"}, "login: missing --user"},
		{"bad server", []string{"login", "--server", "http://ca.example.com", "--user", "alice"}, "must start with https://"},
		{"bad user", []string{"login", "--server", "ca.example.com", "--user", "Alice Smith"}, "user name"},
		{"bad hosts", []string{"login", "--server", "ca.example.com", "--user", "alice", "--hosts", "a\"b"}, "--hosts pattern"},
		{"bad ttl", []string{"login", "--server", "ca.example.com", "--user", "alice", "--ttl", "-1h"}, "not a duration"},
		{"bad pin", []string{"login", "--server", "ca.example.com", "--user", "alice", "--ca-pin", "abc"}, "--ca-pin: pin must start with"},
		{"cert path alone", []string{"login", "--server", "ca.example.com", "--user", "alice", "--cert-path", "/tmp/c"}, "--cert-path needs --key-path"},
		{"unknown flag", []string{"status", "--nope"}, "status: flag provided but not defined: -nope"},
		{"positional argument", []string{"logout", "ca.example.com"}, `logout: unexpected argument "ca.example.com"`},
		{"bad config hosts", []string{"config", "--home", home, "--hosts", "!x"}, "only negated"},
		{"daemon without server", []string{"daemon", "--auth", "alice"}, "daemon: missing --server"},
		{"daemon without auth", []string{"daemon", "--server", "ca.example.com"}, "daemon: missing --auth"},
		{"daemon bad auth", []string{"daemon", "--server", "ca.example.com", "--auth", "Alice"}, "--auth: user name"},
		{"daemon bad ttl", []string{"daemon", "--server", "ca.example.com", "--auth", "alice", "--cert-ttl", "0s"}, "not a duration"},
		{"daemon cert path alone", []string{"daemon", "--server", "ca.example.com", "--auth", "alice", "--cert-path", "/tmp/c"}, "--cert-path needs --key-path"},
		{"daemon bad log level", []string{"daemon", "--server", "ca.example.com", "--auth", "alice", "--log-level", "loud"}, "--log-level: unknown log level"},
		{"sessions argument", []string{"sessions", "node1"}, `sessions: unexpected argument "node1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := kh(t, nil, "", tt.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) || strings.Count(r.stderr, "\n") != 1 ||
				!strings.HasPrefix(r.stderr, "teleport-keyhelper: ") || !strings.Contains(r.stderr, "-h')") {
				t.Errorf("exit %d, stderr %q; want exit 2 and one line with %q", r.code, r.stderr, tt.want)
			}
		})
	}
	for _, args := range [][]string{{"-h"}, {"login", "-h"}, {"config", "-h"}, {"status", "-h"}, {"logout", "-h"}, {"daemon", "-h"}, {"sessions", "-h"}} {
		r := kh(t, nil, "", args...)
		if r.code != 0 || !strings.Contains(r.stderr, "USAGE") {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
}

// Without any login, status, config, sessions and logout say so and exit
// 1.
func TestNotLoggedIn(t *testing.T) {
	t.Parallel()
	home := t.TempDir() + "/.teleport"
	for _, cmd := range []string{"status", "config", "sessions", "logout"} {
		r := kh(t, nil, "", cmd, "--home", home)
		if r.code != 1 || !strings.Contains(r.stderr, "not logged in: run teleport-keyhelper login") {
			t.Errorf("%s: exit %d, stderr %q", cmd, r.code, r.stderr)
		}
	}
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Errorf("a read-only command created the state directory (%v)", err)
	}
}
