package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Default backoff bounds of a Spool.
const (
	defaultMinBackoff = time.Second
	defaultMaxBackoff = time.Minute
)

// A Spool uploads the finished recordings ("<id>.cast") of one directory
// and deletes each only after its upload succeeded, so a recording survives
// proxy restarts and CA outages until the CA has it. The zero value with
// Dir and Upload set is ready to use; its fields must not change after the
// first method call.
//
// Uploads run one at a time in Run's goroutine. A recording the CA keeps
// refusing stays in Dir and is retried every MaxBackoff; nothing is ever
// dropped.
type Spool struct {
	// Dir is the spool directory the Recorders write to.
	Dir string
	// Upload sends one finished recording of size bytes, read from r. It
	// must be idempotent: after a crash between a successful upload and
	// the deletion, the CA may already have the recording. A returned
	// error is retried later.
	Upload func(ctx context.Context, id string, r io.Reader, size int64) error
	// Logger receives a line for each recovery, upload and failure; nil
	// discards them.
	Logger *slog.Logger
	// Clock gives the current time for retry schedules; nil means
	// time.Now.
	Clock func() time.Time
	// MinBackoff and MaxBackoff bound the delay before retrying a failed
	// upload: it doubles with each failure of that file, from MinBackoff
	// up to MaxBackoff, with random jitter of up to half. Zero means 1s
	// and 1m. Run also rescans Dir every MaxBackoff.
	MinBackoff, MaxBackoff time.Duration

	mu      sync.Mutex
	queue   map[string]*pending // by id
	wake    chan struct{}
	running bool
}

// pending is the upload schedule of one recording.
type pending struct {
	failures int
	due      time.Time
}

// Recover repairs what a crash left in Dir: every "<id>.cast.part" is cut
// after its last complete event line ("\n"-terminated, valid JSON) and
// renamed to "<id>.cast", ready for upload. A part file without a valid
// header line is moved to "<id>.cast.broken" (or "<id>.cast.broken.N" if
// that exists) and logged; it is never deleted.
//
// Recover must run at start-up, before any Recorder is created in Dir: it
// takes every part file for one a crash left behind, and would truncate
// and rename a recording still being written. Errors with single files are
// logged and returned together after the other files were handled.
func (s *Spool) Recover() error {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return fmt.Errorf("recorder: recovering %s: %w", s.Dir, err)
	}
	var errs []error
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), partSuffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		log := s.logger().With("recording", id)
		if err := ValidID(id); err != nil {
			log.Warn("ignoring a part file with an invalid name", "file", e.Name(), "err", err)
			continue
		}
		res, err := recoverPart(s.Dir, id)
		switch {
		case err != nil:
			log.Error("recovering a recording failed", "err", err)
			errs = append(errs, err)
		case res.broken != "":
			log.Error("recording left by a crash moved aside, not uploaded", "file", res.path, "reason", res.broken)
		default:
			log.Info("recovered a recording interrupted by a crash", "file", res.path, "cut_bytes", res.cut)
		}
	}
	return errors.Join(errs...)
}

// recovered says what recoverPart did with a part file.
type recovered struct {
	path   string // where the file is now
	cut    int64  // bytes cut from its end
	broken string // why it was moved aside instead; "" when it was not
}

// recoverPart cuts dir/<id>.cast.part after its last valid line and renames
// it to <id>.cast, or moves it aside when it has no valid header.
func recoverPart(dir, id string) (recovered, error) {
	part := filepath.Join(dir, id+partSuffix)
	n, size, err := truncateValid(part)
	if err != nil {
		return recovered{}, fmt.Errorf("recorder: recovering %s: %w", part, err)
	}
	final := filepath.Join(dir, id+castSuffix)
	why := "no valid asciicast header line"
	if n > 0 {
		_, err := os.Lstat(final)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return recovered{}, fmt.Errorf("recorder: %w", err)
		}
		if err != nil {
			if err := os.Rename(part, final); err != nil {
				return recovered{}, fmt.Errorf("recorder: %w", err)
			}
			return recovered{path: final, cut: size - n}, syncDirErr(dir)
		}
		why = "a finished recording with the same id exists"
	}
	path, err := moveAside(dir, id)
	if err != nil {
		return recovered{}, err
	}
	return recovered{path: path, broken: why}, syncDirErr(dir)
}

