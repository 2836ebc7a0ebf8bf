package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/store"
	"github.com/opensshca/suite/ca/store/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Keys live under the prefix, are returned without it, and nothing outside
// it is seen.
func TestEtcdPrefix(t *testing.T) {
	srv := storetest.SharedEtcd(t)
	ctx := t.Context()
	cli := srv.Client(t)
	pa, pb := storetest.Prefix(t), storetest.Prefix(t)
	a := openEtcd(t, etcdOptions(srv, pa))
	b := openEtcd(t, etcdOptions(srv, pb))
	// The whole keyspace, as a store with an empty prefix sees it.
	all := openEtcd(t, etcdOptions(srv, ""))

	aw, err := a.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	rev := storetest.MustPut(t, a, "users/alice", "A")
	storetest.MustPut(t, b, "users/alice", "B")
	if _, err := cli.Put(ctx, strings.TrimSuffix(pa, "/"), "outside"); err != nil {
		t.Fatal(err)
	}
	last := storetest.MustPut(t, a, "users/bob", "b")

	raw, err := cli.Get(ctx, pa+"users/alice")
	if err != nil || len(raw.Kvs) != 1 || string(raw.Kvs[0].Value) != "A" || raw.Kvs[0].ModRevision != rev {
		t.Errorf("etcd key %s = %v, %v; want A at %d", pa+"users/alice", raw.Kvs, err, rev)
	}
	items, _, err := a.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, it := range items {
		keys = append(keys, it.Key+"="+string(it.Value))
	}
	if want := []string{"users/alice=A", "users/bob=b"}; !slices.Equal(keys, want) {
		t.Errorf("List under %s = %q, want %q", pa, keys, want)
	}
	if it, err := b.Get(ctx, "users/alice"); err != nil || string(it.Value) != "B" {
		t.Errorf("Get under %s = %q, %v; want B", pb, it.Value, err)
	}
	if _, err := b.Get(ctx, "users/bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of the other prefix's key: %v, want ErrNotFound", err)
	}
	if it, err := all.Get(ctx, pa+"users/bob"); err != nil || it.Revision != last {
		t.Errorf("Get of the full key without a prefix = %+v, %v", it, err)
	}
	storetest.ExpectEvents(t, aw, []store.Event{
		{Type: store.EventPut, Item: store.Item{Key: "users/alice", Value: []byte("A"), Revision: rev}},
		{Type: store.EventPut, Item: store.Item{Key: "users/bob", Value: []byte("b"), Revision: last}},
	})
}

// List reads long listings in pages, all at one revision.
func TestEtcdListPages(t *testing.T) {
	srv := storetest.SharedEtcd(t)
	s := openEtcd(t, etcdOptions(srv, storetest.Prefix(t)))
	ctx := t.Context()
	const n = 2500
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			for i := w; i < n; i += 10 {
				if _, err := s.Put(ctx, fmt.Sprintf("k/%05d", i), []byte("v")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()

	// Writes while List pages through the keys are not in its snapshot.
	stop := make(chan struct{})
	var during []int64
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			rev, err := s.Put(ctx, fmt.Sprintf("k/x%05d", i), []byte("v"))
			if err != nil {
				t.Error(err)
				return
			}
			during = append(during, rev)
		}
	})
	items, rev, err := s.List(ctx, "k/")
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	var before int
	for _, r := range during {
		if r <= rev {
			before++
		}
	}
	if len(items) != n+before {
		t.Fatalf("List at %d = %d items, want %d and the %d written before it", rev, len(items), n, before)
	}
	for i, it := range items[:n] {
		if want := fmt.Sprintf("k/%05d", i); it.Key != want {
			t.Fatalf("item %d is %q, want %q", i, it.Key, want)
		}
	}
	for _, it := range items {
		if it.Revision > rev {
			t.Errorf("item %q at %d in a listing at %d", it.Key, it.Revision, rev)
		}
	}
	t.Logf("%d writes during List, %d before its revision", len(during), before)
}

