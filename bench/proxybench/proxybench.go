// Package proxybench measures teleport-proxy (package sshproxy) side by
// side with a stock OpenSSH sshd used as the jump host, all in one run,
// all against the same node: a real sshd configured by teleport-node, the
// suite's trust model of DESIGN.md section 2 unchanged (the node's sshd
// checks certificates with TrustedUserCAKeys and teleport-authkeys as
// AuthorizedPrincipalsCommand, sshd_config(5)).
//
// Rows, as the teleport-proxy issue lists them:
//
//  1. direct: "ssh node true" straight to the node's sshd (the floor);
//  2. stock: "ssh -J jump node true" through a stock sshd that lets root
//     in with a plain key and forwards TCP;
//  3. "ssh -J proxy node1 true" through teleport-proxy in recording mode
//     proxy (the inner connection is terminated at the proxy, which logs
//     in to the node with a session certificate and relays);
//  4. the same in mode off (the proxy passes the inner connection's bytes
//     to the node unopened);
//  5. the single-hop form "ssh -p PORT root@node1@proxy true", mode proxy;
//  6. the proxy's resident memory with no tunnel and with 1,000 idle
//     reverse tunnels (package sshproxy/tunnel's Client, run in the bench
//     process, so their memory is not counted);
//  7. a fleet of 2,000 simulated nodes across two proxies, each node
//     holding a tunnel to both as teleport-node run does (4,000 tunnels):
//     each proxy's memory per tunnel, and how long after one proxy is
//     killed (SIGKILL) and started again every node is connected to it
//     again, with the nodes' real reconnect backoff.
//
// Context rows 1k and 2k repeat the setups of rows 1 and 2 with
// curve25519-sha256 as the only key exchange: OpenSSH 9.2 clients offer
// sntrup761x25519 first, which x/crypto does not implement, so with
// teleport-proxy they fall back to curve25519 while the stock path pays
// for sntrup761 on every hop.
//
// Rows 1-5 time "ssh HOST true" (setup) and scp of a 1 GiB file into a
// tmpfs (throughput); the proxy reaches the node through the tunnel that
// "teleport-node run" holds, the stock jump host through the node's
// loopback port. The recording mode is a setting of the CA that the node
// and the proxy follow, so the bench runs the cluster in mode proxy for
// rows 3 and 5, then restarts the CA on the same data directory in mode
// off and waits until the node trusts the user CA and the proxy passes
// through, for rows 1, 2 and 4: every row logs in to the same sshd
// process with a certificate and the same AuthorizedPrincipalsCommand.
//
// Everything runs on one machine, so a row's throughput is bounded by
// the CPU all its processes spend per byte: the bench accounts CPU time
// per part (client, hop, node sshd, teleport-node, CA) from rusage and
// /proc, and the share other processes took meanwhile.
//
// The aims of the issue are checked by [Report.Aims].
package proxybench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Options of a run. Zero fields get the defaults of the full run.
type Options struct {
	// Bins are the programs, from Build.
	Bins Binaries
	// Dir is where the scratch directory goes (default os.TempDir()).
	Dir string
	// Setups is how many timed "ssh HOST true" runs each row gets
	// (default 20), after one warm-up run.
	Setups int
	// FileSize is the size of the file scp copies (default 1 GiB).
	FileSize int64
	// SCPRuns is how many times each row copies it (default 2; rounds
	// interleaved over the rows of a phase); the table shows the best.
	SCPRuns int
	// Tunnels is how many idle tunnels row 6 opens (default 1000).
	Tunnels int
	// FleetNodes is how many simulated nodes row 7 runs, each with a
	// tunnel to both of its two proxies (default 2000; negative: no row
	// 7).
	FleetNodes int
	// FleetOnly runs the CA and row 7 only: no sshd, so no root needed.
	FleetOnly bool
	// Settle is how long the proxy is left alone before its RSS is
	// sampled (default 3s).
	Settle time.Duration
	// QuietWait bounds how long the bench waits, before each phase's
	// setups and each scp, for the machine to be nearly idle (default
	// 10s; negative: no wait).
	QuietWait time.Duration
	// ProfileDir, when set, runs teleport-proxy's profiling twin and
	// writes CPU and heap profiles of each phase there (Bins.ProfProxy
	// must be built).
	ProfileDir string
	// MachineBashrc keeps this machine's /root/.bashrc for the node's
	// sessions. By default the node's sshd runs in a private mount
	// namespace where Debian's stock root .bashrc
	// (/usr/share/base-files/dot.bashrc) hides it: bash sources ~/.bashrc
	// for every command sshd runs, so a heavy one (a development
	// machine's pyenv init) is a per-login cost of the node, the same in
	// every row, that would dilute the ratios.
	MachineBashrc bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// Hold, when set, makes Run set the cluster up in recording mode
	// HoldMode ("proxy" or "off"), call Hold with the client's ssh_config
	// and return when Hold returns, measuring nothing: for experiments
	// and profiling by hand.
	Hold     func(sshConfig string, pids map[string]int)
	HoldMode string
}