// truncateValid cuts the file at path after its valid prefix (see
// validPrefix) and syncs it. It returns the new length, 0 when the file has
// no valid header (it is left untouched then), and the old one.
func truncateValid(path string) (n, size int64, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	n, ok, err := validPrefix(f)
	if err != nil || !ok {
		return 0, fi.Size(), err
	}
	if n < fi.Size() {
		if err := f.Truncate(n); err != nil {
			return 0, 0, err
		}
	}
	if err := f.Sync(); err != nil {
		return 0, 0, err
	}
	return n, fi.Size(), f.Close()
}

// moveAside renames dir/<id>.cast.part to the first free name of
// <id>.cast.broken, <id>.cast.broken.1, ... and returns it.
func moveAside(dir, id string) (string, error) {
	part := filepath.Join(dir, id+partSuffix)
	for i := 0; i < 1000; i++ {
		name := id + brokenSuffix
		if i > 0 {
			name += "." + strconv.Itoa(i)
		}
		path := filepath.Join(dir, name)
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.Rename(part, path); err != nil {
			return "", fmt.Errorf("recorder: %w", err)
		}
		return path, nil
	}
	return "", fmt.Errorf("recorder: %s: no free %s name", part, brokenSuffix)
}

func syncDirErr(dir string) error {
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("recorder: %s: syncing directory: %w", dir, err)
	}
	return nil
}

// Notify tells the spool that the recording id was just closed, so Run
// uploads it now rather than at the next rescan. It never blocks and may be
// called before Run starts.
func (s *Spool) Notify(id string) {
	if err := ValidID(id); err != nil {
		s.logger().Warn("notified of a recording with an invalid id", "err", err)
		return
	}
	s.mu.Lock()
	s.init()
	p := s.queue[id]
	if p == nil {
		p = new(pending)
		s.queue[id] = p
	}
	p.due = s.now()
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Pending returns the ids of the recordings waiting for upload, sorted.
func (s *Spool) Pending() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.queue))
	for id := range s.queue {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Run uploads every finished recording in Dir, those there at start, those
// passed to Notify and those a rescan every MaxBackoff finds, until ctx is
// done; it returns nil then. A file is deleted only after Upload returned
// nil for it; a failed upload is retried after a backoff that grows with
// each failure of that file. Run returns an error without uploading
// anything when Upload is nil, Dir cannot be read or Run is already running.
func (s *Spool) Run(ctx context.Context) error {
	if s.Upload == nil {
		return errors.New("recorder: spool has no Upload function")
	}
	s.mu.Lock()
	s.init()
	if s.running {
		s.mu.Unlock()
		return errors.New("recorder: spool is already running")
	}
	s.running = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()

	if err := s.scan(); err != nil {
		return err
	}
	_, maxB := s.backoffBounds()
	rescan := time.NewTicker(maxB)
	defer rescan.Stop()
	for {
		s.uploadDue(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !s.wait(ctx, rescan.C) {
			return nil
		}
	}
}

// wait returns when a recording is due, Notify was called or the rescan
// ticker ticked (after rescanning), and reports false when ctx is done.
func (s *Spool) wait(ctx context.Context, rescan <-chan time.Time) bool {
	var timeout <-chan time.Time
	if d, ok := s.nextDue(); ok {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-s.wake:
	case <-timeout:
	case <-rescan:
		if err := s.scan(); err != nil {
			s.logger().Error("rescanning the spool failed", "err", err)
		}
	}
	return true
}

// scan queues every finished recording in Dir not queued yet.
func (s *Spool) scan() error {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return fmt.Errorf("recorder: reading spool %s: %w", s.Dir, err)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), castSuffix)
		if !ok || !e.Type().IsRegular() || ValidID(id) != nil {
			continue
		}
		if s.queue[id] == nil {
			s.queue[id] = &pending{due: now}
		}
	}
	return nil
}

