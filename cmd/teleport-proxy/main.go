// Command teleport-proxy is the cluster's recording SSH jump proxy: users
// reach nodes with "ssh -J user@proxy:3023 login@node" or "ssh -p 3023
// login@node@proxy", and nodes hold reverse tunnels to it on
// --tunnel-listen. The work is done by package sshproxy; docs/proxy.md is
// the operator's guide.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/opensshca/suite/internal/config"
	"github.com/opensshca/suite/internal/logging"
	"github.com/opensshca/suite/internal/metrics"
	"github.com/opensshca/suite/sshproxy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `Usage: teleport-proxy [flags]

Runs the recording SSH jump proxy. The first start joins the cluster with a
proxy token and writes the proxy's identity to --data-dir; later starts
need only --data-dir, --public-addr and the listen addresses. Every flag can
also come from TELEPORT_<FLAG> (TELEPORT_DATA_DIR) or a TOML --config file.

Example:
  caadm tokens add --role proxy                      # on the CA host
  teleport-proxy --server https://ca.example.com:3080 --token T \
      --ca-pin sha256:... --name proxy1 --public-addr proxy.example.com:3023

Users then log in with
  ssh -J alice@proxy.example.com:3023 root@web1
  ssh -p 3023 root@web1@proxy.example.com

Flags:
`

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("teleport-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var cfg sshproxy.Config
	var configFile, logLevel, metricsListen string
	fs.StringVar(&configFile, "config", "", "TOML configuration `file` (keys are the flag names)")
	fs.StringVar(&cfg.DataDir, "data-dir", sshproxy.DefaultDataDir, "data `directory`: identity, cached policy, recording spool (mode 0700)")
	fs.StringVar(&cfg.Join.Server, "server", "", "CA `URL` (first start only), e.g. https://ca.example.com:3080")
	fs.StringVar(&cfg.Join.Token, "token", "", "proxy join `token` from caadm tokens add --role proxy (first start only)")
	fs.StringVar(&cfg.Join.Pin, "ca-pin", "", "sha256:<hex> pin of the CA's TLS root (first start only; caadm ca show prints it)")
	fs.StringVar(&cfg.Join.Name, "name", "", "the proxy's cluster `name` (first start only; default: the host name)")
	fs.StringVar(&cfg.Listen, "listen", ":3023", "SSH `address` users connect to")
	fs.StringVar(&cfg.TunnelListen, "tunnel-listen", ":3024", "`address` nodes hold their reverse tunnels to")
	fs.StringVar(&cfg.PublicAddr, "public-addr", "", "`host:port` users reach --listen at (registered with the CA; required)")
	fs.StringVar(&cfg.TunnelPublicAddr, "tunnel-public-addr", "", "`host:port` nodes reach --tunnel-listen at (default: --public-addr's host with --tunnel-listen's port)")
	fs.BoolVar(&cfg.RecordInput, "record-input", false, "record what users type too (it includes passwords typed at prompts)")
	fs.StringVar(&cfg.OnRecordingFailure, "on-recording-failure", "refuse", `when recordings cannot be written: "refuse" new sessions (and end a session whose recording fails) or "continue" unrecorded with an audit event`)
	fs.BoolVar(&cfg.DNSFallback, "dns-fallback", false, "in recording mode off, let users whose role selects every node (*=*) reach unregistered hosts by DNS name")
	fs.Int64Var(&cfg.MinRecordingFree, "min-recording-free", 64<<20, "free `bytes` the recording directory must have for a new recorded session")
	fs.DurationVar(&cfg.HandshakeTimeout, "handshake-timeout", 10*time.Second, "time an unauthenticated connection may take to log in")
	fs.IntVar(&cfg.MaxUnauthenticated, "max-unauthenticated", 512, "connections that may be logging in at once; more are closed")
	fs.IntVar(&cfg.MaxUnauthenticatedPerSource, "max-unauthenticated-per-source", 64, "of those, how many may come from one IP address (-1: no per-address cap)")
	fs.DurationVar(&cfg.MaxPolicyAge, "max-policy-age", time.Hour, "while the CA is unreachable, the proxy signs session certificates itself for this long after the CA last confirmed its policy; then new sessions wait for the CA")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&metricsListen, "metrics-listen", "", "`host:port` to serve Prometheus metrics on over plain HTTP at /metrics, such as 127.0.0.1:9581 (default off)")
	if err := config.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "teleport-proxy: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "teleport-proxy: unexpected arguments %q\n", fs.Args())
		return 2
	}
	level, err := logging.ParseLevel(logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "teleport-proxy: --log-level: %v\n", err)
		return 2
	}
	if cfg.Join.Name == "" {
		cfg.Join.Name, _ = os.Hostname()
	}
	cfg.Logger = logging.New(stderr, level)
	mln, err := metrics.Listen(metricsListen)
	if err != nil {
		fmt.Fprintf(stderr, "teleport-proxy: %v\n", err)
		return 2
	}
	p, err := sshproxy.New(ctx, cfg)
	if err != nil {
		if mln != nil {
			mln.Close()
		}
		fmt.Fprintf(stderr, "teleport-proxy: %v\n", err)
		return 1
	}
	go func() {
		if err := metrics.Serve(ctx, mln, p.Metrics(), cfg.Logger); err != nil {
			cfg.Logger.Error("metrics stopped", "err", err)
		}
	}()
	if err := p.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "teleport-proxy: %v\n", err)
		return 1
	}
	return 0
}
