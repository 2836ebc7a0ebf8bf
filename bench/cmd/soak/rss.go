package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Phases of a run, as samples are tagged.
const (
	phaseRamp   = "ramp"   // sessions opening
	phaseWarmup = "warmup" // all open, before the steady window
	phaseSteady = "steady" // what "memory flat" is judged on
	phaseClose  = "close"  // sessions closing, recordings uploading
)

// watched is a process whose memory is sampled.
type watched struct {
	name string
	pid  int
}

// sample is one look at the watched processes and the machine.
type sample struct {
	at      time.Time
	phase   string
	rss     []int64 // bytes, by watched index; -1 if unreadable
	fds     []int
	procs   int   // processes on the machine
	memUsed int64 // MemTotal - MemAvailable, bytes
	load1   float64
}

// sampler reads VmRSS from /proc/PID/status of each watched process every
// interval.
type sampler struct {
	procs []watched
	every time.Duration

	mu      sync.Mutex
	phase   string
	samples []sample
}

func (s *sampler) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
	s.take() // a sample at each boundary
}

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.take()
		}
	}
}

func (s *sampler) take() {
	sm := sample{at: time.Now(), procs: countProcs()}
	for _, p := range s.procs {
		rss, err := vmRSS(p.pid)
		if err != nil {
			rss = -1
		}
		sm.rss = append(sm.rss, rss)
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
		sm.fds = append(sm.fds, len(ents))
	}
	sm.memUsed = memUsed()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			sm.load1, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	s.mu.Lock()
	sm.phase = s.phase
	s.samples = append(s.samples, sm)
	s.mu.Unlock()
}

func (s *sampler) all() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.samples...)
}

// vmRSS is the resident set size of pid in bytes.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return kbField(string(b), "VmRSS:")
}

func kbField(text, name string) (int64, error) {
	for line := range strings.Lines(text) {
		if v, ok := strings.CutPrefix(line, name); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no %s line", name)
}

func memUsed() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return -1
	}
	total, err1 := kbField(string(b), "MemTotal:")
	avail, err2 := kbField(string(b), "MemAvailable:")
	if err1 != nil || err2 != nil {
		return -1
	}
	return total - avail
}

func countProcs() int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return n
}

// memTrend is one process's memory over the steady window.
type memTrend struct {
	name                string
	first               int64 // first sample of the run
	start, end          int64 // mean of the window's first and last three samples
	max                 int64 // over the window
	maxAll              int64 // over the whole run
	slope               float64
	growth              float64 // (end-start)/start
	startFDs, endFDs, n int
}

// trends fits each watched process's RSS over the steady samples.
func trends(procs []watched, samples []sample, pick func(sample, int) int64) []memTrend {
	var out []memTrend
	for i, p := range procs {
		t := memTrend{name: p.name, first: -1}
		var xs []float64
		var ys []int64
		var fds []int
		for _, s := range samples {
			v := pick(s, i)
			if v < 0 {
				continue
			}
			if t.first < 0 {
				t.first = v
			}
			t.maxAll = max(t.maxAll, v)
			if s.phase != phaseSteady {
				continue
			}
			xs = append(xs, s.at.Sub(samples[0].at).Minutes())
			ys = append(ys, v)
			if i < len(s.fds) {
				fds = append(fds, s.fds[i])
			}
			t.max = max(t.max, v)
		}
		t.n = len(ys)
		if t.n >= 2 {
			k := min(3, t.n/2)
			t.start, t.end = mean(ys[:k]), mean(ys[t.n-k:])
			t.growth = float64(t.end-t.start) / float64(t.start)
			t.slope = fitSlope(xs, ys)
			t.startFDs, t.endFDs = fds[0], fds[len(fds)-1]
		}
		out = append(out, t)
	}
	return out
}

func mean(v []int64) int64 {
	var s int64
	for _, x := range v {
		s += x
	}
	return s / int64(len(v))
}

// fitSlope is the least-squares slope of ys over xs, per unit of x.
func fitSlope(xs []float64, ys []int64) float64 {
	var sx, sy, sxx, sxy float64
	n := float64(len(xs))
	for i := range xs {
		x, y := xs[i], float64(ys[i])
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}
