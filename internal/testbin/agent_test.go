package testbin

import (
	"crypto/ed25519"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// StartAgent gives an empty agent that ssh-add reaches through Command.
func TestStartAgent(t *testing.T) {
	t.Parallel()
	a := StartAgent(t)
	if keys := a.Keys(t); len(keys) != 0 {
		t.Fatalf("new agent holds %q", keys)
	}
	key := filepath.Join(t.TempDir(), "id")
	_, priv, _ := ed25519.GenerateKey(nil)
	block, err := ssh.MarshalPrivateKey(priv, "test key")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := a.Command("ssh-add", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	if keys := a.Keys(t); len(keys) != 1 || !strings.HasSuffix(keys[0], " test key") {
		t.Errorf("Keys = %q", keys)
	}
}

// StartSSHD serves its host key on a loopback port.
func TestStartSSHD(t *testing.T) {
	t.Parallel()
	pub, priv, _ := ed25519.GenerateKey(nil)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	s := StartSSHD(t, SSHDConfig{HostKey: pem.EncodeToMemory(block)})
	if _, err := exec.LookPath("ssh-keyscan"); err != nil {
		t.Skip("ssh-keyscan not installed")
	}
	out, err := exec.Command("ssh-keyscan", "-p", s.Port, "-t", "ed25519", "127.0.0.1").Output()
	if err != nil {
		t.Fatalf("ssh-keyscan: %v", err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	want := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
	if !strings.Contains(string(out), want) {
		t.Errorf("ssh-keyscan found %q, want the host key %q", out, want)
	}
}