// ShortOptions are the smoke run's: 5 setups, one scp of a 64 MiB file,
// 100 tunnels, no wait for a quiet machine.
func ShortOptions() Options {
	return Options{Setups: 5, FileSize: 64 << 20, SCPRuns: 1, Tunnels: 100, FleetNodes: 100, Settle: time.Second, QuietWait: -1}
}

func (o *Options) defaults() {
	if o.Dir == "" {
		o.Dir = os.TempDir()
	}
	if o.Setups <= 0 {
		o.Setups = 20
	}
	if o.FileSize <= 0 {
		o.FileSize = 1 << 30
	}
	if o.SCPRuns <= 0 {
		o.SCPRuns = 2
	}
	if o.Tunnels <= 0 {
		o.Tunnels = 1000
	}
	if o.FleetNodes == 0 {
		o.FleetNodes = 2000
	}
	if o.QuietWait == 0 {
		o.QuietWait = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

func (o Options) settle() time.Duration {
	if o.Settle <= 0 {
		return 3 * time.Second
	}
	return o.Settle
}

// Row IDs, as in the issue.
const (
	RowDirect = "1"
	RowStock  = "2"
	// Context rows 1k and 2k: rows 1 and 2 with curve25519-sha256, the
	// key exchange OpenSSH 9.2 clients fall back to with teleport-proxy
	// (x/crypto has no sntrup761x25519); setups only.
	RowDirectC = "1k"
	RowStockC  = "2k"
	RowJProxy  = "3"
	RowJOff    = "4"
	RowSingle  = "5"
)

// Row is one of rows 1-5 or a context row.
type Row struct {
	ID, What string
	// Setups are the wall times of "ssh HOST true", fork to exit, in run
	// order (the warm-up run left out).
	Setups []time.Duration
	// SCPBytes were copied by each scp; SCPTimes are their wall times,
	// fork to exit.
	SCPBytes int64
	SCPTimes []time.Duration
	// Err is the first failure; the row's figures stop there.
	Err error

	host             string
	setupOnly        bool // a context row: no scp
	setupUse, scpUse cpuUse
}

// MiBps is the throughput of the fastest scp in MiB/s, or 0 if none was
// measured.
func (r *Row) MiBps() float64 {
	if len(r.SCPTimes) == 0 {
		return 0
	}
	return float64(r.SCPBytes) / (1 << 20) / slices.Min(r.SCPTimes).Seconds()
}

// AllMiBps lists the throughput of every scp, in run order.
func (r *Row) AllMiBps() []float64 {
	var out []float64
	for _, t := range r.SCPTimes {
		out = append(out, float64(r.SCPBytes)/(1<<20)/t.Seconds())
	}
	return out
}

// SetupCPU is the CPU time one "ssh HOST true" cost, by part, and the
// share of the machine other processes used during the setup runs.
func (r *Row) SetupCPU() CPU { return r.setupUse.cpu(float64(len(r.Setups))) }

// SCPCPU is the CPU time the scp cost per GiB copied, by part, and the
// share of the machine other processes used meanwhile.
func (r *Row) SCPCPU() CPU {
	return r.scpUse.cpu(float64(r.SCPBytes) * float64(len(r.SCPTimes)) / (1 << 30))
}

// Others is the share of the machine's CPU that other processes used
// while the row was measured (setups and scp), or -1 if unknown.
func (r *Row) Others() float64 {
	u := r.setupUse
	u.others += r.scpUse.others
	u.capacity += r.scpUse.capacity
	u.unknown = u.unknown || r.scpUse.unknown
	return u.cpu(1).Others
}

// Report is the outcome of a run.
type Report struct {
	Machine Machine
	Options Options
	Started time.Time
	Took    time.Duration
	Rows    []*Row // rows 1-5 in order, context rows after the row they vary
	Memory  Memory // row 6
	Fleet   Fleet  // row 7
	// Notes are remarks on the run (such as how long the mode switch
	// took).
	Notes []string
}

// Row returns the row with the given ID.
func (r *Report) Row(id string) *Row {
	for _, row := range r.Rows {
		if row.ID == id {
			return row
		}
	}
	return nil
}

// bench is one run.
type bench struct {
	o         Options
	c         *cluster
	cpu       cpuMeter
	src, sink string
	srcSize   int64
	profLabel string
	start     time.Time
	waited    time.Duration // in waitQuiet
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.o.Log, "proxybench %6.1fs: %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// Run sets the cluster up, measures every row and tears everything down.
// An error means the cluster could not be set up; a row that failed
// carries its own error.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.defaults()
	rep := &Report{Machine: probeMachine(), Options: o, Started: time.Now()}
	c, err := newCluster(o.Bins, o.Dir)
	if err != nil {
		return nil, err
	}
	defer c.close()
	b := &bench{o: o, c: c, cpu: cpuMeter{pids: c.pids}, start: rep.Started}
	if o.FleetOnly {
		return rep, b.fleetOnly(ctx, rep)
	}
	cleanup, err := b.prepare(rep)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	if err := b.setUp(ctx); err != nil {
		return nil, err
	}
	if o.Hold != nil {
		return rep, b.hold(ctx)
	}
	rep.Rows = newRows()
	row := rep.Row

	// Mode proxy: rows 3 and 5.
	b.phase(ctx, "mode-proxy", []*Row{row(RowJProxy), row(RowSingle)})

	// Mode off: rows 1, 1k, 2, 2k and 4, against the same node sshd.
	switched := time.Now()
	if err := b.switchToOff(ctx); err != nil {
		return nil, err
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("switch to mode off (CA restarted, node and proxy followed): %v", time.Since(switched).Round(10*time.Millisecond)))
	b.phase(ctx, "mode-off", []*Row{row(RowDirect), row(RowDirectC), row(RowStock), row(RowStockC), row(RowJOff)})

	b.logf("row 6: %d idle tunnels", o.Tunnels)
	rep.Memory = b.measureTunnels(ctx, o.Tunnels)
	if o.FleetNodes > 0 {
		b.logf("row 7: %d nodes across two proxies", o.FleetNodes)
		rep.Fleet = b.measureFleet(ctx, o.FleetNodes)
	}
	rep.Took = time.Since(rep.Started)
	if o.QuietWait > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("waited %v in all for the machine to be quiet (under %.0f%% busy for %v, at most %v) before each phase's setups and each scp",
			b.waited.Round(100*time.Millisecond), 100*quietShare, quietWindow, o.QuietWait))
	}
	return rep, ctx.Err()
}

