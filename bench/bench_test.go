package bench

import (
	"strings"
	"testing"
	"time"
)

func TestOptionsCheck(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "defaults"},
		{name: "bolt", opts: Options{Storage: StorageBolt}},
		{name: "etcd", opts: Options{Storage: StorageEtcd}},
		{name: "unknown storage", opts: Options{Storage: "bbolt2"}, wantErr: "unknown storage"},
		{name: "unknown phase", opts: Options{Phases: []string{"raw", "nope"}}, wantErr: "unknown phase"},
		{name: "too many sign-ins", opts: Options{SignInRate: 10_000, SignInDuration: time.Minute}, wantErr: "sign-in row"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := tt.opts
			o.setDefaults()
			err := o.check()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("check: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("check: %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	var o Options
	o.setDefaults()
	if o.Storage != StorageBolt || o.SignInRate <= 0 || o.SignInDuration <= 0 || o.signIns() != o.SignInRate*int(o.SignInDuration/time.Second) {
		t.Errorf("defaults: storage %q, sign-in %d/s for %v (%d users)", o.Storage, o.SignInRate, o.SignInDuration, o.signIns())
	}
}

// fakeReport is a report of the store-dependent rows with made-up figures.
func fakeReport(storage string, rate float64, p50 time.Duration, batch float64) *Report {
	o := Options{Storage: storage}
	o.setDefaults()
	mk := func(id string, conc, offered int, r float64) Row {
		return Row{ID: id, Name: "row " + id, Concurrency: conc, Offered: offered,
			Certs: int(r * 5), Elapsed: 5 * time.Second, CPU: time.Duration(r*5) * 100 * time.Microsecond,
			Latency: Latency{P50: p50, P99: 4 * p50, Max: 8 * p50}, OpsPerCommit: batch}
	}
	return &Report{
		Started: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC), Options: o,
		Machine: Machine{GOMAXPROCS: 2, NumCPU: 2, LoadAvg: "0.10 0.20 0.30"},
		Storage: StorageName(storage) + " test store",
		Rows: []Row{
			{ID: "1b", Name: "raw", Concurrency: 2, Certs: 250000, Elapsed: 5 * time.Second},
			mk("2", 64, 0, rate), mk("3a", 32, 0, rate/2), mk("3b", 64, 0, rate/2),
			{ID: "3z", Name: "floor", Concurrency: 64, Certs: 1000, Elapsed: time.Second},
			mk("4", 64, 1000, 1000), mk("6", 8, 50, 50),
		},
	}
}

func TestWriteComparison(t *testing.T) {
	bolt := fakeReport(StorageBolt, 20000, 2*time.Millisecond, 40)
	etcd := fakeReport(StorageEtcd, 5000, 5*time.Millisecond, 10)
	etcd.Rows[2].Errors, etcd.Rows[2].FirstError = 3, "boom"
	etcd.Rows[3].Others = 0.2
	var b strings.Builder
	if err := WriteComparison(&b, []*Report{bolt, etcd}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| #  | what", " bbolt |", " etcd |", "| etcd / bbolt |",
		"in-process IssueUserCert, 64 callers",
		"HTTPS API POST /v1/certs/user, 32 clients",
		"HTTPS sign-in, open loop at 50/s",
		" 20,000 |", " 5,000 |", "0.25x", // row 2's rates and their ratio
		"2.00 ms", "5.00 ms", "2.50x", // open-loop p50s and their ratio
		"store bbolt: bbolt test store (load average at its start 0.10 0.20 0.30)",
		"etcd, row 3a: 3 errors; first: boom",
		"etcd: rows 3b (20%) ran while other processes",
		"#### bbolt", "#### etcd",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("comparison lacks %q:\n%s", want, out)
		}
	}
	// The floor and raw rows do not depend on the store.
	for _, l := range strings.Split(out[:strings.Index(out, "#### ")], "\n") {
		if strings.HasPrefix(l, "| 3z ") || strings.HasPrefix(l, "| 1b ") {
			t.Errorf("comparison shows a row that does not depend on the store: %s", l)
		}
	}
}

func TestScrapeMetricsMissing(t *testing.T) {
	if _, err := scrapeMetrics("http://127.0.0.1:1/metrics", "x"); err == nil {
		t.Fatal("scraping a closed port succeeded")
	}
}
