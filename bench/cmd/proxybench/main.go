// Command proxybench measures teleport-proxy against a stock OpenSSH jump
// host (setup time, scp throughput), the proxy's memory per idle tunnel,
// and a fleet of 2,000 simulated nodes across two proxies (memory per
// tunnel, reconnect time after a proxy is killed); see package
// bench/proxybench and docs/BENCHMARKS.md. It needs root (it runs sshd)
// and the OpenSSH client and server, except with -fleet-only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/opensshca/suite/bench/proxybench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "proxybench: %v\n", err)
		}
		return 2
	}
	if os.Geteuid() != 0 && !o.FleetOnly {
		fmt.Fprintln(stderr, "proxybench: needs root (it runs sshd)")
		return 1
	}
	bin, err := os.MkdirTemp("", "proxybench-bin-")
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer os.RemoveAll(bin)
	if o.Bins, err = proxybench.Build(bin, o.ProfileDir != ""); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if o.HoldMode != "" {
		o.Hold = func(sshConfig string, pids map[string]int) {
			fmt.Fprintf(stdout, "cluster up in mode %s; ssh -F %s HOST, HOST one of direct, stock, node1 (-J), single, jump, tproxy\n", o.HoldMode, sshConfig)
			for name, pid := range pids {
				fmt.Fprintf(stdout, "  %-15s pid %d\n", name, pid)
			}
			fmt.Fprintln(stdout, "Ctrl-C (or SIGTERM) ends it")
			<-ctx.Done()
		}
	}
	rep, err := proxybench.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if o.Hold != nil {
		return 0
	}
	if o.FleetOnly {
		fmt.Fprintf(stdout, "teleport-proxy: %d simulated nodes across two proxies\n", rep.Fleet.Nodes)
	} else {
		fmt.Fprintln(stdout, "teleport-proxy against the stock OpenSSH jump host, same node sshd")
	}
	fmt.Fprintln(stdout)
	rep.Write(stdout)
	if rep.Failed() {
		return 1
	}
	return 0
}

// parse reads the flags into Options; -short fills what no flag set.
func parse(args []string, stderr io.Writer) (proxybench.Options, error) {
	fs := flag.NewFlagSet("proxybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o proxybench.Options
	short := fs.Bool("short", false, "smoke run: 5 setups, one scp of a 64 MiB file, 100 tunnels, no wait for a quiet machine")
	fs.IntVar(&o.Setups, "setups", 0, "timed ssh runs per row (default 20; -short 5)")
	sizeMiB := fs.Int64("size", 0, "scp file size in MiB (default 1024; -short 64)")
	fs.IntVar(&o.SCPRuns, "scp-runs", 0, "scp runs per row, the best shown (default 2; -short 1)")
	fs.IntVar(&o.Tunnels, "tunnels", 0, "idle tunnels for row 6 (default 1000; -short 100)")
	fs.IntVar(&o.FleetNodes, "fleet", 0, "simulated nodes of row 7, each with a tunnel to both of two proxies (default 2000; -short 100; negative: no row 7)")
	fs.BoolVar(&o.FleetOnly, "fleet-only", false, "run the CA and row 7 only (no sshd; root not needed)")
	fs.DurationVar(&o.QuietWait, "quiet-wait", 0, "longest wait for a nearly idle machine before each phase's setups and each scp (default 10s; -short and negative: none)")
	fs.StringVar(&o.ProfileDir, "profile", "", "run teleport-proxy's profiling twin and write CPU and heap profiles of each phase to this `directory`")
	fs.BoolVar(&o.MachineBashrc, "machine-bashrc", false, "let the node's sessions source this machine's /root/.bashrc (default: Debian's stock one, in the node sshd's mount namespace)")
	fs.StringVar(&o.HoldMode, "hold", "", "set the cluster up in recording `mode` proxy or off, print how to reach it, and wait for Ctrl-C instead of measuring")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.HoldMode != "" && o.HoldMode != "proxy" && o.HoldMode != "off" {
		return o, fmt.Errorf("-hold %q is not proxy or off", o.HoldMode)
	}
	o.FileSize = *sizeMiB << 20
	if *short {
		s := proxybench.ShortOptions()
		o.Settle = s.Settle
		for _, f := range []struct{ dst, src *int }{{&o.Setups, &s.Setups}, {&o.Tunnels, &s.Tunnels}, {&o.SCPRuns, &s.SCPRuns}, {&o.FleetNodes, &s.FleetNodes}} {
			if *f.dst == 0 {
				*f.dst = *f.src
			}
		}
		if o.FileSize == 0 {
			o.FileSize = s.FileSize
		}
		if o.QuietWait == 0 {
			o.QuietWait = s.QuietWait
		}
	}
	if !*quiet {
		o.Log = stderr
	}
	if o.ProfileDir != "" {
		dir, err := filepath.Abs(o.ProfileDir)
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err != nil {
			return o, err
		}
		o.ProfileDir = dir
	}
	return o, nil
}
