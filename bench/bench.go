// Package bench measures how fast the suite issues OpenSSH user
// certificates, from the bare signature up to the HTTPS API, and compares
// it with signing by exec'ing stock ssh-keygen (docs/BENCHMARKS.md).
//
// One Run measures, on one machine and in one process:
//
//  1. the raw rate of ssh.Certificate.SignCert + Marshal with the
//     authority's ed25519 user CA key: the ceiling for issuance;
//  2. (*ca.Authority).IssueUserCert, the whole pipeline with its durable
//     issuance record and audit event, from concurrent callers;
//  3. the HTTPS API (POST /v1/certs/user with a bearer sign-in session)
//     served by ca.Server on a loopback listener, from N keep-alive
//     HTTPS clients;
//  4. the latency of that API under a fixed offered load (open loop);
//  5. ssh-keygen -s, one exec per certificate;
//  6. the latency of sign-in (password + TOTP, POST /v1/login) under a
//     fixed offered load.
//
// Everything runs against a fresh authority in a temporary data dir that
// Run removes. Its store is bbolt in that dir (the default) or, with
// Options.Storage "etcd", a throw-away single-member etcd server the
// bench starts there (package ca/store/storetest's Launch) and opens with
// store.OpenEtcd; WriteComparison prints runs on both side by side. The load generator shares the machine with the authority,
// so its own CPU time (TLS, JSON) is part of what rows 3 and 4 measure.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"
)

// Phase names, for Options.Phases.
const (
	PhaseRaw     = "raw"
	PhaseInProc  = "inproc"
	PhaseAPI     = "api"
	PhaseFloor   = "floor"
	PhaseLatency = "latency"
	PhaseKeygen  = "keygen"
	PhaseSignIn  = "signin"
)

// AllPhases lists every phase in the order Run measures them.
var AllPhases = []string{PhaseRaw, PhaseInProc, PhaseAPI, PhaseFloor, PhaseLatency, PhaseKeygen, PhaseSignIn}

// StoragePhases are the phases whose figures depend on the store: the
// rows a comparison of backends needs.
var StoragePhases = []string{PhaseInProc, PhaseAPI, PhaseLatency, PhaseSignIn}

// AimRatio is the aim for the API: at least this fraction of the raw
// signing rate.
const AimRatio = 0.25

// Options configure Run. The zero value of each field means the default in
// parentheses.
type Options struct {
	// Dir is where the temporary data dir is made (os.TempDir()). Its
	// file system decides what an fsync costs.
	Dir string
	// Duration of each closed-loop phase, after its warm-up (5s).
	Duration time.Duration
	// Warmup before each closed-loop phase, not counted (Duration/5, at
	// most 500ms).
	Warmup time.Duration
	// Callers of IssueUserCert in phase 2 (64).
	Callers int
	// Clients are the numbers of concurrent HTTPS clients of phase 3, one
	// row each ({32, 64}). Phase 4 uses the largest.
	Clients []int
	// Rate is phase 4's offered load in requests per second (1000).
	Rate int
	// LatencyDuration is how long phase 4 offers its load (8s).
	LatencyDuration time.Duration
	// KeygenDuration of each ssh-keygen row (2.5s).
	KeygenDuration time.Duration
	// SignInRate is phase 6's offered load in sign-ins per second (50),
	// SignInDuration how long it offers it (4s), and SignInClients the
	// keep-alive connections it uses (8). Each sign-in is a user of its
	// own, made beforehand: a TOTP code is accepted once per user and
	// time step.
	SignInRate     int
	SignInDuration time.Duration
	SignInClients  int
	// Phases to run (AllPhases). Phase 1 is needed for the "vs raw"
	// column.
	Phases []string
	// Storage is the authority's store: StorageBolt ("bolt", the
	// default) or StorageEtcd ("etcd": a single-member etcd server that
	// Run starts from /usr/bin/etcd, with its data in the temporary dir).
	Storage string
	// Progress receives a line as each phase starts; nil discards.
	Progress io.Writer
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Duration, 5*time.Second)
	def(&o.Warmup, min(o.Duration/5, 500*time.Millisecond))
	def(&o.LatencyDuration, 8*time.Second)
	def(&o.KeygenDuration, 2500*time.Millisecond)
	if o.Callers <= 0 {
		o.Callers = 64
	}
	if len(o.Clients) == 0 {
		o.Clients = []int{32, 64}
	}
	if o.Rate <= 0 {
		o.Rate = 1000
	}
	def(&o.SignInDuration, 4*time.Second)
	if o.SignInRate <= 0 {
		o.SignInRate = 50
	}
	if o.SignInClients <= 0 {
		o.SignInClients = 8
	}
	if o.Storage == "" {
		o.Storage = StorageBolt
	}
	if len(o.Phases) == 0 {
		o.Phases = AllPhases
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

func (o *Options) check() error {
	for _, p := range o.Phases {
		if !slices.Contains(AllPhases, p) {
			return fmt.Errorf("bench: unknown phase %q (want some of %v)", p, AllPhases)
		}
	}
	for _, n := range o.Clients {
		if n < 1 || n > 4096 {
			return fmt.Errorf("bench: %d clients is outside 1..4096", n)
		}
	}
	if o.Callers > 4096 || o.Rate > 1_000_000 {
		return errors.New("bench: callers must be at most 4096 and rate at most 1000000")
	}
	if !slices.Contains(AllStorage, o.Storage) {
		return fmt.Errorf("bench: unknown storage %q (want one of %v)", o.Storage, AllStorage)
	}
	if o.SignInClients > 4096 || o.signIns() > maxSignIns {
		return fmt.Errorf("bench: the sign-in row needs at most %d sign-ins (rate x duration) and 4096 clients", maxSignIns)
	}
	return nil
}

// maxSignIns bounds the users made for the sign-in row.
const maxSignIns = 20_000

// signIns is how many sign-ins phase 6 offers, each by a user of its own.
func (o *Options) signIns() int {
	return int(float64(o.SignInRate)*o.SignInDuration.Seconds() + 0.5)
}

func (o *Options) has(phase string) bool { return slices.Contains(o.Phases, phase) }

// Latency summarises the latencies of a row's successful requests.
type Latency struct {
	P50, P99, Max time.Duration
}

// Row is one line of the table.
type Row struct {
	// ID is the row's number in the table ("1a", "3b").
	ID string
	// Name says what was measured.
	Name string
	// Concurrency is the number of goroutines, clients or processes.
	Concurrency int
	// Offered is the offered load in requests/s for an open-loop row;
	// zero for closed-loop rows.
	Offered int
	// Certs issued without error and Errors, within the measured window.
	Certs, Errors int
	// Elapsed is the measured window.
	Elapsed time.Duration
	// CPU is the process's CPU time (user + system, ssh-keygen children
	// included) over the window.
	CPU time.Duration
	// Others is the share of the machine's CPUs that other processes
	// used during the window: above a few percent, the row is disturbed.
	Others float64
	// Latency of the successful requests: from call to return for
	// closed-loop rows, from scheduled send time for open-loop rows.
	Latency Latency
	// FirstError is the first error seen, if any.
	FirstError string
	// Skipped, when set, says why the row was not measured.
	Skipped string
	// VsRaw is Rate over the raw parallel signing rate (row 1b); zero
	// when that was not measured.
	VsRaw float64
	// API marks the rows the AimRatio applies to.
	API bool
	// OpsPerCommit is the store's group-commit batch size over the row
	// (write ops per fsync'd transaction); zero for rows without writes.
	OpsPerCommit float64
}

// Rate is the row's certificates per second.
func (r Row) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Certs) / r.Elapsed.Seconds()
}