// fleetOnly sets up the CA alone and measures row 7.
func (b *bench) fleetOnly(ctx context.Context, rep *Report) error {
	if err := b.c.startCA(ctx, "proxy"); err != nil {
		return fmt.Errorf("proxybench: setting up teleport-ca: %w", err)
	}
	b.logf("row 7: %d nodes across two proxies", b.o.FleetNodes)
	rep.Fleet = b.measureFleet(ctx, max(b.o.FleetNodes, 1))
	rep.Took = time.Since(rep.Started)
	return ctx.Err()
}

// prepare picks the proxy binary and the node's .bashrc and writes the
// scp source. The returned cleanup removes the source; call it even on
// error.
func (b *bench) prepare(rep *Report) (cleanup func(), err error) {
	o, c := b.o, b.c
	cleanup = func() {}
	if o.ProfileDir != "" {
		if o.Bins.ProfProxy == "" {
			return cleanup, errors.New("proxybench: profiling needs the profiling twin (Build with profile)")
		}
		c.proxyBin, c.proxyEnv = o.Bins.ProfProxy, []string{profileEnv + "=" + o.ProfileDir}
	}
	switch {
	case o.MachineBashrc:
		rep.Notes = append(rep.Notes, "the node's sessions use this machine's own /root/.bashrc")
	case stockBashrc() == "":
		rep.Notes = append(rep.Notes, "the node's sessions use this machine's /root/.bashrc ("+stockBashrcPath+" or /root/.bashrc or unshare missing)")
	default:
		c.nodeBashrc = stockBashrcPath
		rep.Notes = append(rep.Notes, "the node's sessions see Debian's stock root .bashrc ("+stockBashrcPath+" bind-mounted over /root/.bashrc in the node sshd's mount namespace)")
	}
	srcDir := sourceDir(c.dir)
	if srcDir != c.dir {
		cleanup = func() { os.RemoveAll(srcDir) }
	}
	if b.src, err = writeSource(srcDir, o.FileSize); err != nil {
		return cleanup, err
	}
	b.sink = filepath.Join(srcDir, "sink")
	b.srcSize = o.FileSize
	b.logf("scp source: %d MiB in %s", o.FileSize>>20, srcDir)
	return cleanup, nil
}

