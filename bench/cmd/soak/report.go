package main

import (
	"fmt"
	"io"
	"iter"
	"os/exec"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is a run's outcome.
type report struct {
	opts              options
	machine           string
	started, finished time.Time
	rampTook          time.Duration
	closeTook         time.Duration
	sessions          []*session
	issue             issueStats
	recs              recordingReport
	watch             []watched
	samples           []sample
}

// sessionFigures sums up the sessions.
type sessionFigures struct {
	opened, failed               int
	failures                     []string
	openP50, openMax             time.Duration
	loginP50, loginP99, loginMax time.Duration
	markers, minLast, maxLast    int
	maxGap                       time.Duration
	jump, single                 int
}

func (r *report) sessionFigures() sessionFigures {
	var f sessionFigures
	var opens, logins []time.Duration
	f.minLast = -1
	for _, s := range r.sessions {
		if s == nil {
			continue
		}
		if err := s.failure(r.opts.stall); err != nil {
			f.failed++
			if len(f.failures) < 10 {
				f.failures = append(f.failures, fmt.Sprintf("session %d (%s@%s, %s): %v", s.id, s.user, s.node, s.hop, err))
			}
		}
		if !s.opened {
			continue
		}
		f.opened++
		if s.hop == hopJump {
			f.jump++
		} else {
			f.single++
		}
		opens = append(opens, s.openTook)
		logins = append(logins, s.loginTook)
		last, _ := s.seen()
		f.markers += last
		if f.minLast < 0 || last < f.minLast {
			f.minLast = last
		}
		f.maxLast = max(f.maxLast, last)
		s.mu.Lock()
		f.maxGap = max(f.maxGap, s.maxGap)
		s.mu.Unlock()
	}
	if len(opens) > 0 {
		slices.Sort(opens)
		f.openP50, f.openMax = opens[len(opens)/2], opens[len(opens)-1]
		slices.Sort(logins)
		f.loginP50, f.loginP99, f.loginMax = logins[len(logins)/2], logins[len(logins)*99/100], logins[len(logins)-1]
	}
	return f
}

func (r *report) trends() []memTrend {
	return trends(r.watch, r.samples, func(s sample, i int) int64 { return s.rss[i] })
}

// failed reports whether any target was missed.
func (r *report) failed() bool {
	if r == nil || r.sessions == nil {
		return true
	}
	sf := r.sessionFigures()
	if sf.failed > 0 || sf.opened != r.opts.sessions {
		return true
	}
	if r.issue.failed > 0 || r.issue.signInFails > 0 || r.issue.ok == 0 {
		return true
	}
	rc := r.recs
	if rc.complete != sf.opened || len(rc.missing) > 0 || len(rc.problems) > 0 || rc.played != rc.playTried ||
		rc.playTried < min(r.opts.play, sf.opened) || len(rc.playProblem) > 0 {
		return true
	}
	for _, t := range r.trends() {
		if t.n < 2 || t.growth > r.opts.rssBound {
			return true
		}
	}
	return false
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

func mib(b int64) string {
	if b < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func (r *report) write(w io.Writer) {
	o := r.opts
	sf := r.sessionFigures()
	rc := r.recs
	is := r.issue
	fmt.Fprintf(w, "\nsoak: %d sessions over %d nodes through one teleport-proxy (mode proxy, %s), held %v after a %v ramp; %.0f certificates/s\n",
		o.sessions, o.nodes, o.hop, o.duration, r.rampTook.Round(time.Second), o.issueRate)
	fmt.Fprintf(w, "started %s, finished %s (%v)\n", r.started.UTC().Format("2006-01-02 15:04 MST"),
		r.finished.UTC().Format("15:04 MST"), r.finished.Sub(r.started).Round(time.Second))
	fmt.Fprintf(w, "machine: %s\n\n", r.machine)

	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| check\t target\t measured\t verdict\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t")
	fmt.Fprintf(tw, "| sessions opened\t %d\t %d (%d -J, %d single hop); login to shell p50 %v, p99 %v, max %v; to first marker max %v\t %s\t\n",
		o.sessions, sf.opened, sf.jump, sf.single, sf.loginP50.Round(10*time.Millisecond), sf.loginP99.Round(10*time.Millisecond),
		sf.loginMax.Round(10*time.Millisecond), sf.openMax.Round(10*time.Millisecond), verdict(sf.opened == o.sessions))
	fmt.Fprintf(tw, "| sessions failed\t 0\t %d\t %s\t\n", sf.failed, verdict(sf.failed == 0))
	fmt.Fprintf(tw, "| markers checked by the clients\t in order, none late by > %v\t %d (%d-%d per session), longest gap %v\t %s\t\n",
		o.stall, sf.markers, max(sf.minLast, 0), sf.maxLast, sf.maxGap.Round(100*time.Millisecond), verdict(sf.failed == 0))
	fmt.Fprintf(tw, "| certificates issued (HTTPS API)\t %.0f/s, 0 failed\t %d at %.2f/s, %d failed; p50 %v, p99 %v, max %v\t %s\t\n",
		o.issueRate, is.ok, is.rate, is.failed, is.p50.Round(100*time.Microsecond), is.p99.Round(100*time.Microsecond),
		is.max.Round(time.Millisecond), verdict(is.failed == 0 && is.ok > 0))
	fmt.Fprintf(tw, "| sign-ins (password + TOTP)\t 0 failed\t %d, %d failed\t %s\t\n", is.signIns, is.signInFails, verdict(is.signInFails == 0))
	fmt.Fprintf(tw, "| recordings at the CA\t %d\t %d (%.1f MiB), all stored %v after the last session ended; %d left in the spool\t %s\t\n",
		sf.opened, rc.atCA, float64(rc.bytes)/(1<<20), rc.uploadTook.Round(100*time.Millisecond), rc.spoolLeft,
		verdict(len(rc.missing) == 0 && rc.spoolLeft == 0))
	fmt.Fprintf(tw, "| recordings valid and complete\t %d\t %d (%d missing, %d other problems)\t %s\t\n",
		sf.opened, rc.complete, len(rc.missing), len(rc.problems), verdict(rc.complete == sf.opened && len(rc.problems) == 0))
	fmt.Fprintf(tw, "| played with asciinema cat\t %d\t %d of %d\t %s\t\n", min(o.play, sf.opened), rc.played, rc.playTried,
		verdict(rc.played == rc.playTried && rc.playTried >= min(o.play, sf.opened)))
	tw.Flush()

	fmt.Fprintf(w, "\nresident memory (VmRSS), steady window = after all sessions were open + %v; start and end are the means of its first and last three samples (every %v); bound +%.0f %%\n\n",
		o.warmup, o.sample, 100*o.rssBound)
	tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| process\t idle\t steady start\t steady end\t steady max\t run max\t slope\t growth\t fds\t verdict\t")
	fmt.Fprintln(tw, "|---\t---:\t---:\t---:\t---:\t---:\t---:\t---:\t---:\t---\t")
	for _, t := range r.trends() {
		fmt.Fprintf(tw, "| %s\t %s\t %s\t %s\t %s\t %s\t %+.2f MiB/min\t %+.1f %%\t %d→%d\t %s\t\n",
			t.name, mib(t.first), mib(t.start), mib(t.end), mib(t.max), mib(t.maxAll), t.slope/(1<<20), 100*t.growth,
			t.startFDs, t.endFDs, verdict(t.n >= 2 && t.growth <= o.rssBound))
	}
	tw.Flush()
	r.writeMachine(w)

	var notes []string
	notes = append(notes, sf.failures...)
	for _, id := range rc.missing[:min(10, len(rc.missing))] {
		notes = append(notes, fmt.Sprintf("session %d: no recording at the CA", id))
	}
	notes = append(notes, rc.problems[:min(10, len(rc.problems))]...)
	notes = append(notes, rc.playProblem...)
	notes = append(notes, is.errs...)
	if len(notes) > 0 {
		fmt.Fprintln(w, "\nproblems (the first of each kind):")
		for _, n := range notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
	fmt.Fprintf(w, "\nverdict: %s\n", map[bool]string{true: "FAILED", false: "passed"}[r.failed()])
}

// writeMachine prints the machine's processes and memory by phase.
func (r *report) writeMachine(w io.Writer) {
	type agg struct {
		procs, n    int
		mem, memMax int64
		load        float64
	}
	by := map[string]*agg{}
	var order []string
	for _, s := range r.samples {
		a := by[s.phase]
		if a == nil {
			a = &agg{}
			by[s.phase] = a
			order = append(order, s.phase)
		}
		a.procs = max(a.procs, s.procs)
		a.memMax = max(a.memMax, s.memUsed)
		a.mem = s.memUsed
		a.load = max(a.load, s.load1)
		a.n++
	}
	fmt.Fprintln(w, "\nmachine, by phase (last sample; max):")
	for _, p := range order {
		a := by[p]
		fmt.Fprintf(w, "  %-7s %3d samples, processes max %d, memory used %s (max %s), load1 max %.1f\n",
			p, a.n, a.procs, mib(a.mem), mib(a.memMax), a.load)
	}
}

func splitLines(s string) iter.Seq[string] { return strings.Lines(s) }

// cutField returns the value of a "name : value" line of /proc/cpuinfo.
func cutField(line, name string) (string, bool) {
	k, v, ok := strings.Cut(line, ":")
	if !ok || strings.TrimSpace(k) != name {
		return "", false
	}
	return strings.TrimSpace(v), true
}

func runOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
