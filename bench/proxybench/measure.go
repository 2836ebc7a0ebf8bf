package proxybench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// timeRun runs one OpenSSH client command with the cluster's config and
// returns its wall time, from fork to exit.
func (c *cluster) timeRun(ctx context.Context, prog string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, prog, append([]string{"-F", c.sshConfig}, args...)...)
	cmd.Env = environ()
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("%s %s: %v: %s", prog, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return took, nil
}

// measureSetups times "ssh HOST true" n times for every row, interleaved
// (one run of each row per round) so that a disturbance of the machine
// spreads over all rows alike. One warm-up round is not counted.
func (b *bench) measureSetups(ctx context.Context, rows []*Row, n int) {
	for round := -1; round < n; round++ {
		for _, r := range rows {
			if r.Err != nil {
				continue
			}
			s := b.cpu.sample()
			took, err := b.c.timeRun(ctx, "ssh", r.host, "true")
			b.c.quiesce(ctx)
			if round >= 0 {
				r.setupUse.add(s, b.cpu.sample())
			}
			if err != nil {
				r.Err = fmt.Errorf("setup run %d: %w", round+1, err)
				continue
			}
			if round >= 0 {
				r.Setups = append(r.Setups, took)
			}
		}
	}
}

// measureSCP copies the source file to the row's host with scp (its
// default SFTP protocol) into the sink file, checks and removes the copy
// and records the wall time. The sink is on a tmpfs: the SFTP server truncates its
// target after writing, which /dev/null refuses.
func (b *bench) measureSCP(ctx context.Context, r *Row) {
	if r.Err != nil || r.setupOnly || b.src == "" {
		return
	}
	b.waitQuiet(ctx)
	s := b.cpu.sample()
	took, err := b.c.timeRun(ctx, "scp", "-q", b.src, r.host+":"+b.sink)
	b.c.quiesce(ctx)
	r.scpUse.add(s, b.cpu.sample())
	if fi, serr := os.Stat(b.sink); err == nil && (serr != nil || fi.Size() != b.srcSize) {
		err = fmt.Errorf("the copy is missing or short: %v", serr)
	}
	_ = os.Remove(b.sink)
	if err != nil {
		r.Err = fmt.Errorf("scp: %w", err)
		return
	}
	r.SCPBytes = b.srcSize
	r.SCPTimes = append(r.SCPTimes, took)
}

// Quiet gate: the machine may be shared, and a 1 GiB scp is long enough
// to be hit by someone else's burst. Before each scp (and each phase's
// setups) the bench waits until the machine was nearly idle for a moment.
const (
	quietWindow = 500 * time.Millisecond
	quietShare  = 0.10 // of the machine's CPU
)

// waitQuiet waits until the machine (this run's processes idle between
// measurements) used less than quietShare of its CPU over quietWindow, or
// Options.QuietWait has passed, and adds the time it waited to b.waited.
func (b *bench) waitQuiet(ctx context.Context) {
	start := time.Now()
	defer func() { b.waited += time.Since(start) }()
	for time.Since(start) < b.o.QuietWait && ctx.Err() == nil {
		from := b.cpu.sample()
		time.Sleep(quietWindow)
		to := b.cpu.sample()
		if from.machineUnknown || to.machineUnknown {
			return
		}
		busy := float64(to.machine-from.machine) / float64(to.at.Sub(from.at)*time.Duration(runtime.NumCPU()))
		if busy < quietShare {
			return
		}
	}
}

// quiesce waits (up to a second) until the sshds have no session
// process left, so that a run's CPU is not counted in the next one's.
func (c *cluster) quiesce(ctx context.Context) {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		busy := false
		for _, p := range []*proc{c.nodeSSHD, c.jump} {
			if p != nil && !p.exited() && hasChildren(p.pid()) {
				busy = true
			}
		}
		if !busy {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// writeSource writes size random bytes to a new file in dir.
func writeSource(dir string, size int64) (string, error) {
	f, err := os.CreateTemp(dir, "scp-src-")
	if err != nil {
		return "", fmt.Errorf("proxybench: %w", err)
	}
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	_, err = io.CopyN(f, rand.NewChaCha8(seed), size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("proxybench: writing the scp source: %w", err)
	}
	return f.Name(), nil
}

// sourceDir is where the scp source and sink go: a tmpfs (/dev/shm) when
// there is one, so that neither reading nor writing them touches a disk.
func sourceDir(fallback string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err == nil && st.Type == 0x01021994 {
		if d, err := os.MkdirTemp("/dev/shm", "proxybench-"); err == nil {
			return d
		}
	}
	return fallback
}
