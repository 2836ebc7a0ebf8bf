package main

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/ca/store/storetest"
	"github.com/opensshca/suite/internal/testbin"
)

// state is what the test compares between a CA and its restored copy.
type state struct {
	pin     string
	users   []string
	serials map[string]bool
}

func stateOf(t *testing.T, c *testbin.CA) state {
	t.Helper()
	ctx := context.Background()
	adm := c.Admin()
	info, err := adm.AdminCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	users, err := adm.Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := adm.Certs(ctx, client.CertFilter{})
	if err != nil {
		t.Fatal(err)
	}
	s := state{pin: info.Pin, serials: map[string]bool{}}
	for _, u := range users {
		s.users = append(s.users, u.Name)
	}
	for _, c := range certs {
		s.serials[c.Serial] = true
	}
	return s
}

func sameState(t *testing.T, what string, got, want state) {
	t.Helper()
	if got.pin != want.pin || strings.Join(got.users, ",") != strings.Join(want.users, ",") || len(got.serials) < len(want.serials) {
		t.Fatalf("%s: pin %s users %v (%d certs), want pin %s users %v (%d certs)", what, got.pin, got.users, len(got.serials), want.pin, want.users, len(want.serials))
	}
	for s := range want.serials {
		if !got.serials[s] {
			t.Fatalf("%s: issued certificate %s is missing", what, s)
		}
	}
}

// caadm backup of a running CA and caadm restore into a new data dir, into
// etcd (the move from bbolt to etcd), and the refusals that keep a
// restore from losing or mixing anything.
func TestBackupRestore(t *testing.T) {
	ctx := context.Background()
	c := testbin.StartCA(t)
	mustCaadm(t, c, "", "roles", "add", "ops", "--logins", "root", "--labels", "*=*")
	if _, err := c.Admin().AddUser(ctx, api.AddUserRequest{Name: "alice", Roles: []string{"ops"}, Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	pub := writePub(t)
	mustCaadm(t, c, "", "sign", "--user", "alice", "--pubkey", pub)
	want := stateOf(t, c)

	dir := t.TempDir()
	plain, full := filepath.Join(dir, "plain.json"), filepath.Join(dir, "full.json")
	out := mustCaadm(t, c, "", "backup", plain)
	if !strings.Contains(out, "CA keys: not included") {
		t.Errorf("backup without keys says:\n%s", out)
	}
	out = mustCaadm(t, c, "", "backup", "--with-keys", full)
	if !strings.Contains(out, "IN THE CLEAR") {
		t.Errorf("backup with keys says:\n%s", out)
	}
	for _, f := range []string{plain, full} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", f, fi, err)
		}
	}
	if code, _, errs := caadmRun(t, c, "", "backup", plain); code == 0 || !strings.Contains(errs, "never overwrites") {
		t.Errorf("backup over an existing file: exit %d %s", code, errs)
	}
	if out := mustCaadm(t, c, "", "audit", "ls", "--type", "backup.create"); strings.Count(out, "backup.create") != 2 || !strings.Contains(out, "keys=yes") {
		t.Errorf("backups are not audited:\n%s", out)
	}

	refused := func(what, want string, args ...string) {
		t.Helper()
		code, _, errs := caadmRun(t, c, "", append([]string{"restore"}, args...)...)
		if code == 0 || !strings.Contains(errs, want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", what, code, errs, want)
		}
	}
	// A damaged backup, a backup without keys into a dir without keys,
	// a non-empty store: refused, and nothing written.
	damaged := filepath.Join(dir, "damaged.json")
	b, _ := os.ReadFile(full)
	edited := strings.Replace(string(b), `"key":"users/alice"`, `"key":"users/mallo"`, 1)
	if edited == string(b) {
		t.Fatal("the backup has no users/alice item to edit")
	}
	if err := os.WriteFile(damaged, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "data")
	refused("an edited backup", "checksum", "--data-dir", empty, damaged)
	refused("no keys anywhere", "holds no CA keys", "--data-dir", empty, plain)
	if _, err := os.Stat(filepath.Join(empty, "state.db")); err == nil {
		t.Error("a refused restore left a store behind")
	}
	refused("a running CA's data dir", "target store", "--data-dir", c.DataDir, full)

	// Into a new data dir: the restored CA is the same CA.
	restored := filepath.Join(t.TempDir(), "data")
	if out := mustCaadm(t, c, "", "restore", "--data-dir", restored, full); !strings.Contains(out, "its CA pin will be "+want.pin) {
		t.Errorf("restore says:\n%s", out)
	}
	refused("into the restored, no longer empty store", "holds", "--data-dir", restored, full)
	c.Stop()
	c2 := testbin.Start(t, testbin.Config{DataDir: restored})
	sameState(t, "restored on bbolt", stateOf(t, c2), want)

	// A backup without keys restores next to the key files.
	keyed := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(keyed, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"user_ca", "host_ca", "session_ca", "tls_root.key", "tls_root.crt"} {
		b, err := os.ReadFile(filepath.Join(c.DataDir, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keyed, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mustCaadm(t, c2, "", "restore", "--data-dir", keyed, plain)

	// The move to etcd: restore into etcd with a key file, then teleport-ca
	// on etcd is the same CA.
	etcd := storetest.StartEtcd(t, storetest.EtcdConfig{})
	keyFile := filepath.Join(t.TempDir(), "ca.key")
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	etcdArgs := []string{"--storage", "etcd", "--etcd-endpoints", etcd.Endpoint, "--etcd-prefix", "/moved/", "--key-file", keyFile}
	etcdDir := filepath.Join(t.TempDir(), "data")
	mustCaadm(t, c2, "", append(append([]string{"restore", "--data-dir", etcdDir}, etcdArgs...), full)...)
	c2.Stop()
	c3 := testbin.Start(t, testbin.Config{DataDir: etcdDir, Args: etcdArgs})
	sameState(t, "moved to etcd", stateOf(t, c3), want)

	// A backup of the CA on etcd carries its keys sealed: restoring it
	// needs etcd and the key file.
	sealed := filepath.Join(dir, "sealed.json")
	if out := mustCaadm(t, c3, "", "backup", sealed); !strings.Contains(out, "sealed") {
		t.Errorf("backup on etcd says:\n%s", out)
	}
	code, _, errs := caadmRun(t, c3, "", "restore", "--data-dir", filepath.Join(t.TempDir(), "data"), sealed)
	if code == 0 || !strings.Contains(errs, "sealed with the --key-file") {
		t.Errorf("a sealed backup into bbolt: exit %d %s", code, errs)
	}
	again := []string{"--storage", "etcd", "--etcd-endpoints", etcd.Endpoint, "--etcd-prefix", "/again/", "--key-file", keyFile}
	mustCaadm(t, c3, "", append(append([]string{"restore", "--data-dir", filepath.Join(t.TempDir(), "data")}, again...), sealed)...)
	c3.Stop()
	c4 := testbin.Start(t, testbin.Config{DataDir: filepath.Join(t.TempDir(), "data"), Args: again})
	sameState(t, "restored from a sealed backup", stateOf(t, c4), want)
}
