package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/opensshca/suite/bench/proxybench"
	"github.com/opensshca/suite/ca/api"
)

// soak is one run.
type soak struct {
	opts           options
	stdout, stderr io.Writer
	start          time.Time
}

func (s *soak) logf(format string, args ...any) {
	fmt.Fprintf(s.stderr, "soak %7s: %s\n", time.Since(s.start).Round(time.Second), fmt.Sprintf(format, args...))
}

// raiseNoFile raises the soft limit on open files to the hard one: the
// clients hold one socket per session, and the processes the soak starts
// inherit the limit.
func raiseNoFile() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	return l.Cur, nil
}

func (s *soak) run(ctx context.Context) (*report, error) {
	o := s.opts
	s.start = time.Now()
	rep := &report{opts: o, started: s.start}
	nofile, err := raiseNoFile()
	if err != nil {
		return nil, fmt.Errorf("soak: raising RLIMIT_NOFILE: %w", err)
	}
	rep.machine = machineLine(nofile)
	s.logf("%s", rep.machine)

	bin, err := os.MkdirTemp(o.dir, "soak-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(bin)
	s.logf("building the programs")
	bins, err := proxybench.Build(bin, false)
	if err != nil {
		return nil, err
	}
	c, err := newCluster(bins, o.dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		s.logf("stopping the cluster")
		c.close()
	}()
	defer func() {
		if rep.failed() {
			s.saveLogs(c)
		}
	}()
	if err := c.start(ctx, o.nodes, s.logf); err != nil {
		return nil, err
	}
	users, err := s.addUsers(ctx, c)
	if err != nil {
		return nil, err
	}
	d, err := newDialer(c, 60*time.Second)
	if err != nil {
		return nil, err
	}
	if err := s.waitRoutes(ctx, c, d, users[0]); err != nil {
		return nil, err
	}
	is, err := newIssuer(ctx, c, o.issueUsers, o.issueRate)
	if err != nil {
		return nil, err
	}

	watch := []watched{{"teleport-proxy", c.proxy.Pid()}, {"teleport-ca", c.ca.Pid()}}
	for _, n := range c.nodes {
		watch = append(watch, watched{"teleport-node " + n.name, n.agent.Pid()})
	}
	smp := &sampler{procs: watch, every: o.sample}
	sctx, stopSampler := context.WithCancel(ctx)
	defer stopSampler()
	smp.setPhase(phaseRamp)
	go smp.run(sctx)

	ictx, stopIssuer := context.WithCancel(ctx)
	issued := make(chan struct{})
	go func() { is.run(ictx); close(issued) }()

	sessions := s.ramp(ctx, d, users)
	rep.rampTook = time.Since(s.start)
	smp.setPhase(phaseWarmup)
	s.hold(ctx, sessions, smp, is)

	smp.setPhase(phaseClose)
	stopIssuer()
	<-issued
	s.logf("ending the sessions (Ctrl-C, exit 0)")
	closeStart := time.Now()
	var wg sync.WaitGroup
	for _, ss := range sessions {
		if ss.opened {
			wg.Go(func() { ss.finish(60 * time.Second) })
		}
	}
	wg.Wait()
	rep.closeTook = time.Since(closeStart)
	s.logf("sessions ended in %v; waiting for the recordings", rep.closeTook.Round(100*time.Millisecond))
	rep.recs = checkRecordings(ctx, c, sessions, filepath.Join(c.dir, "exported"), o.play, 5*time.Minute, s.logf)
	smp.take()
	stopSampler()

	rep.sessions, rep.issue, rep.watch, rep.samples = sessions, is.stats(), watch, smp.all()
	rep.finished = time.Now()
	return rep, nil
}

// addUsers makes the session users: a role that logs in as root on the
// soak's nodes, and -users users with it, each with a certificate.
func (s *soak) addUsers(ctx context.Context, c *cluster) ([]sshUser, error) {
	if _, err := c.admin.AddRole(ctx, api.Role{Name: "soak-root", Logins: []string{login},
		NodeLabels: map[string][]string{"env": {nodeLabel}}}); err != nil {
		return nil, fmt.Errorf("soak: adding the role: %w", err)
	}
	var users []sshUser
	for i := range s.opts.users {
		name := fmt.Sprintf("soak%02d", i)
		if _, err := c.admin.AddUser(ctx, api.AddUserRequest{Name: name, Roles: []string{"soak-root"},
			Password: "correct horse battery staple"}); err != nil {
			return nil, fmt.Errorf("soak: adding %s: %w", name, err)
		}
		u, err := c.newSSHUser(ctx, name)
		if err != nil {
			return nil, err
		}
		users = append(users, u)
	}
	return users, nil
}

// waitRoutes waits until the proxy reaches every node through its tunnel:
// a login that runs "true" without a PTY (so nothing is recorded).
func (s *soak) waitRoutes(ctx context.Context, c *cluster, d *dialer, u sshUser) error {
	for _, n := range c.nodes {
		err := proxybench.WaitFor(ctx, 60*time.Second, "a login to "+n.name+" through the proxy", c.proxy, func() error {
			cl, closeFn, err := d.dial(ctx, u, n.name, hopSingle)
			if err != nil {
				return err
			}
			defer closeFn()
			sess, err := cl.NewSession()
			if err != nil {
				return err
			}
			return sess.Run("true")
		})
		if err != nil {
			return err
		}
	}
	s.logf("every node reachable through the proxy")
	return nil
}

// ramp opens the sessions at the configured rate and returns once every
// one has opened or failed to.
func (s *soak) ramp(ctx context.Context, d *dialer, users []sshUser) []*session {
	o := s.opts
	s.logf("opening %d sessions at %.1f/s over %d nodes (%s)", o.sessions, o.rate, o.nodes, o.hop)
	sessions := make([]*session, o.sessions)
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.rate))
	defer tick.Stop()
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	for i := range sessions {
		hop := o.hop
		if hop == hopMix {
			hop = []string{hopJump, hopSingle}[i%2]
		}
		u := users[i%len(users)]
		ss := &session{id: i + 1, user: u.name, node: fmt.Sprintf("node%d", i%o.nodes+1), hop: hop}
		sessions[i] = ss
		wg.Go(func() { ss.open(ctx, d, u, o.interval, o.interval+90*time.Second) })
		select {
		case <-ctx.Done():
			ss.openErr = ctx.Err()
			continue
		case <-progress.C:
			s.logf("ramp: %d of %d started", i+1, o.sessions)
		default:
		}
		<-tick.C
	}
	wg.Wait()
	opened := 0
	for _, ss := range sessions {
		if ss.opened {
			opened++
		} else {
			s.logf("session %d (%s, %s, %s) did not open: %v", ss.id, ss.user, ss.node, ss.hop, ss.openErr)
		}
	}
	s.logf("ramp done: %d of %d sessions open", opened, o.sessions)
	return sessions
}

