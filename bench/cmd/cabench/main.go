// Command cabench measures certificate issuance on this machine in one run
// and prints a side-by-side table: raw ed25519 signing, the in-process
// issuance pipeline with durable records, the HTTPS API (closed loop, and
// open loop at a fixed rate for latency), stock ssh-keygen -s, and
// sign-in latency. It makes a throw-away authority in a temporary data dir
// and removes it at exit. With -storage bolt,etcd it runs once per store
// (for etcd, on a throw-away etcd server it starts) and prints the rows
// that depend on the store side by side. `make bench` runs it so;
// docs/BENCHMARKS.md explains the rows and records results. See package
// bench.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opensshca/suite/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what the flags say.
type config struct {
	opts bench.Options
	// storages are the stores to measure, in order; with more than one,
	// the later runs measure only bench.StoragePhases.
	storages   []string
	cpuProfile string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "cabench:", err)
		return 2
	}
	reps, err := measure(ctx, cfg)
	var werr error
	switch {
	case len(cfg.storages) > 1 && len(reps) > 0:
		werr = bench.WriteComparison(stdout, reps)
	case len(reps) == 1:
		werr = reps[0].Write(stdout)
	}
	if err == nil {
		err = werr
	}
	if err != nil {
		fmt.Fprintln(stderr, "cabench:", err)
		return 1
	}
	return 0
}

// measure runs the benchmark once per store, under the CPU profiler if
// asked, and returns the reports measured so far.
func measure(ctx context.Context, cfg config) ([]*bench.Report, error) {
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	var reps []*bench.Report
	for i, st := range cfg.storages {
		opts := cfg.opts
		opts.Storage = st
		if i > 0 {
			opts.Phases = storagePhases(opts.Phases)
		}
		if len(cfg.storages) > 1 {
			fmt.Fprintf(opts.Progress, "cabench: store %s, phases %s\n", bench.StorageName(st), strings.Join(opts.Phases, ","))
		}
		rep, err := bench.Run(ctx, opts)
		if rep != nil {
			if raw, ok := reps0Raw(reps); ok {
				rep.RelativeTo(raw)
			}
			reps = append(reps, rep)
		}
		if err != nil {
			return reps, fmt.Errorf("store %s: %w", bench.StorageName(st), err)
		}
	}
	return reps, nil
}

// reps0Raw returns the raw parallel signing row of the first report.
func reps0Raw(reps []*bench.Report) (bench.Row, bool) {
	if len(reps) == 0 {
		return bench.Row{}, false
	}
	return reps[0].Row("1b")
}

// storagePhases keeps those of phases whose figures depend on the store.
func storagePhases(phases []string) []string {
	var out []string
	for _, p := range phases {
		if slices.Contains(bench.StoragePhases, p) {
			out = append(out, p)
		}
	}
	return out
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("cabench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: cabench [flags]

Measures OpenSSH user certificate issuance in one run: raw signing,
in-process issuance with durable records, the HTTPS API (throughput and
latency at a fixed offered load), ssh-keygen -s and sign-in latency.
Prints a Markdown table. The default run takes about 50 s; -short about
10 s. -storage bolt,etcd measures on both stores (etcd: a throw-away
server from /usr/bin/etcd) and prints them side by side, about 90 s.

`)
		fs.PrintDefaults()
	}
	var (
		short   = fs.Bool("short", false, "quick smoke run: short phases (flags given explicitly still win)")
		dur     = fs.Duration("duration", 5*time.Second, "length of each closed-loop phase (rows 1-3), after its warm-up")
		warmup  = fs.Duration("warmup", 0, "warm-up before each closed-loop phase, not counted (default duration/5, at most 500ms)")
		clients = fs.String("clients", "32,64", "comma-separated numbers of concurrent HTTPS clients, one row each; row 4 uses the largest")
		callers = fs.Int("callers", 64, "concurrent IssueUserCert callers (row 2)")
		rate    = fs.Int("rate", 1000, "offered load of row 4, requests per second")
		latDur  = fs.Duration("latency", 8*time.Second, "how long row 4 offers its load")
		kgDur   = fs.Duration("keygen", 2500*time.Millisecond, "length of each ssh-keygen row (row 5)")
		phases  = fs.String("phases", strings.Join(bench.AllPhases, ","), "comma-separated phases to run")
		dir     = fs.String("dir", "", "parent of the temporary data dir (default $TMPDIR or /tmp); its file system sets the fsync cost")
		storage = fs.String("storage", bench.StorageBolt, "comma-separated stores to measure, "+strings.Join(bench.AllStorage, " or ")+"; with two, the rows that depend on the store are printed side by side")
		siRate  = fs.Int("signin-rate", 50, "offered sign-ins per second of row 6")
		siDur   = fs.Duration("signin", 4*time.Second, "how long row 6 offers its sign-ins")
		siConns = fs.Int("signin-clients", 8, "keep-alive connections of row 6")
	)
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (use with -phases)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *short {
		shortDefault(set, "duration", dur, 600*time.Millisecond)
		shortDefault(set, "latency", latDur, 1500*time.Millisecond)
		shortDefault(set, "keygen", kgDur, 500*time.Millisecond)
		shortDefault(set, "signin", siDur, time.Second)
	}
	ns, err := parseInts(*clients)
	if err != nil {
		return cfg, fmt.Errorf("-clients: %w", err)
	}
	cfg.opts = bench.Options{
		Dir: *dir, Duration: *dur, Warmup: *warmup, Callers: *callers, Clients: ns,
		Rate: *rate, LatencyDuration: *latDur, KeygenDuration: *kgDur,
		SignInRate: *siRate, SignInDuration: *siDur, SignInClients: *siConns,
		Phases: strings.Split(*phases, ","), Progress: stderr,
	}
	if *dur <= 0 || *latDur <= 0 || *kgDur <= 0 || *siDur <= 0 || *callers <= 0 || *rate <= 0 || *siRate <= 0 || *siConns <= 0 {
		return cfg, errors.New("durations, -callers, -rate, -signin-rate and -signin-clients must be positive")
	}
	if cfg.storages, err = parseStorages(*storage); err != nil {
		return cfg, fmt.Errorf("-storage: %w", err)
	}
	return cfg, nil
}

// parseStorages reads -storage: one or more distinct stores.
func parseStorages(s string) ([]string, error) {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "bbolt" {
			f = bench.StorageBolt
		}
		switch {
		case !slices.Contains(bench.AllStorage, f):
			return nil, fmt.Errorf("%q is not one of %s", f, strings.Join(bench.AllStorage, ", "))
		case slices.Contains(out, f):
			return nil, fmt.Errorf("%q given twice", f)
		}
		out = append(out, f)
	}
	return out, nil
}

// shortDefault sets *v to d unless the flag was given.
func shortDefault(set map[string]bool, name string, v *time.Duration, d time.Duration) {
	if !set[name] {
		*v = d
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