// CPUPerCert is the CPU time spent per certificate.
func (r Row) CPUPerCert() time.Duration {
	if r.Certs == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Certs)
}

// Report is the result of Run.
type Report struct {
	Started time.Time
	Machine Machine
	Options Options
	// Argon2 describes the password hashing of the bench users.
	Argon2 string
	// Transport is what the HTTPS clients negotiated ("TLS 1.3, HTTP/1.1").
	Transport string
	// Storage describes the authority's store.
	Storage string
	// DefaultArgon2 is the time of one argon2id hash with
	// ca.DefaultArgon2, measured with the sign-in row: what a real
	// password hash adds to each sign-in.
	DefaultArgon2 time.Duration
	Rows          []Row
}

// Row returns the row with the given ID.
func (r *Report) Row(id string) (Row, bool) {
	for _, row := range r.Rows {
		if row.ID == id {
			return row, true
		}
	}
	return Row{}, false
}

// Aim returns the fastest closed-loop API row and whether it reaches
// AimRatio of the raw rate. ok is false when there is nothing to compare.
func (r *Report) Aim() (best Row, met, ok bool) {
	for _, row := range r.Rows {
		if row.API && row.Offered == 0 && row.Skipped == "" && row.VsRaw > best.VsRaw {
			best, ok = row, true
		}
	}
	return best, ok && best.VsRaw >= AimRatio, ok
}

// Run measures the phases opts selects and returns the report. It stops
// early, with an error, when ctx is done.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.setDefaults()
	if err := opts.check(); err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now(), Options: opts, Argon2: benchArgon2String()}
	e, err := newEnv(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer e.close()
	rep.Machine = probeMachine(e.dataDir)
	rep.Transport, rep.Storage = e.proto, e.st.desc

	for _, ph := range []struct {
		name string
		run  func(context.Context) []Row
	}{
		{PhaseRaw, e.rawPhase},
		{PhaseInProc, e.inProcPhase},
		{PhaseAPI, e.apiPhase},
		{PhaseFloor, e.floorPhase},
		{PhaseLatency, e.latencyPhase},
		{PhaseKeygen, e.keygenPhase},
		{PhaseSignIn, e.signInPhase},
	} {
		if !opts.has(ph.name) {
			continue
		}
		rep.Rows = append(rep.Rows, ph.run(ctx)...)
		if ph.name == PhaseSignIn {
			rep.DefaultArgon2 = defaultArgon2Time()
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		runtime.GC() // start the next phase without the last one's garbage
	}
	if raw, ok := rep.Row("1b"); ok {
		rep.RelativeTo(raw)
	}
	return rep, nil
}

// RelativeTo sets every row's VsRaw against raw, the raw parallel signing
// row (1b), which may come from another report of the same machine.
func (r *Report) RelativeTo(raw Row) {
	if raw.Rate() <= 0 {
		return
	}
	for i := range r.Rows {
		r.Rows[i].VsRaw = r.Rows[i].Rate() / raw.Rate()
	}
}

// row turns a tally into a row.
func row(id, name string, conc int, t tally) Row {
	r := Row{
		ID: id, Name: name, Concurrency: conc,
		Certs: t.ok, Errors: t.errs, Elapsed: t.elapsed, CPU: t.cpu,
		Latency: t.latency(),
	}
	if total := t.elapsed.Seconds() * float64(runtime.NumCPU()); total > 0 {
		r.Others = max(0, (t.busy-t.cpu).Seconds()/total)
	}
	if t.firstErr != nil {
		r.FirstError = t.firstErr.Error()
	}
	return r
}