// hold keeps the sessions open for -duration, logging progress.
func (s *soak) hold(ctx context.Context, sessions []*session, smp *sampler, is *issuer) {
	o := s.opts
	end := time.After(o.duration)
	steady := time.After(o.warmup)
	progress := time.NewTicker(30 * time.Second)
	defer progress.Stop()
	for {
		select {
		case <-ctx.Done():
			s.logf("interrupted: ending early")
			return
		case <-end:
			return
		case <-steady:
			smp.setPhase(phaseSteady)
			s.logf("warm-up over: the steady window starts")
		case <-progress.C:
			alive, stalled, minLast := 0, 0, -1
			for _, ss := range sessions {
				if !ss.opened {
					continue
				}
				select {
				case <-ss.readDone:
					continue
				default:
				}
				alive++
				n, at := ss.seen()
				if time.Since(at) > 2*o.interval+5*time.Second {
					stalled++
				}
				if minLast < 0 || n < minLast {
					minLast = n
				}
			}
			st := is.stats()
			last := smp.all()
			rss := ""
			if len(last) > 0 {
				sm := last[len(last)-1]
				rss = fmt.Sprintf("; proxy %s, CA %s; %d processes, load %.1f", mib(sm.rss[0]), mib(sm.rss[1]), sm.procs, sm.load1)
			}
			s.logf("hold: %d sessions alive, %d late, fewest markers %d; %d certificates, %d failed%s",
				alive, stalled, minLast, st.ok, st.failed, rss)
		}
	}
}

// saveLogs keeps the tails of the programs' logs after a failed run.
func (s *soak) saveLogs(c *cluster) {
	dir, err := os.MkdirTemp("", "soak-logs-")
	if err != nil {
		return
	}
	procs := []*proxybench.Proc{c.ca, c.proxy}
	for _, n := range c.nodes {
		procs = append(procs, n.sshd, n.agent)
	}
	for _, p := range procs {
		if p != nil {
			_ = os.WriteFile(filepath.Join(dir, sanitize(p.Name())+".log"), []byte(p.Output()), 0o600)
		}
	}
	s.logf("the last %d KiB of each program's log are in %s", proxybench.LogKeep>>10, dir)
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == ' ' || c == '/' {
			b[i] = '-'
		}
	}
	return string(b)
}

// machineLine describes the machine and the tools.
func machineLine(nofile uint64) string {
	return fmt.Sprintf("GOMAXPROCS=%d (NumCPU=%d), %s, %s %s/%s, %s, RLIMIT_NOFILE %d",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH,
		sshdVersion(), nofile)
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "CPU unknown"
	}
	for line := range splitLines(string(b)) {
		if v, ok := cutField(line, "model name"); ok {
			return v
		}
	}
	return "CPU unknown"
}

func sshdVersion() string {
	// sshd -V is not in 9.2; ssh -V prints the same version to stderr.
	out, _ := runOut("ssh", "-V")
	return out
}