// setUp starts the cluster in mode proxy and waits until the node is
// reachable through its tunnel.
func (b *bench) setUp(ctx context.Context) error {
	c := b.c
	steps := []struct {
		what string
		f    func(context.Context) error
	}{
		{"teleport-ca (mode proxy)", func(ctx context.Context) error { return c.startCA(ctx, "proxy") }},
		{"role and user", c.addUser},
		{"teleport-proxy", c.startProxy},
		{"node sshd and teleport-node run", c.startNode},
		{"client keys, certificate and stock jump host", c.writeClient},
	}
	for _, s := range steps {
		if err := s.f(ctx); err != nil {
			return fmt.Errorf("proxybench: setting up %s: %w", s.what, err)
		}
		b.logf("up: %s", s.what)
	}
	err := waitFor(ctx, readyTimeout, "node1 through its tunnel (ssh -J)", c.agent, func() error {
		_, err := c.ssh(ctx, "ssh", hostProxyJ, "true")
		return err
	})
	if err != nil {
		return err
	}
	b.logf("node1 reachable through teleport-proxy")
	return nil
}

// stockBashrcPath is Debian's root .bashrc (package base-files).
const stockBashrcPath = "/usr/share/base-files/dot.bashrc"

// stockBashrc returns stockBashrcPath if the node's sshd can be given it
// over /root/.bashrc, else "".
func stockBashrc() string {
	for _, p := range []string{stockBashrcPath, "/root/.bashrc"} {
		if _, err := os.Stat(p); err != nil {
			return ""
		}
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		return ""
	}
	return stockBashrcPath
}

