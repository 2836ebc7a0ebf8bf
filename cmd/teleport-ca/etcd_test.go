package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/ca/store/storetest"
	"github.com/opensshca/suite/internal/testbin"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// teleport-ca with --storage etcd keeps its state in etcd under the
// prefix, none in the data dir; a restart (here configured through the
// TOML file) finds the users, the sign-in session and the issuance log.
func TestEtcdStorage(t *testing.T) {
	t.Parallel()
	srv := storetest.StartEtcd(t, storetest.EtcdConfig{})
	const prefix = "/teleport-ca/test/"
	keyFile := newKeyFile(t)
	c := testbin.StartCA(t, "--storage", "etcd", "--etcd-endpoints", srv.Endpoint, "--etcd-prefix", prefix, "--key-file", keyFile)
	hc, session := signIn(t, c, "alice")
	ctx := bg(t)
	cert, err := hc.SignUser(ctx, session, api.SignUserRequest{PublicKey: publicKeys(t, 1)[0]})
	if err != nil {
		t.Fatalf("SignUser: %v", err)
	}
	if code := c.Stop(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; stderr:\n%s", code, c.Stderr)
	}
	noErrorLogs(t, "teleport-ca on etcd", c.Stderr.String())

	if _, err := os.Stat(filepath.Join(c.DataDir, "state.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state.db in the data dir with --storage etcd: %v", err)
	}
	cli := srv.Client(t)
	for _, want := range []string{"users/alice", "certs/"} {
		resp, err := cli.Get(ctx, prefix+want, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || resp.Count == 0 {
			t.Errorf("etcd has no key under %s%s: %v", prefix, want, err)
		}
	}
	resp, err := cli.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if !strings.HasPrefix(string(kv.Key), prefix) {
			t.Errorf("etcd key %q outside the prefix %s", kv.Key, prefix)
		}
	}

	conf := filepath.Join(t.TempDir(), "teleport-ca.toml")
	toml := "storage = \"etcd\"\nkey-file = \"" + keyFile + "\"\n[etcd]\nendpoints = \"" + srv.Endpoint + "\"\nprefix = \"" + prefix + "\"\ntimeout = \"10s\"\n"
	if err := os.WriteFile(conf, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	c2 := testbin.Start(t, testbin.Config{DataDir: c.DataDir, Args: []string{"--config", conf}})
	users, err := c2.Admin().Users(ctx)
	if err != nil || len(users) != 1 || users[0].Name != "alice" {
		t.Errorf("users after restart = %+v, %v; want alice", users, err)
	}
	logged, err := c2.Admin().Certs(ctx, client.CertFilter{Serial: cert.Serial})
	if err != nil || len(logged) != 1 || logged[0].KeyID != "alice" {
		t.Errorf("issuance log for serial %s after restart = %+v, %v", cert.Serial, logged, err)
	}
	if _, err := c2.HTTPS().SignUser(ctx, session, api.SignUserRequest{PublicKey: publicKeys(t, 1)[0]}); err != nil {
		t.Errorf("SignUser after restart with the old session: %v", err)
	}
	noErrorLogs(t, "teleport-ca restarted on etcd", c2.Stderr.String())
}

// Wrong storage settings stop the start with an error that names the
// flags; an unreachable etcd, within --etcd-timeout.
func TestStorageFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	closed := testbin.FreePort(t)
	testbin.Build(t, testbin.TeleportCA) // not timed below
	kf := newKeyFile(t)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown backend", []string{"--storage", "sqlite"}, []string{`--storage "sqlite"`, `"bolt" or "etcd"`}},
		{"etcd without endpoints", []string{"--storage", "etcd"}, []string{"--storage etcd needs --etcd-endpoints"}},
		{"etcd flags with bolt", []string{"--etcd-endpoints", "http://" + closed, "--etcd-user", "ca"}, []string{"--etcd-endpoints, --etcd-user set, but --storage is bolt"}},
		{"key file with bolt", []string{"--key-file", kf}, []string{"--key-file set, but --storage is bolt"}},
		{"user without password file", []string{"--storage", "etcd", "--etcd-endpoints", closed, "--etcd-user", "ca", "--key-file", kf}, []string{"--etcd-user and --etcd-password-file go together"}},
		{"missing password file", []string{"--storage", "etcd", "--etcd-endpoints", closed, "--etcd-user", "ca", "--etcd-password-file", filepath.Join(dir, "missing"), "--key-file", kf}, []string{"--etcd-password-file", "missing"}},
		{"empty password file", []string{"--storage", "etcd", "--etcd-endpoints", closed, "--etcd-user", "ca", "--etcd-password-file", empty, "--key-file", kf}, []string{"is empty"}},
		{"prefix without slash", []string{"--storage", "etcd", "--etcd-endpoints", closed, "--etcd-prefix", "/ca", "--key-file", kf}, []string{`"/ca" must end in "/"`}},
		{"unreachable", []string{"--storage", "etcd", "--etcd-endpoints", "http://" + closed, "--etcd-timeout", "1s", "--key-file", kf}, []string{"http://" + closed, "did not answer within 1s", "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			r := runCA(t, append([]string{"--data-dir", filepath.Join(t.TempDir(), "data")}, tt.args...)...)
			if r.code == 0 {
				t.Fatalf("teleport-ca %q exited 0", tt.args)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not contain %q:\n%s", w, r.stderr)
				}
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("refused after %v", d)
			}
		})
	}
}