// A write too large for etcd fails alone, says so, and changes nothing.
func TestEtcdValueTooLarge(t *testing.T) {
	srv := storetest.SharedEtcd(t)
	s := openEtcd(t, etcdOptions(srv, storetest.Prefix(t)))
	before := storetest.Rev(t, s)
	// Over the server's 1.5 MiB request limit; over the client's 2 MiB
	// message limit.
	for _, size := range []int{1600 << 10, 3 << 20} {
		_, err := s.Put(t.Context(), "big", make([]byte, size))
		if err == nil || !strings.Contains(err.Error(), "too large") || !strings.Contains(err.Error(), `"big"`) {
			t.Errorf("Put of %d bytes: %v, want a too-large error naming the key", size, err)
		}
	}
	if rev := storetest.Rev(t, s); rev != before {
		t.Errorf("store revision %d after refused writes, want %d", rev, before)
	}
	storetest.MustPut(t, s, "small", "v")
}

// A watch whose connection breaks resumes after the last event it
// delivered: the events written meanwhile arrive once each, in order. If
// etcd compacted them meanwhile, the channel closes instead.
func TestEtcdWatchDisconnect(t *testing.T) {
	srv := storetest.SharedEtcd(t)
	ctx := t.Context()
	prefix := storetest.Prefix(t)
	p := startProxy(t, srv.Endpoint)
	opts := etcdOptions(srv, prefix)
	opts.Endpoints = []string{"http://" + p.addr()}
	watched := openEtcd(t, opts)
	direct := openEtcd(t, etcdOptions(srv, prefix))
	ch, err := watched.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	put := func(k, v string) store.Event {
		rev := storetest.MustPut(t, direct, k, v)
		return store.Event{Type: store.EventPut, Item: store.Item{Key: k, Value: []byte(v), Revision: rev}}
	}
	storetest.ExpectEvents(t, ch, []store.Event{put("k", "1")})

	p.cut()
	want := []store.Event{put("k", "2"), put("j", "3")}
	if err := direct.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	want = append(want, store.Event{Type: store.EventDelete, Item: store.Item{Key: "k", Revision: storetest.Rev(t, direct)}})
	storetest.ExpectQuiet(t, ch, 200*time.Millisecond)
	p.restore()
	storetest.ExpectEvents(t, ch, append(want, put("k", "4")))
	storetest.ExpectQuiet(t, ch, 200*time.Millisecond)

	// Compacted while cut off: the next event due is gone, so the channel
	// closes rather than skip it.
	p.cut()
	put("k", "5")
	last := put("k", "6").Item.Revision
	if _, err := srv.Client(t).Compact(ctx, last, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	p.restore()
	storetest.ExpectClosed(t, ch, 0)
	if _, err := watched.Watch(ctx, "", last-1); !errors.Is(err, store.ErrCompacted) {
		t.Errorf("Watch from %d after compaction at %d: %v, want ErrCompacted", last-1, last, err)
	}
	// Re-List and watch from there: nothing is missed.
	_, rev, err := watched.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	ch, err = watched.Watch(ctx, "", rev+1)
	if err != nil {
		t.Fatal(err)
	}
	storetest.ExpectEvents(t, ch, []store.Event{put("k", "7")})
}

// A write is not abandoned when its caller's context ends: like bbolt, its
// outcome is the only truth.
func TestEtcdWriteOutlivesCaller(t *testing.T) {
	srv := storetest.SharedEtcd(t)
	prefix := storetest.Prefix(t)
	p := startProxy(t, srv.Endpoint)
	opts := etcdOptions(srv, prefix)
	opts.Endpoints = []string{"http://" + p.addr()}
	s := openEtcd(t, opts)
	direct := openEtcd(t, etcdOptions(srv, prefix))

	p.cut()
	// Once the client has seen the connection go, a write waits for a
	// new one rather than fail on the dead one.
	gctx, gcancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	if _, err := s.Get(gctx, "k"); err == nil {
		t.Fatal("Get through a cut proxy succeeded")
	}
	gcancel()
	ctx, cancel := context.WithCancel(t.Context())
	type result struct {
		rev int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		rev, err := s.Put(ctx, "k", []byte("v"))
		done <- result{rev, err}
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case r := <-done:
		t.Fatalf("Put returned %d, %v when its context was canceled, before etcd answered", r.rev, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	p.restore()
	r := <-done
	if r.err != nil {
		t.Fatalf("Put: %v", r.err)
	}
	if it, err := direct.Get(t.Context(), "k"); err != nil || it.Revision != r.rev {
		t.Errorf("Get = %+v, %v; want the value put at %d", it, err, r.rev)
	}
}

// The etcd server is killed and restarted on its data dir while a writer
// writes and a watcher watches: every acknowledged write is delivered
// once, in revision order, and survives.
func TestEtcdRestartMidWatch(t *testing.T) {
	t.Parallel()
	srv := storetest.StartEtcd(t, storetest.EtcdConfig{})
	ctx := t.Context()
	s := openEtcd(t, etcdOptions(srv, "/ca/"))
	ch, err := s.Watch(ctx, "w/", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []store.Event
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for ev := range ch {
			got = append(got, ev)
			if ev.Item.Key == "w/end" {
				return
			}
		}
	}()

	var acked []string
	attempted := map[string]bool{}
	restarted := false
	for i := 0; len(acked) < 60; i++ {
		if i > 1000 {
			t.Fatalf("only %d of 1000 writes acknowledged", len(acked))
		}
		if len(acked) == 20 && !restarted {
			srv.Restart(t)
			restarted = true
		}
		key := fmt.Sprintf("w/%04d", i)
		attempted[key] = true
		if _, err := s.Put(ctx, key, []byte(key)); err != nil {
			t.Logf("Put(%s) during the restart: %v", key, err) // may or may not have applied
			continue
		}
		acked = append(acked, key)
	}
	end := storetest.MustPut(t, s, "w/end", "")
	select {
	case <-watched:
	case <-time.After(20 * time.Second):
		t.Fatalf("watcher did not see w/end; it saw %d events, the last %+v", len(got), got[len(got)-1:])
	}

	var prev int64
	seen := map[string]bool{}
	for _, ev := range got {
		k := ev.Item.Key
		switch {
		case ev.Item.Revision <= prev:
			t.Errorf("event %q at %d after one at %d: out of order or repeated", k, ev.Item.Revision, prev)
		case seen[k]:
			t.Errorf("key %q delivered twice", k)
		case !attempted[k] && k != "w/end":
			t.Errorf("event for %q, which was never written", k)
		case ev.Type != store.EventPut || (k != "w/end" && string(ev.Item.Value) != k):
			t.Errorf("event %+v", ev)
		}
		prev, seen[k] = ev.Item.Revision, true
	}
	for _, k := range acked {
		if !seen[k] {
			t.Errorf("acknowledged write %q never delivered", k)
		}
	}
	if prev != end {
		t.Errorf("last event at %d, w/end written at %d", prev, end)
	}
	items, _, err := s.List(ctx, "w/")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != len(got) {
		t.Errorf("%d keys after the restart, %d delivered", len(items), len(got))
	}
}

// TLS with client certificates: the right certificates connect; a missing
// client certificate, an unknown server CA or plain TCP give an error that
// names the endpoint and the settings to check, within the dial timeout.
func TestEtcdTLS(t *testing.T) {
	t.Parallel()
	pki := storetest.NewPKI(t)
	srv := storetest.StartEtcd(t, storetest.EtcdConfig{PKI: pki})
	other := storetest.NewPKI(t)

	s := openEtcd(t, etcdOptions(srv, "/ca/"))
	ch, err := s.Watch(t.Context(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	rev := storetest.MustPut(t, s, "k", "v")
	storetest.ExpectEvents(t, ch, []store.Event{{Type: store.EventPut, Item: store.Item{Key: "k", Value: []byte("v"), Revision: rev}}})

	// The endpoint without a scheme takes TLS from the options.
	bare := etcdOptions(srv, "/ca/")
	bare.Endpoints = []string{strings.TrimPrefix(srv.Endpoint, "https://")}
	if it, err := openEtcd(t, bare).Get(t.Context(), "k"); err != nil || it.Revision != rev {
		t.Errorf("Get through %s: %+v, %v", bare.Endpoints[0], it, err)
	}

	const dial = time.Second
	tests := []struct {
		name   string
		change func(*store.EtcdOptions)
	}{
		{"no client certificate", func(o *store.EtcdOptions) { o.CertFile, o.KeyFile = "", "" }},
		{"client certificate of another CA", func(o *store.EtcdOptions) { o.CertFile, o.KeyFile = other.ClientCert, other.ClientKey }},
		{"server of an unknown CA", func(o *store.EtcdOptions) { o.CAFile = other.CAFile }},
		{"system roots", func(o *store.EtcdOptions) { o.CAFile = "" }},
		{"plain TCP", func(o *store.EtcdOptions) {
			o.Endpoints = []string{"http://" + strings.TrimPrefix(srv.Endpoint, "https://")}
			o.CAFile, o.CertFile, o.KeyFile = "", "", ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := etcdOptions(srv, "/ca/")
			opts.DialTimeout = dial
			tt.change(&opts)
			expectOpenError(t, opts, dial, opts.Endpoints[0], "did not answer within 1s", "TLS settings")
		})
	}
}

// expectOpenError checks that OpenEtcd fails within the dial timeout (and
// a margin for a loaded machine) with an error containing want.
func expectOpenError(t *testing.T, opts store.EtcdOptions, dial time.Duration, want ...string) {
	t.Helper()
	start := time.Now()
	s, err := store.OpenEtcd(t.Context(), opts)
	took := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("OpenEtcd succeeded")
	}
	t.Logf("OpenEtcd after %v: %v", took.Round(time.Millisecond), err)
	if took > dial+3*time.Second {
		t.Errorf("OpenEtcd took %v with a dial timeout of %v", took, dial)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

// With auth enabled, the right user and password work; a wrong password,
// no user or a user without permission on the prefix are refused at open
// with an error that says which.
func TestEtcdAuth(t *testing.T) {
	t.Parallel()
	srv := storetest.StartEtcd(t, storetest.EtcdConfig{})
	enableAuth(t, srv.Client(t), "ca", "s3cret", "/ca/")

	opts := etcdOptions(srv, "/ca/")
	opts.Username, opts.Password = "ca", "s3cret"
	s := openEtcd(t, opts)
	ch, err := s.Watch(t.Context(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	rev := storetest.MustPut(t, s, "k", "v")
	if _, err := s.CompareAndSwap(t.Context(), "k", rev, []byte("w")); err != nil {
		t.Fatal(err)
	}
	storetest.ExpectEvents(t, ch, []store.Event{
		{Type: store.EventPut, Item: store.Item{Key: "k", Value: []byte("v"), Revision: rev}},
		{Type: store.EventPut, Item: store.Item{Key: "k", Value: []byte("w"), Revision: rev + 1}},
	})

	tests := []struct {
		name           string
		user, password string
		prefix         string
		want           []string
	}{
		{"wrong password", "ca", "guess", "/ca/", []string{`refused user "ca"`, "wrong user name or password"}},
		{"unknown user", "mallory", "s3cret", "/ca/", []string{`refused user "mallory"`, "wrong user name or password"}},
		{"no user", "", "", "/ca/", []string{"authentication enabled", "user name and password"}},
		{"prefix without permission", "ca", "s3cret", "/other/", []string{`user "ca" may not read the keys under "/other/"`, "readwrite"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := etcdOptions(srv, tt.prefix)
			opts.Username, opts.Password = tt.user, tt.password
			opts.DialTimeout = 5 * time.Second
			expectOpenError(t, opts, opts.DialTimeout, append(tt.want, srv.Endpoint)...)
		})
	}
}

// enableAuth creates user with read-write permission on prefix, and root,
// and enables authentication.
func enableAuth(t *testing.T, cli *clientv3.Client, user, password, prefix string) {
	t.Helper()
	ctx := t.Context()
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "root-password"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "ca"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "ca", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, user, password); return err },
		func() error { _, err := cli.UserGrantRole(ctx, user, "ca"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("enabling auth, step %d: %v", i, err)
		}
	}
}

// An endpoint nobody listens on, or one that accepts connections and never
// answers, fails OpenEtcd within the dial timeout with an error naming
// every endpoint.
func TestEtcdUnreachable(t *testing.T) {
	t.Parallel()
	closed := freeAddr(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	const dial = 500 * time.Millisecond
	for _, tt := range []struct {
		name      string
		endpoints []string
	}{
		{"refused", []string{"http://" + closed}},
		{"silent", []string{silent.Addr().String()}},
		{"both", []string{"http://" + closed, "http://" + silent.Addr().String()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := store.EtcdOptions{Endpoints: tt.endpoints, Prefix: "/ca/", DialTimeout: dial}
			expectOpenError(t, opts, dial, append(tt.endpoints, "did not answer within 500ms", "check that etcd runs there")...)
		})
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Options are checked before anything is dialled.
func TestEtcdOptions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	ep := []string{"https://127.0.0.1:1"}
	tests := []struct {
		name string
		opts store.EtcdOptions
		want string
	}{
		{"no endpoints", store.EtcdOptions{}, "no endpoints"},
		{"empty endpoint", store.EtcdOptions{Endpoints: []string{""}}, "not a client URL"},
		{"other scheme", store.EtcdOptions{Endpoints: []string{"ftp://etcd:2379"}}, `"ftp://etcd:2379" is not a client URL`},
		{"path without scheme", store.EtcdOptions{Endpoints: []string{"etcd:2379/x"}}, "not a client URL"},
		{"prefix without slash", store.EtcdOptions{Endpoints: ep, Prefix: "/ca"}, `prefix "/ca" must end in "/"`},
		{"user without password", store.EtcdOptions{Endpoints: ep, Username: "ca"}, "needs a password"},
		{"password without user", store.EtcdOptions{Endpoints: ep, Password: "pw"}, "needs a password"},
		{"certificate without key", store.EtcdOptions{Endpoints: ep, CertFile: "c.crt"}, "needs its key"},
		{"key without certificate", store.EtcdOptions{Endpoints: ep, KeyFile: "c.key"}, "needs its key"},
		{"missing CA file", store.EtcdOptions{Endpoints: ep, CAFile: filepath.Join(dir, "missing.crt")}, "missing.crt"},
		{"CA file not PEM", store.EtcdOptions{Endpoints: ep, CAFile: notPEM}, "holds no PEM certificate"},
		{"missing client certificate", store.EtcdOptions{Endpoints: ep, CertFile: filepath.Join(dir, "c.crt"), KeyFile: filepath.Join(dir, "c.key")}, "c.crt"},
		{"http with TLS", store.EtcdOptions{Endpoints: []string{"https://a:2379", "http://b:2379"}}, "http://b:2379 is plain http://"},
		{"http with CA file", store.EtcdOptions{Endpoints: []string{"http://b:2379"}, CAFile: notPEM}, "plain http://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			s, err := store.OpenEtcd(t.Context(), tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("OpenEtcd succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v: options must be checked before dialling", d)
			}
		})
	}
}

// A proxy is a TCP forwarder to an etcd that a test can cut off (every
// connection closed, new ones refused) and restore.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func startProxy(t *testing.T, endpoint string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: strings.TrimPrefix(endpoint, "http://"), conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	go p.serve()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = true
		p.mu.Unlock()
		go p.forward(c)
	}
}

func (p *proxy) forward(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down || !p.conns[c] {
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[u] = true
	p.mu.Unlock()
	go func() {
		io.Copy(u, c)
		u.Close()
	}()
	io.Copy(c, u)
	c.Close()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}
