package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/bench"
	"github.com/opensshca/suite/ca/store/storetest"
)

// TestShortRun runs every phase for a few hundred milliseconds and checks
// that each row measured something without errors, so that the benchmark
// keeps working as the packages it drives change.
func TestShortRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the benchmark for about 3 s")
	}
	var stderr bytes.Buffer
	cfg, err := parseFlags([]string{
		"-short", "-duration", "150ms", "-warmup", "50ms", "-latency", "400ms", "-keygen", "150ms",
		"-clients", "4,8", "-callers", "8", "-rate", "500", "-dir", t.TempDir(),
	}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reps, err := measure(ctx, cfg)
	if err != nil {
		t.Fatalf("measure: %v\n%s", err, stderr.String())
	}
	if len(reps) != 1 {
		t.Fatalf("%d reports, want 1", len(reps))
	}
	rep := reps[0]
	want := []string{"1a", "1b", "2", "3a", "3b", "3z", "4", "5a", "5b", "6"}
	if len(rep.Rows) != len(want) {
		t.Fatalf("got %d rows, want %d: %+v", len(rep.Rows), len(want), rep.Rows)
	}
	for i, r := range rep.Rows {
		if r.ID != want[i] {
			t.Errorf("row %d is %q, want %q", i, r.ID, want[i])
		}
		if r.Skipped != "" {
			if strings.HasPrefix(r.ID, "5") && strings.Contains(r.Skipped, "not found") {
				t.Logf("row %s: %s", r.ID, r.Skipped)
				continue
			}
			t.Errorf("row %s skipped: %s", r.ID, r.Skipped)
			continue
		}
		if r.Errors != 0 {
			t.Errorf("row %s: %d errors, first: %s", r.ID, r.Errors, r.FirstError)
		}
		if r.Certs == 0 || r.Rate() <= 0 {
			t.Errorf("row %s (%s): rate %.1f from %d certs, want > 0", r.ID, r.Name, r.Rate(), r.Certs)
		}
		// Durable rows write through the store; the others do not.
		if durable := r.ID == "2" || r.ID == "4" || r.ID == "6" || strings.HasPrefix(r.ID, "3") && r.ID != "3z"; durable != (r.OpsPerCommit >= 1) {
			t.Errorf("row %s: ops per commit %.1f", r.ID, r.OpsPerCommit)
		}
	}
	if _, _, ok := rep.Aim(); !ok {
		t.Error("no API row to compare with the raw rate")
	}
	var out bytes.Buffer
	if err := rep.Write(&out); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"machine: GOMAXPROCS=", "store:   bbolt", "| 1a ", "| 4 ", "| 6 ", "aim \"API >= 25% of raw signing rate\""} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
}

// TestShortRunStorage measures the rows that depend on the store on bbolt
// and on a throw-away etcd, and prints them side by side.
func TestShortRunStorage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and runs the benchmark twice for about 5 s")
	}
	storetest.RequireEtcd(t)
	var stderr bytes.Buffer
	cfg, err := parseFlags([]string{
		"-short", "-duration", "150ms", "-warmup", "50ms", "-latency", "300ms", "-signin", "300ms",
		"-clients", "4", "-callers", "8", "-rate", "200", "-signin-rate", "40", "-dir", t.TempDir(),
		"-phases", "raw,inproc,api,latency,signin", "-storage", "bolt,etcd",
	}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reps, err := measure(ctx, cfg)
	if err != nil {
		t.Fatalf("measure: %v\n%s", err, stderr.String())
	}
	if len(reps) != 2 || reps[1].Options.Storage != bench.StorageEtcd {
		t.Fatalf("got %d reports, want bolt then etcd", len(reps))
	}
	// The etcd run measures only the phases that depend on the store.
	want := []string{"2", "3a", "4", "6"}
	if len(reps[1].Rows) != len(want) {
		t.Fatalf("etcd rows: %+v, want %v", reps[1].Rows, want)
	}
	for i, r := range reps[1].Rows {
		if r.ID != want[i] || r.Errors != 0 || r.Certs == 0 || r.Skipped != "" {
			t.Errorf("etcd row %d: id %s, %d certs, %d errors (%s), skipped %q", i, r.ID, r.Certs, r.Errors, r.FirstError, r.Skipped)
		}
		if r.OpsPerCommit <= 0 {
			t.Errorf("etcd row %s: no proposals per fsync from etcd's metrics", r.ID)
		}
		if r.VsRaw <= 0 && r.Offered == 0 {
			t.Errorf("etcd row %s: no ratio to the bbolt run's raw rate", r.ID)
		}
	}
	var out bytes.Buffer
	if err := bench.WriteComparison(&out, reps); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"store etcd: etcd (", "| etcd / bbolt |", "#### etcd"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(t *testing.T, c config)
	}{
		{name: "defaults", check: func(t *testing.T, c config) {
			if c.opts.Duration != 5*time.Second || c.opts.Rate != 1000 || len(c.opts.Clients) != 2 {
				t.Errorf("opts = %+v", c.opts)
			}
		}},
		{name: "short", args: []string{"-short"}, check: func(t *testing.T, c config) {
			if c.opts.Duration >= time.Second || c.opts.LatencyDuration >= 2*time.Second {
				t.Errorf("short opts = %+v", c.opts)
			}
		}},
		{name: "short keeps explicit flags", args: []string{"-short", "-duration", "3s"}, check: func(t *testing.T, c config) {
			if c.opts.Duration != 3*time.Second {
				t.Errorf("duration = %v, want 3s", c.opts.Duration)
			}
		}},
		{name: "clients", args: []string{"-clients", "1, 8,64"}, check: func(t *testing.T, c config) {
			if got := c.opts.Clients; len(got) != 3 || got[0] != 1 || got[1] != 8 || got[2] != 64 {
				t.Errorf("clients = %v", got)
			}
		}},
		{name: "default storage", check: func(t *testing.T, c config) {
			if !slices.Equal(c.storages, []string{bench.StorageBolt}) {
				t.Errorf("storages = %v", c.storages)
			}
		}},
		{name: "both stores", args: []string{"-storage", "bolt, etcd"}, check: func(t *testing.T, c config) {
			if !slices.Equal(c.storages, []string{bench.StorageBolt, bench.StorageEtcd}) {
				t.Errorf("storages = %v", c.storages)
			}
		}},
		{name: "bbolt alias", args: []string{"-storage", "bbolt"}, check: func(t *testing.T, c config) {
			if !slices.Equal(c.storages, []string{bench.StorageBolt}) {
				t.Errorf("storages = %v", c.storages)
			}
		}},
		{name: "unknown storage", args: []string{"-storage", "bolt,redis"}, wantErr: true},
		{name: "storage twice", args: []string{"-storage", "etcd,etcd"}, wantErr: true},
		{name: "zero sign-in rate", args: []string{"-signin-rate", "0"}, wantErr: true},
		{name: "bad clients", args: []string{"-clients", "8,x"}, wantErr: true},
		{name: "zero clients", args: []string{"-clients", "0"}, wantErr: true},
		{name: "negative rate", args: []string{"-rate", "-1"}, wantErr: true},
		{name: "stray argument", args: []string{"now"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			c, err := parseFlags(tt.args, &stderr)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}
