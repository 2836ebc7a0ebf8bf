package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/ca/store/storetest"
	"github.com/opensshca/suite/internal/testbin"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// replica is a teleport-ca process started by startReplicas.
type replica struct {
	dataDir, listen, sock string
	stdout, stderr        *testbin.Buffer
	cmd                   *exec.Cmd
	done                  chan struct{}
	pin                   string
}

// startReplicas starts n teleport-ca processes at once (so that they race
// to create the CA keys), each with its own data dir, port and admin
// socket and the flags args, and waits until every admin socket answers.
func startReplicas(t *testing.T, n int, args ...string) []*replica {
	t.Helper()
	bin := testbin.Build(t, testbin.TeleportCA)["teleport-ca"]
	rs := make([]*replica, n)
	for i := range rs {
		r := &replica{
			dataDir: filepath.Join(t.TempDir(), "data"), listen: testbin.FreePort(t),
			sock:   filepath.Join(testbin.ShortTempDir(t), "admin.sock"),
			stdout: new(testbin.Buffer), stderr: new(testbin.Buffer), done: make(chan struct{}),
		}
		all := append([]string{"--data-dir", r.dataDir, "--listen", r.listen, "--admin-socket", r.sock}, testbin.CheapArgon2...)
		r.cmd = exec.Command(bin, append(all, args...)...)
		r.cmd.Env = testbin.Environ()
		r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
		rs[i] = r
	}
	for i, r := range rs {
		if err := r.cmd.Start(); err != nil {
			t.Fatalf("starting replica %d: %v", i, err)
		}
		go func() { _ = r.cmd.Wait(); close(r.done) }()
		t.Cleanup(func() {
			r.stop(t)
			if t.Failed() {
				t.Logf("replica %d stderr:\n%s", i, r.stderr)
			}
		})
	}
	deadline := time.Now().Add(testbin.ReadyTimeout)
	for i, r := range rs {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err := r.admin().AdminCA(ctx)
			cancel()
			if err == nil {
				r.pin = info.Pin
				break
			}
			select {
			case <-r.done:
				t.Fatalf("replica %d exited before serving; stderr:\n%s", i, r.stderr)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d did not serve within %v: %v", i, testbin.ReadyTimeout, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return rs
}

func (r *replica) admin() *client.Client { return client.NewAdmin(r.sock) }

func (r *replica) https(t *testing.T, cert *tls.Certificate) *client.Client {
	t.Helper()
	c, err := client.New("https://"+r.listen, client.Options{Pin: r.pin, ClientCert: cert, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// stop ends the process with SIGTERM and returns its exit code.
func (r *replica) stop(t *testing.T) int {
	if r.cmd.Process == nil {
		return -1
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		t.Errorf("replica did not exit within 15 s of SIGTERM; killing it")
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	return r.cmd.ProcessState.ExitCode()
}

// newKeyFile makes a key file with the real "teleport-ca gen-key-file".
func newKeyFile(t *testing.T) string {
	t.Helper()
	bin := testbin.Build(t, testbin.TeleportCA)["teleport-ca"]
	p := filepath.Join(t.TempDir(), "ca.key")
	if out, err := exec.Command(bin, "gen-key-file", p).CombinedOutput(); err != nil {
		t.Fatalf("teleport-ca gen-key-file: %v\n%s", err, out)
	}
	wantMode(t, p, 0o600)
	if out, err := exec.Command(bin, "gen-key-file", p).CombinedOutput(); err == nil || !strings.Contains(string(out), "already exists") {
		t.Errorf("gen-key-file over an existing file: %v\n%s", err, out)
	}
	return p
}

// Two replicas on one etcd with one key file: started together they
// serve one authority; a user added through A signs in on B, B's session
// works on A, A's certificate is in B's log, a TOTP code used on B is
// refused on A, failed sign-ins lock the account across both, and a node
// policy long poll on B wakes when a role changes through A. A wrong,
// missing or unsafe key file is refused without writing to etcd.
func TestReplicas(t *testing.T) {
	t.Parallel()
	oathtool, err := exec.LookPath("oathtool")
	if err != nil {
		t.Skip("needs oathtool (package oathtool) to compute TOTP codes")
	}
	srv := storetest.StartEtcd(t, storetest.EtcdConfig{})
	const prefix = "/teleport-ca/replicas/"
	keyFile := newKeyFile(t)
	recordings := filepath.Join(t.TempDir(), "recordings")
	common := []string{"--storage", "etcd", "--etcd-endpoints", srv.Endpoint, "--etcd-prefix", prefix, "--key-file", keyFile, "--recordings-dir", recordings}
	rs := startReplicas(t, 2, common...)
	a, b := rs[0], rs[1]
	ctx := bg(t)

	// One authority: the same keys and pin, created by exactly one.
	infoA, err := a.admin().AdminCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	infoB, err := b.admin().AdminCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if infoA.Pin != infoB.Pin || infoA.UserCA != infoB.UserCA || infoA.HostCA != infoB.HostCA || infoA.SessionCA != infoB.SessionCA {
		t.Fatalf("replicas serve different authorities:\nA: %+v\nB: %+v", infoA, infoB)
	}
	created := 0
	for i, r := range rs {
		if strings.Contains(r.stdout.String(), "created a new authority") {
			created++
		}
		if !strings.Contains(r.stdout.String(), "CA pin: "+infoA.Pin) {
			t.Errorf("replica %d did not print the pin; stdout:\n%s", i, r.stdout)
		}
		for _, f := range []string{"user_ca", "host_ca", "session_ca", "tls_root.key"} {
			if _, err := os.Stat(filepath.Join(r.dataDir, f)); err == nil {
				t.Errorf("replica %d wrote %s to its data dir; the keys belong in etcd", i, f)
			}
		}
	}
	if created != 1 {
		t.Errorf("%d replicas say they created the authority; want 1", created)
	}
	cli := srv.Client(t)
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if bytes.Contains(kv.Value, []byte("PRIVATE KEY")) {
			t.Errorf("etcd key %s holds a private key in the clear", kv.Key)
		}
	}

	// A user added through A signs in on B; the session works on A.
	const password = "correct horse battery staple"
	if _, err := a.admin().AddRole(ctx, api.Role{Name: "ops", Logins: []string{"root"}, NodeLabels: map[string][]string{"env": {"prod"}}}); err != nil {
		t.Fatalf("AddRole: %v", err)
	}
	added, err := a.admin().AddUser(ctx, api.AddUserRequest{Name: "alice", Logins: []string{"alice"}, Roles: []string{"ops"}, Password: password})
	if err != nil {
		t.Fatalf("AddUser: %v", err)
	}
	code := totpCode(t, oathtool, added.OTPAuthURI)
	login, err := b.https(t, nil).Login(ctx, api.LoginRequest{User: "alice", Password: password, TOTP: code})
	if err != nil {
		t.Fatalf("Login on B: %v", err)
	}
	cert, err := a.https(t, nil).SignUser(ctx, login.Session, api.SignUserRequest{PublicKey: publicKeys(t, 1)[0]})
	if err != nil {
		t.Fatalf("SignUser on A with B's session: %v", err)
	}
	logged, err := b.admin().Certs(ctx, client.CertFilter{Serial: cert.Serial})
	if err != nil || len(logged) != 1 || logged[0].KeyID != "alice" {
		t.Errorf("B's issuance log for A's serial %s = %+v, %v", cert.Serial, logged, err)
	}

	// The code B accepted is refused on A.
	if _, err := a.https(t, nil).Login(ctx, api.LoginRequest{User: "alice", Password: password, TOTP: code}); err == nil {
		t.Error("A accepted the TOTP code B had already accepted")
	}
	events, err := b.admin().Audit(ctx, client.AuditFilter{User: "alice", Type: "user.login"})
	if err != nil {
		t.Fatal(err)
	}
	replay := false
	for _, ev := range events {
		replay = replay || ev.Fields["reason"] == "code already used"
	}
	if !replay {
		t.Errorf("B's audit log has no refusal of the replayed code: %+v", events)
	}

	t.Run("policy long poll on B wakes on a change through A", func(t *testing.T) {
		tok, err := a.admin().AddToken(ctx, api.AddTokenRequest{Role: "node", Labels: map[string]string{"env": "prod"}})
		if err != nil {
			t.Fatal(err)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
		id, err := b.https(t, nil).JoinNode(ctx, api.NodeJoinRequest{
			Token: tok.Secret, Name: "node1", HostPublicKey: publicKeys(t, 1)[0],
			TLSPublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		})
		if err != nil {
			t.Fatalf("JoinNode on B: %v", err)
		}
		blk, _ := pem.Decode([]byte(id.TLSCertificate))
		nc := b.https(t, &tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: key})
		p0, err := nc.NodePolicy(ctx, "", 0)
		if err != nil {
			t.Fatalf("NodePolicy on B: %v", err)
		}
		type result struct {
			p   api.NodePolicy
			err error
			at  time.Time
		}
		got := make(chan result, 1)
		go func() {
			p, err := nc.NodePolicy(ctx, p0.Hash, 20*time.Second)
			got <- result{p, err, time.Now()}
		}()
		time.Sleep(500 * time.Millisecond) // the poll is waiting on B
		changed := time.Now()
		if _, err := a.admin().AddRole(ctx, api.Role{Name: "ops", Logins: []string{"root", "deploy"}, NodeLabels: map[string][]string{"env": {"prod"}}}); err != nil {
			t.Fatalf("AddRole on A: %v", err)
		}
		select {
		case r := <-got:
			if r.err != nil || r.p.Hash == p0.Hash {
				t.Fatalf("long poll on B returned %v with hash %s (had %s)", r.err, r.p.Hash, p0.Hash)
			}
			if d := r.at.Sub(changed); d > 5*time.Second {
				t.Errorf("long poll on B woke %v after the change on A", d)
			}
			if !strings.Contains(strings.Join(policyLogins(r.p, "alice"), ","), "deploy") {
				t.Errorf("B's policy after the change gives alice %v; want deploy", policyLogins(r.p, "alice"))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("long poll on B did not wake within 10 s of a role change through A")
		}
	})

	t.Run("lockout counts across replicas", func(t *testing.T) {
		if _, err := a.admin().AddUser(ctx, api.AddUserRequest{Name: "bob", Logins: []string{"bob"}, Password: password}); err != nil {
			t.Fatal(err)
		}
		wrong := api.LoginRequest{User: "bob", Password: "wrong password", TOTP: "000000"}
		for i, r := range []*replica{a, b, a, b} { // 4 failures, alternating
			if _, err := r.https(t, nil).Login(ctx, wrong); err == nil || strings.Contains(err.Error(), "locked") {
				t.Fatalf("failure %d: %v; want wrong credentials, not locked yet", i+1, err)
			}
		}
		_, err := a.https(t, nil).Login(ctx, wrong) // the 5th locks
		if err == nil || !strings.Contains(err.Error(), "locked") {
			t.Errorf("5th failure (on A after 2 on A and 2 on B) = %v; want locked", err)
		}
		users, err := b.admin().Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range users {
			if u.Name == "bob" && u.Status != "locked" {
				t.Errorf("B sees bob unlocked: %+v", u)
			}
		}
	})

	// Refusals: stop the replicas so that nothing else writes, then check
	// that a refused start leaves etcd's revision alone.
	for i, r := range rs {
		if code := r.stop(t); code != 0 {
			t.Errorf("replica %d exited %d", i, code)
		}
		noErrorLogs(t, "replica", r.stderr.String())
	}
	before, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	other := newKeyFile(t)
	loose := filepath.Join(t.TempDir(), "loose.key")
	if err := os.WriteFile(loose, readFile(t, keyFile), 0o640); err != nil {
		t.Fatal(err)
	}
	etcdArgs := []string{"--storage", "etcd", "--etcd-endpoints", srv.Endpoint, "--etcd-prefix", prefix}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"wrong key file", []string{"--key-file", other}, "--key-file " + other + ": ca: this key file does not decrypt the CA keys in the store"},
		{"missing key file", []string{"--key-file", filepath.Join(t.TempDir(), "none")}, "no such file"},
		{"group-readable key file", []string{"--key-file", loose}, "chmod 600 " + loose},
		{"no key file", nil, "--storage etcd needs --key-file"},
	} {
		dataDir := filepath.Join(t.TempDir(), "data")
		r := runCA(t, append(append([]string{"--data-dir", dataDir}, etcdArgs...), tt.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%s: exit %d; want refused with %q; stderr:\n%s", tt.name, r.code, tt.want, r.stderr)
		}
		ents, _ := os.ReadDir(dataDir)
		for _, e := range ents {
			t.Errorf("%s: refused start left %s in the data dir", tt.name, e.Name())
		}
	}
	after, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if after.Header.Revision != before.Header.Revision {
		t.Errorf("refused starts wrote to etcd: revision %d → %d", before.Header.Revision, after.Header.Revision)
	}
}

func policyLogins(p api.NodePolicy, user string) []string {
	for _, u := range p.Users {
		if u.Name == user {
			return u.Logins
		}
	}
	return nil
}