// uploadDue uploads the recordings that are due, earliest first, until
// none is or ctx is done.
func (s *Spool) uploadDue(ctx context.Context) {
	for ctx.Err() == nil {
		id, ok := s.takeDue()
		if !ok {
			return
		}
		s.uploadOne(ctx, id)
	}
}

// takeDue returns the queued recording due first, if one is due now.
func (s *Spool) takeDue() (string, bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var best string
	var bestDue time.Time
	for id, p := range s.queue {
		if p.due.After(now) {
			continue
		}
		if best == "" || p.due.Before(bestDue) || p.due.Equal(bestDue) && id < best {
			best, bestDue = id, p.due
		}
	}
	return best, best != ""
}

// nextDue returns how long until the next queued recording is due.
func (s *Spool) nextDue() (time.Duration, bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	for _, p := range s.queue {
		if next.IsZero() || p.due.Before(next) {
			next = p.due
		}
	}
	return max(next.Sub(now), 0), !next.IsZero()
}

// uploadOne uploads one recording and deletes it, or schedules a retry.
func (s *Spool) uploadOne(ctx context.Context, id string) {
	log := s.logger().With("recording", id)
	path := filepath.Join(s.Dir, id+castSuffix)
	size, err := s.uploadFile(ctx, id, path)
	if errors.Is(err, fs.ErrNotExist) {
		s.forget(id) // Removed meanwhile, or a Notify for a file that never came.
		return
	}
	if err != nil {
		if ctx.Err() != nil {
			return // Shutting down: not the file's failure.
		}
		delay := s.failed(id)
		log.Warn("uploading a recording failed; will retry", "err", err, "retry_in", delay.Round(time.Millisecond))
		return
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		delay := s.failed(id)
		log.Error("deleting an uploaded recording failed; will upload it again", "err", err, "retry_in", delay.Round(time.Millisecond))
		return
	}
	s.forget(id)
	log.Info("uploaded a recording", "bytes", size)
}

// uploadFile passes the file at path to Upload.
func (s *Spool) uploadFile(ctx context.Context, id, path string) (int64, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("recorder: %s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err = f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), s.Upload(ctx, id, io.NewSectionReader(f, 0, fi.Size()), fi.Size())
}

// failed records a failed attempt for id and returns the delay before the
// next.
func (s *Spool) failed(id string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.queue[id]
	if p == nil {
		p = new(pending)
		s.queue[id] = p
	}
	p.failures++
	d := s.backoff(p.failures)
	p.due = s.now().Add(d)
	return d
}

func (s *Spool) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.queue, id)
}

// backoff returns the delay after the given number of consecutive
// failures: MinBackoff doubled for each failure after the first, at most
// MaxBackoff, less a random jitter of up to half.
func (s *Spool) backoff(failures int) time.Duration {
	minB, maxB := s.backoffBounds()
	d := minB
	for i := 1; i < failures && d < maxB; i++ {
		d *= 2
	}
	d = min(d, maxB)
	return d - rand.N(d/2+1)
}

func (s *Spool) backoffBounds() (minB, maxB time.Duration) {
	minB, maxB = s.MinBackoff, s.MaxBackoff
	if minB <= 0 {
		minB = defaultMinBackoff
	}
	if maxB <= 0 {
		maxB = defaultMaxBackoff
	}
	return minB, max(minB, maxB)
}

// init makes the queue; s.mu must be held.
func (s *Spool) init() {
	if s.queue == nil {
		s.queue = make(map[string]*pending)
		s.wake = make(chan struct{}, 1)
	}
}

func (s *Spool) now() time.Time {
	if s.Clock != nil {
		return s.Clock()
	}
	return time.Now()
}

func (s *Spool) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}
