package store_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/store"
	"github.com/opensshca/suite/ca/store/storetest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestMain(m *testing.M) {
	code := m.Run()
	storetest.StopSharedEtcd()
	os.Exit(code)
}

// The same assertions on the embedded default and on a real etcd.

func TestBoltConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, boltBackend())
}

// TestEtcdConformance runs on the etcd shared by this package's tests, so
// neither it nor any other test on that server runs in parallel: the
// suite counts the server's revisions.
func TestEtcdConformance(t *testing.T) {
	storetest.Run(t, etcdBackend(t, storetest.SharedEtcd(t)))
}

func boltBackend() storetest.Backend {
	open := func(t *testing.T, path string, buf int) store.Store {
		b, err := store.OpenBolt(path, store.BoltOptions{WatchBuffer: buf})
		if err != nil {
			t.Fatalf("OpenBolt: %v", err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	return storetest.Backend{
		Open: func(t *testing.T, buf int) store.Store {
			return open(t, filepath.Join(t.TempDir(), "store.db"), buf)
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			return open(t, store.BoltPath(s.(*store.Bolt)), 0)
		},
		Compact: func(t *testing.T, s store.Store, rev int64) {
			store.CompactBoltHistory(s.(*store.Bolt), rev)
		},
	}
}

// etcdBackend opens each store on srv under a prefix of its own.
func etcdBackend(t *testing.T, srv *storetest.Etcd) storetest.Backend {
	var prefixes sync.Map // store.Store → its prefix
	cli := srv.Client(t)
	return storetest.Backend{
		Open: func(t *testing.T, buf int) store.Store {
			opts := etcdOptions(srv, storetest.Prefix(t))
			opts.WatchBuffer = buf
			s := openEtcd(t, opts)
			prefixes.Store(s, opts.Prefix)
			return s
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			prefix, _ := prefixes.Load(s)
			return openEtcd(t, etcdOptions(srv, prefix.(string)))
		},
		Compact: func(t *testing.T, s store.Store, rev int64) {
			// etcd keeps the values at the compaction revision but not
			// the deletions made at it: compact just before rev.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if _, err := cli.Compact(ctx, rev-1, clientv3.WithCompactPhysical()); err != nil {
				t.Fatalf("Compact(%d): %v", rev-1, err)
			}
		},
	}
}

// etcdOptions are the options of a store on srv under prefix.
func etcdOptions(srv *storetest.Etcd, prefix string) store.EtcdOptions {
	opts := store.EtcdOptions{Endpoints: []string{srv.Endpoint}, Prefix: prefix, DialTimeout: 10 * time.Second, RequestTimeout: 10 * time.Second}
	if p := srv.PKI; p != nil {
		opts.CAFile, opts.CertFile, opts.KeyFile = p.CAFile, p.ClientCert, p.ClientKey
	}
	return opts
}

// openEtcd opens a store and closes it when the test ends.
func openEtcd(t *testing.T, opts store.EtcdOptions) *store.Etcd {
	t.Helper()
	s, err := store.OpenEtcd(t.Context(), opts)
	if err != nil {
		t.Fatalf("OpenEtcd: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
