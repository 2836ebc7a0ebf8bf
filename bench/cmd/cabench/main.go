// Command cabench measures certificate issuance on this machine in one run
// and prints a side-by-side table: raw ed25519 signing, the in-process
// issuance pipeline with durable records, the HTTPS API (closed loop, and
// open loop at a fixed rate for latency), and stock ssh-keygen -s. It
// makes a throw-away authority in a temporary data dir and removes it at
// exit. `make bench` runs it; docs/BENCHMARKS.md explains the rows and
// records a result. See package bench.
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
	opts       bench.Options
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
	rep, err := measure(ctx, cfg)
	if rep != nil {
		if werr := rep.Write(stdout); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "cabench:", err)
		return 1
	}
	return 0
}

// measure runs the benchmark, under the CPU profiler if asked.
func measure(ctx context.Context, cfg config) (*bench.Report, error) {
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
	return bench.Run(ctx, cfg.opts)
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("cabench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: cabench [flags]

Measures OpenSSH user certificate issuance in one run: raw signing,
in-process issuance with durable records, the HTTPS API (throughput and
latency at a fixed offered load) and ssh-keygen -s. Prints a Markdown
table. The default run takes about 45 s; -short about 10 s.

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
	}
	ns, err := parseInts(*clients)
	if err != nil {
		return cfg, fmt.Errorf("-clients: %w", err)
	}
	cfg.opts = bench.Options{
		Dir: *dir, Duration: *dur, Warmup: *warmup, Callers: *callers, Clients: ns,
		Rate: *rate, LatencyDuration: *latDur, KeygenDuration: *kgDur,
		Phases: strings.Split(*phases, ","), Progress: stderr,
	}
	if *dur <= 0 || *latDur <= 0 || *kgDur <= 0 || *callers <= 0 || *rate <= 0 {
		return cfg, errors.New("durations, -callers and -rate must be positive")
	}
	return cfg, nil
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