// hold hands the cluster to Options.Hold.
func (b *bench) hold(ctx context.Context) error {
	if b.o.HoldMode == "off" {
		if err := b.switchToOff(ctx); err != nil {
			return err
		}
	}
	c := b.c
	b.o.Hold(c.sshConfig, map[string]int{
		"teleport-ca": c.ca.pid(), "teleport-proxy": c.proxy.pid(), "node sshd": c.nodeSSHD.pid(),
		"teleport-node": c.agent.pid(), "jump sshd": c.jump.pid(),
	})
	for _, p := range []*proc{c.ca, c.proxy, c.agent, c.nodeSSHD, c.jump} {
		fmt.Fprintf(b.o.Log, "--- %s output (last lines) ---\n%s", p.name, p.out.String())
	}
	return nil
}

// switchToOff restarts the CA in mode off and waits until the node's sshd
// accepts the user certificate (teleport-node replaced its
// TrustedUserCAKeys file) and the proxy passes connections through (it
// then refuses the single-hop form).
func (b *bench) switchToOff(ctx context.Context) error {
	c := b.c
	if err := c.startCA(ctx, "off"); err != nil {
		return err
	}
	err := waitFor(ctx, readyTimeout, "the node trusting the user CA (mode off)", c.agent, func() error {
		_, err := c.ssh(ctx, "ssh", hostDirect, "true")
		return err
	})
	if err != nil {
		return err
	}
	err = waitFor(ctx, readyTimeout, "the proxy in mode off", c.proxy, func() error {
		out, err := c.ssh(ctx, "ssh", hostSingle, "true")
		if err == nil || !strings.Contains(out, "recording mode is off") {
			return fmt.Errorf("single hop still served: %v", err)
		}
		return nil
	})
	if err == nil {
		b.logf("switched to mode off")
	}
	return err
}

// phase measures setups (interleaved), then SCPRuns rounds of one scp per
// row (context rows have none).
func (b *bench) phase(ctx context.Context, name string, rows []*Row) {
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	b.logf("%s: setups of rows %s", name, strings.Join(ids, ", "))
	b.waitQuiet(ctx)
	b.profileStart(name + "-setups")
	b.measureSetups(ctx, rows, b.o.Setups)
	b.profileStop()
	for run := range b.o.SCPRuns {
		for _, r := range rows {
			if r.setupOnly {
				continue
			}
			b.logf("row %s: scp %d of %d", r.ID, run+1, b.o.SCPRuns)
			if r.ID != RowDirect && r.ID != RowStock {
				b.profileStart(fmt.Sprintf("row%s-scp%d", r.ID, run+1))
			}
			b.measureSCP(ctx, r)
			b.profileStop()
			if r.Err != nil {
				b.logf("row %s: %v", r.ID, r.Err)
			}
		}
	}
}

// newRows describes rows 1-5 and the context rows.
func newRows() []*Row {
	return []*Row{
		{ID: RowDirect, What: "direct: ssh to the node's sshd (floor)", host: hostDirect},
		{ID: RowDirectC, What: "context: row 1 with curve25519 key exchange", host: hostDirectC, setupOnly: true},
		{ID: RowStock, What: "stock OpenSSH jump host: ssh -J", host: hostStock},
		{ID: RowStockC, What: "context: row 2 with curve25519 key exchange (both hops)", host: hostStockC, setupOnly: true},
		{ID: RowJProxy, What: "teleport-proxy ssh -J, mode proxy (terminated, relayed)", host: hostProxyJ},
		{ID: RowJOff, What: "teleport-proxy ssh -J, mode off (pass-through)", host: hostProxyJ},
		{ID: RowSingle, What: "teleport-proxy single hop, mode proxy", host: hostSingle},
	}
}

// pids are the running programs the cluster started, by the part of
// the CPU accounting they belong to (0: none running).
func (c *cluster) pids() [numParts]int {
	var out [numParts]int
	for part, p := range map[int]*proc{partCA: c.ca, partProxy: c.proxy, partNodeSSHD: c.nodeSSHD, partNodeAgent: c.agent, partJump: c.jump} {
		if p != nil && !p.exited() {
			out[part] = p.pid()
		}
	}
	return out
}
