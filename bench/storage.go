package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opensshca/suite/ca"
	"github.com/opensshca/suite/ca/store"
	"github.com/opensshca/suite/ca/store/storetest"
)

// Storage backends, for Options.Storage.
const (
	StorageBolt = "bolt"
	StorageEtcd = "etcd"
)

// AllStorage lists the backends the bench can measure.
var AllStorage = []string{StorageBolt, StorageEtcd}

// etcdPrefix is the key prefix the bench's authority uses in its etcd.
const etcdPrefix = "/cabench/"

// backend is the authority's store and what the bench reads beside it:
// group-commit counters and, for etcd, the server process's CPU time.
type backend struct {
	db   store.Store
	bolt *store.Bolt     // set for bbolt
	etcd *storetest.Etcd // set for etcd: the throw-away server
	// desc says what the store is, for the report.
	desc string
}

// openBackend opens the store opts.Storage names: bbolt at
// dataDir/state.db with the authority's options, or a new single-member
// etcd server with its data under tmp, through store.OpenEtcd with a key
// prefix. The CA keys stay files in dataDir either way.
func openBackend(ctx context.Context, opts Options, tmp, dataDir string) (*backend, error) {
	switch opts.Storage {
	case StorageEtcd:
		srv, err := storetest.Launch(tmp, storetest.EtcdConfig{})
		if err != nil {
			return nil, fmt.Errorf("bench: starting etcd: %w", err)
		}
		db, err := store.OpenEtcd(ctx, store.EtcdOptions{Endpoints: []string{srv.Endpoint}, Prefix: etcdPrefix})
		if err != nil {
			srv.Close()
			return nil, fmt.Errorf("bench: %w", err)
		}
		v, _ := storetest.Version()
		desc := fmt.Sprintf("etcd (%s, one member on loopback, plain TCP, WAL fsync'd per raft batch; prefix %s; client go.etcd.io/etcd/client/v3 %s)",
			strings.TrimPrefix(v, "etcd Version: "), etcdPrefix, moduleVersion("go.etcd.io/etcd/client/v3"))
		return &backend{db: db, etcd: srv, desc: desc}, nil
	default:
		db, err := store.OpenBolt(filepath.Join(dataDir, "state.db"), ca.StoreOptions())
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		desc := fmt.Sprintf("bbolt %s (state.db in the data dir, fsync'd, concurrent writes share one commit, linger %v)",
			moduleVersion("go.etcd.io/bbolt"), ca.StoreOptions().Linger)
		return &backend{db: db, bolt: db, desc: desc}, nil
	}
}

func (b *backend) close() {
	_ = b.db.Close()
	if b.etcd != nil {
		b.etcd.Close()
	}
}

// commitCount is the store's write operations and the fsync'd commits
// that carried them so far; ok is false when they could not be read.
type commitCount struct {
	ops, commits int64
	ok           bool
}

// snapshot reads the commit counters: bbolt's writer counters, or for
// etcd the raft proposals committed and the WAL fsyncs from its /metrics.
func (b *backend) snapshot() commitCount {
	switch {
	case b.bolt != nil:
		s := b.bolt.Stats()
		return commitCount{s.Ops, s.Commits, true}
	case b.etcd != nil:
		m, err := scrapeMetrics(b.etcd.Endpoint+"/metrics",
			"etcd_server_proposals_committed_total", "etcd_disk_wal_fsync_duration_seconds_count")
		if err != nil {
			return commitCount{}
		}
		return commitCount{int64(m[0]), int64(m[1]), true}
	}
	return commitCount{}
}

// serverCPU is the CPU time (user + system) of the store's server
// process, zero for bbolt, which runs inside this one.
func (b *backend) serverCPU() time.Duration {
	if b.etcd == nil {
		return 0
	}
	return procCPU(b.etcd.Pid())
}

// procCPU returns the user + system CPU time of process pid from
// /proc/PID/stat, or zero.
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields count from the
	// closing parenthesis: utime and stime are fields 14 and 15.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0
		}
		ticks += n
	}
	const userHZ = 100 // sysconf(_SC_CLK_TCK) on Linux
	return time.Duration(ticks) * time.Second / userHZ
}

// scrapeMetrics reads the Prometheus text at url and returns the values of
// the unlabelled samples names, in order.
func scrapeMetrics(url string, names ...string) ([]float64, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	want := make(map[string]int, len(names))
	for i, n := range names {
		want[n] = i
	}
	vals, found := make([]float64, len(names)), 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		i, wanted := want[name]
		if !ok || !wanted {
			continue
		}
		if vals[i], err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", url, name, err)
		}
		found++
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if found < len(names) {
		return nil, fmt.Errorf("%s: missing some of %v", url, names)
	}
	return vals, nil
}
