package bench

import (
	"context"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// op is one unit of work of a load phase: one certificate issued by worker
// w. It returns an error for a failed issuance.
type op func(ctx context.Context, w int) error

// tally is what a load phase measured.
type tally struct {
	ok, errs int
	elapsed  time.Duration
	lat      []time.Duration // one per successful op
	cpu      time.Duration   // process (and children) CPU time spent
	busy     time.Duration   // CPU time spent by every process on the machine
	firstErr error
}

// worker keeps its own latencies and counts, merged at the end, so that the
// hot loop shares nothing but two atomic flags.
type worker struct {
	ok, errs int
	lat      []time.Duration
	last     time.Time // when the latest op returned
	firstErr error
}

func (w *worker) record(start time.Time, err error) {
	w.last = time.Now()
	if err != nil {
		w.errs++
		if w.firstErr == nil {
			w.firstErr = err
		}
		return
	}
	w.ok++
	w.lat = append(w.lat, w.last.Sub(start))
}

func merge(ws []*worker) tally {
	var t tally
	for _, w := range ws {
		t.ok += w.ok
		t.errs += w.errs
		t.lat = append(t.lat, w.lat...)
		if t.firstErr == nil {
			t.firstErr = w.firstErr
		}
	}
	return t
}

var clientLabels = pprof.Labels("side", "client")

// closedLoop runs n workers that each call fn back to back. Nothing is
// counted during warmup (connections open, caches fill); then the window
// of length d is measured. Latency is from call to return; cpu meters the
// CPU time the row counts.
func closedLoop(ctx context.Context, cpu func() time.Duration, n int, warmup, d time.Duration, fn op) tally {
	var measuring, stop atomic.Bool
	ws := make([]*worker, n)
	var wg sync.WaitGroup
	for i := range n {
		w := &worker{}
		ws[i] = w
		wg.Go(func() {
			// Label the load generator's goroutines (and, by inheritance,
			// its HTTP transport's) so a CPU profile (-cpuprofile, then
			// pprof -tagfocus side=client) separates client from server.
			pprof.Do(ctx, clientLabels, func(ctx context.Context) {
				for !stop.Load() && ctx.Err() == nil {
					start := time.Now()
					err := fn(ctx, i)
					if measuring.Load() {
						w.record(start, err)
					}
				}
			})
		})
	}
	sleep(ctx, warmup)
	cpu0, busy0 := cpu(), machineBusy()
	start := time.Now()
	measuring.Store(true)
	sleep(ctx, d)
	measuring.Store(false)
	elapsed := time.Since(start)
	used, busy := cpu()-cpu0, machineBusy()-busy0
	stop.Store(true)
	wg.Wait()
	t := merge(ws)
	t.elapsed, t.cpu, t.busy = elapsed, used, busy
	return t
}

// openLoop offers rate requests per second for d, whatever the server does:
// a pacer schedules request i at start + i/rate and n workers (the
// connection pool) take them in order. A request's latency runs from its
// scheduled time, so time spent queued behind a slow server counts, as a
// user would see it (no coordinated omission). The achieved rate is the
// successful requests over the time from start to the last completion.
func openLoop(ctx context.Context, cpu func() time.Duration, n, rate int, d time.Duration, fn op) tally {
	total := int(float64(rate) * d.Seconds())
	due := make(chan time.Time, total)
	ws := make([]*worker, n)
	var wg sync.WaitGroup
	for i := range n {
		w := &worker{}
		ws[i] = w
		wg.Go(func() {
			for at := range due {
				w.record(at, fn(ctx, i))
			}
		})
	}
	cpu0, busy0 := cpu(), machineBusy()
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	for sent := 0; sent < total && ctx.Err() == nil; {
		for now := time.Now(); sent < total && now.Sub(start) >= time.Duration(sent)*interval; sent++ {
			due <- start.Add(time.Duration(sent) * interval)
		}
		time.Sleep(interval / 2)
	}
	close(due)
	wg.Wait()
	t := merge(ws)
	t.cpu, t.busy = cpu()-cpu0, machineBusy()-busy0
	for _, w := range ws {
		t.elapsed = max(t.elapsed, w.last.Sub(start))
	}
	return t
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// latency summarises t's latencies.
func (t *tally) latency() Latency {
	s := slices.Clone(t.lat)
	slices.Sort(s)
	if len(s) == 0 {
		return Latency{}
	}
	return Latency{P50: percentile(s, 50), P99: percentile(s, 99), Max: s[len(s)-1]}
}
