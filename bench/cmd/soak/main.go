// Command soak is the load test of issue 7 ("Load", docs/RELIABILITY.md):
// it holds many concurrent recorded interactive sessions through one
// teleport-proxy for a long time while the CA issues user certificates
// at a steady rate, and checks that no session fails, that every
// recording is complete and plays, and that memory stays flat.
//
// Everything is real and on this machine: teleport-ca, teleport-proxy in
// recording mode proxy, and -nodes nodes, each a real OpenSSH sshd
// configured by teleport-node (TrustedUserCAKeys with the session CA,
// teleport-authkeys as AuthorizedPrincipalsCommand, sshd_config(5)) with
// "teleport-node run" holding its reverse tunnel to the proxy. The
// clients are golang.org/x/crypto/ssh in this process, with user
// certificates from the CA, checking every host certificate against the
// host CA: half log in like "ssh -J" (direct-tcpip through the proxy,
// then an inner SSH connection the proxy terminates and records), half
// with the single-hop form "root@node1" at the proxy (-hop).
//
// Sessions open at -rate per second. Each gets a PTY and a login shell
// and types a loop that prints "SOAK-<session>-<n>-<check>" every
// -interval; the client checks every marker (order, check value, gaps).
// Once all are open they are held together for -duration (the first
// -warmup of it is not judged for memory); meanwhile -issue-rate user
// certificates per second are signed over the CA's HTTPS API by users
// that signed in with password and TOTP. Then every session is ended
// with Ctrl-C and "exit 0", and once the proxy's spool has uploaded every
// recording, each one is fetched from the CA's admin API, parsed as
// asciicast v2 and matched to its session (every marker the client saw,
// in order, and no more), and -play of them are played with the real
// "asciinema cat".
//
// The resident memory (VmRSS) of teleport-proxy, teleport-ca and every
// teleport-node is sampled every -sample; over the steady window (after
// the warm-up) the mean of its last three samples may exceed the mean
// of its first three by at most -rss-bound. The exit status is 1 if
// any session failed, any recording is missing, incomplete or does not
// play, issuance or a sign-in failed, or memory grew past the bound.
//
// It needs root (it runs sshd and its sessions log in as root) and the
// OpenSSH server, asciinema and script(1). "make soak" runs it.
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
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the flags.
type options struct {
	sessions, nodes, users, issueUsers int
	duration, warmup, interval         time.Duration
	rate, issueRate                    float64
	hop                                string
	sample                             time.Duration
	rssBound                           float64
	play                               int
	dir                                string
	stall                              time.Duration
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.sessions, "sessions", 500, "concurrent interactive sessions")
	fs.DurationVar(&o.duration, "duration", 10*time.Minute, "how long all sessions are held open together, once the last has opened")
	fs.DurationVar(&o.warmup, "warmup", time.Minute, "the first part of -duration that memory is not judged on")
	fs.IntVar(&o.nodes, "nodes", 4, "nodes (an sshd and a teleport-node each); sessions are spread over them")
	fs.IntVar(&o.users, "users", 10, "session users; sessions are spread over them")
	fs.Float64Var(&o.rate, "rate", 5, "sessions opened per second during the ramp")
	fs.DurationVar(&o.interval, "interval", 5*time.Second, "how often each session's loop prints a marker (whole seconds)")
	fs.DurationVar(&o.stall, "stall", 60*time.Second, "a session with no marker for longer has failed")
	fs.StringVar(&o.hop, "hop", hopMix, `how sessions reach nodes: "jump" (like ssh -J), "single" (root@node1 at the proxy) or "mix"`)
	fs.Float64Var(&o.issueRate, "issue-rate", 10, "user certificates per second over the CA's HTTPS API, throughout")
	fs.IntVar(&o.issueUsers, "issue-users", 8, "users that sign in for the issuance load")
	fs.DurationVar(&o.sample, "sample", 15*time.Second, "how often memory is sampled")
	fs.Float64Var(&o.rssBound, "rss-bound", 0.10, "largest RSS growth over the steady window, as a fraction")
	fs.IntVar(&o.play, "play", 20, "recordings played with asciinema cat (all are parsed)")
	fs.StringVar(&o.dir, "dir", "", "where the scratch directory goes (default: the system's temporary directory)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.sessions < 1 || o.nodes < 1 || o.users < 1 || o.issueUsers < 1:
		return o, errors.New("-sessions, -nodes, -users and -issue-users must be at least 1")
	case o.rate <= 0 || o.issueRate <= 0:
		return o, errors.New("-rate and -issue-rate must be positive")
	case o.interval < time.Second || o.interval%time.Second != 0:
		return o, errors.New("-interval must be whole seconds")
	case o.warmup >= o.duration:
		return o, errors.New("-warmup must be shorter than -duration")
	case o.hop != hopJump && o.hop != hopSingle && o.hop != hopMix:
		return o, fmt.Errorf("-hop %q is not jump, single or mix", o.hop)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "soak: %v\n", err)
		}
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "soak: needs root: it runs sshd, and its sessions log in as root (sudo make soak)")
		return 1
	}
	s := &soak{opts: o, stdout: stdout, stderr: stderr}
	rep, err := s.run(ctx)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	rep.write(stdout)
	if rep.failed() {
		return 1
	}
	return 0
}
