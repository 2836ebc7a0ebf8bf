package main

import (
	"bytes"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opensshca/suite/internal/testbin"
)

// TestTerminalPromptNoEcho runs the built login on a real pseudo-terminal
// (util-linux script) and types as a user would, after each prompt: the
// password must not appear in what the terminal shows, the code may.
func TestTerminalPromptNoEcho(t *testing.T) {
	t.Parallel()
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("needs util-linux script for a pseudo-terminal; .ci/run installs util-linux")
	}
	bin := testbin.Build(t, "github.com/opensshca/suite/cmd/teleport-keyhelper")["teleport-keyhelper"]
	c := startCluster(t)
	secret := c.addUser(t, "tess", "tess")
	code := strings.TrimSpace(strings.Split(credentials(t, "tess", secret, time.Now()), "\n")[1])
	ag := testbin.StartAgent(t)

	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	line := strings.Join([]string{quote(bin), "login", "--home", quote(filepath.Join(t.TempDir(), ".teleport")),
		"--server", quote(c.ca.URL()), "--user", "tess", "--ca-pin", quote(c.ca.Pin)}, " ")
	cmd := exec.Command(script, "-qfec", line, "/dev/null")
	cmd.Env = append(testbin.Environ(), "SSH_AUTH_SOCK="+ag.Socket, "TERM=dumb")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var screen bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	shown := func() string {
		mu.Lock()
		defer mu.Unlock()
		return screen.String()
	}
	typeAfter := func(prompt, input string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(shown(), prompt) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q prompt; the terminal shows:\n%s", prompt, shown())
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The prompt is written just before echo is turned off: leave
		// the program that moment, as a person typing would.
		time.Sleep(300 * time.Millisecond)
		if _, err := io.WriteString(stdin, input+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	typeAfter("Password for tess: ", password("tess"))
	typeAfter("One-time code", code)
	stdin.Close()
	<-done
	if err := cmd.Wait(); err != nil {
		t.Fatalf("login on a terminal: %v\n%s", err, shown())
	}
	out := shown()
	if strings.Contains(out, password("tess")) {
		t.Fatalf("the password was echoed to the terminal:\n%s", out)
	}
	if !strings.Contains(out, code) || !strings.Contains(out, "Signed in to") {
		t.Fatalf("the terminal does not show the code and the sign-in:\n%s", out)
	}
	if certs := c.agentCerts(t, ag); len(certs) != 1 {
		t.Fatalf("%d certificates in the agent after the terminal login, want 1", len(certs))
	}
}
