package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
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
	rep, err := measure(ctx, cfg)
	if err != nil {
		t.Fatalf("measure: %v\n%s", err, stderr.String())
	}
	want := []string{"1a", "1b", "2", "3a", "3b", "3z", "4", "5a", "5b"}
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
		if durable := r.ID == "2" || r.ID == "4" || strings.HasPrefix(r.ID, "3") && r.ID != "3z"; durable != (r.OpsPerCommit >= 1) {
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
	for _, s := range []string{"machine: GOMAXPROCS=", "| 1a ", "| 4 ", "aim \"API >= 25% of raw signing rate\""} {
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
