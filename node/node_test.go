package node_test

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/nodedir"
	"github.com/opensshca/suite/internal/testbin"
	"github.com/opensshca/suite/node"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestSSHDConfigGolden(t *testing.T) {
	for _, c := range []struct {
		file string
		o    node.SSHDOptions
	}{
		{"sshd_config.principals.golden", node.SSHDOptions{Dir: nodedir.DefaultDir}},
		{"sshd_config.keys.golden", node.SSHDOptions{Dir: "/srv/teleport-node", KeysCommand: true, AuthkeysUser: "nobody", MaxAge: 30 * time.Minute}},
	} {
		got, err := node.SSHDConfig(c.o)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, c.file, got)
	}
	for _, bad := range []node.SSHDOptions{
		{Dir: "relative/dir"},
		{Dir: "/var/lib/with space"},
		{Dir: "/var/lib/x%u"},
		{Dir: "/var/lib/x\nAuthorizedKeysFile /tmp/keys"},
		{Dir: nodedir.DefaultDir, AuthkeysUser: "no body"},
		{Dir: nodedir.DefaultDir, Authkeys: "/usr/bin/x y"},
	} {
		if got, err := node.SSHDConfig(bad); err == nil {
			t.Errorf("SSHDConfig(%+v) accepted:\n%s", bad, got)
		}
	}
}

// TestInstallRollsBack checks install-sshd-config with the real sshd -t:
// a drop-in sshd accepts is installed; one it refuses is replaced by the
// previous file, or removed when there was none.
func TestInstallRollsBack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("sshd -t reads host keys as root; CI runs as root")
	}
	if _, err := os.Stat(testbin.SSHDPath); err != nil {
		t.Skip("sshd not installed")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "data", "host_key")
	if err := os.MkdirAll(filepath.Dir(key), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	main := filepath.Join(dir, "sshd_config")
	dropDir := filepath.Join(dir, "sshd_config.d")
	if err := os.WriteFile(main, []byte("Include "+dropDir+"/*.conf\nUsePAM no\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := node.InstallOptions{Path: filepath.Join(dropDir, "50-teleport-node.conf"), MainConfig: main}
	good, err := node.SSHDConfig(node.SSHDOptions{Dir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if changed, err := node.Install(ctx, good, o); err != nil || !changed {
		t.Fatalf("good drop-in: changed=%v err=%v", changed, err)
	}
	if changed, err := node.Install(ctx, good, o); err != nil || changed {
		t.Fatalf("same drop-in again: changed=%v err=%v", changed, err)
	}
	_, err = node.Install(ctx, good+"NoSuchKeyword yes\n", o)
	if err == nil || !strings.Contains(err.Error(), "NoSuchKeyword") || !strings.Contains(err.Error(), "previous") {
		t.Fatalf("bad drop-in: %v", err)
	}
	if b, _ := os.ReadFile(o.Path); string(b) != good {
		t.Fatalf("previous drop-in not restored:\n%s", b)
	}
	o.Path = filepath.Join(dropDir, "60-other.conf")
	if _, err := node.Install(ctx, "NoSuchKeyword yes\n", o); err == nil {
		t.Fatal("bad new drop-in accepted")
	}
	if _, err := os.Stat(o.Path); !os.IsNotExist(err) {
		t.Fatalf("refused new drop-in left in place: %v", err)
	}
}

// TestJoinRefusals checks that refused joins say why and leave nothing.
func TestJoinRefusals(t *testing.T) {
	ca := testbin.StartCA(t)
	adm := ca.Admin()
	ctx := context.Background()
	tok := func(role string) string {
		resp, err := adm.AddToken(ctx, api.AddTokenRequest{Role: role, TTL: api.Duration(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Secret
	}
	used := tok("node")
	base := t.TempDir()
	cfg := func(token, name string) node.JoinConfig {
		return node.JoinConfig{Server: ca.URL(), Token: token, Pin: ca.Pin, Dir: filepath.Join(base, name), Name: name, AuthkeysUser: "nobody"}
	}
	if err := node.Join(ctx, cfg(used, "n1")); err != nil {
		t.Fatalf("first join: %v", err)
	}
	if err := node.Join(ctx, cfg(used, "n1")); err == nil || !strings.Contains(err.Error(), "already joined") {
		t.Fatalf("join over a joined dir: %v", err)
	}
	for name, token := range map[string]string{"n2": used, "n3": tok("proxy"), "n4": "00" + strings.Repeat("a", 62)} {
		err := node.Join(ctx, cfg(token, name))
		if err == nil || !strings.Contains(err.Error(), "token is unknown, expired, already used or for another role") {
			t.Errorf("join %s: %v", name, err)
		}
		if _, serr := os.Stat(filepath.Join(base, name)); !os.IsNotExist(serr) {
			t.Errorf("join %s refused but left %s behind", name, filepath.Join(base, name))
		}
	}
	c := cfg(tok("node"), "n5")
	c.Pin = "sha256:" + strings.Repeat("0", 64)
	if err := node.Join(ctx, c); err == nil || !strings.Contains(err.Error(), "pin") {
		t.Fatalf("wrong pin: %v", err)
	}
	// The joined dir has the modes sshd and teleport-authkeys need.
	d := nodedir.Dir(filepath.Join(base, "n1"))
	for name, want := range map[string]os.FileMode{
		nodedir.HostKey: 0o600, nodedir.IdentityKey: 0o640, nodedir.HostCert: 0o644, nodedir.TrustedCA: 0o644, nodedir.Config: 0o644,
	} {
		fi, err := os.Stat(d.Path(name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v mode %v, want %v", name, err, fi.Mode().Perm(), want)
		}
	}
}
