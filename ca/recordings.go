package ca

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
	"github.com/opensshca/suite/internal/atomicfile"
)

// Session recordings: proxies upload each finished asciicast v2 file once
// (retrying until the CA has it). The CA keeps the file in
// RecordingsDir/<id>.cast (0600, written atomically; by default
// DataDir/recordings, which replicas on one store must replace with a
// directory on storage they all mount) and a metadata
// record under "recordings/<id>" written after the file is in place, so
// a listed recording always has its file. An upload of an id the CA
// already has succeeds without rewriting it.

// MaxRecordingBytes caps one uploaded recording.
const MaxRecordingBytes = 4 << 30

// recordingIDRE is what a recording id may look like (the proxy's
// recorder makes "<session id>-<channel>"); no path separators or dots
// at the start, so an id can never leave the recordings directory.
var recordingIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

// ValidateRecordingID checks a recording id.
func ValidateRecordingID(id string) error {
	if !recordingIDRE.MatchString(id) {
		return invalidf("recording id %.80q is not valid: use letters, digits, '_' and '-', at most 128", id)
	}
	return nil
}

func recordingKey(id string) string { return "recordings/" + id }

func (a *Authority) recordingsDir() string {
	if a.cfg.RecordingsDir != "" {
		return a.cfg.RecordingsDir
	}
	return filepath.Join(a.cfg.DataDir, "recordings")
}

func (a *Authority) recordingPath(id string) string {
	return filepath.Join(a.recordingsDir(), id+".cast")
}

// castHeader is the part of an asciicast v2 header the CA indexes.
type castHeader struct {
	Version   int    `json:"version"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	Timestamp int64  `json:"timestamp"`
	User      string `json:"user"`
	Login     string `json:"login"`
	Node      string `json:"node"`
	SessionID string `json:"session_id"`
}

// StoreRecording stores an uploaded recording.
func (a *Authority) StoreRecording(ctx context.Context, p *authenticatedProxy, id string, body io.Reader) (api.Recording, error) {
	if err := ValidateRecordingID(id); err != nil {
		return api.Recording{}, err
	}
	if it, err := a.store.Get(ctx, recordingKey(id)); err == nil {
		var rec api.Recording
		if err := json.Unmarshal(it.Value, &rec); err == nil {
			return rec, nil // already stored: the upload is idempotent
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return api.Recording{}, err
	}
	if err := os.MkdirAll(a.recordingsDir(), 0o700); err != nil {
		return api.Recording{}, fmt.Errorf("ca: recordings directory: %w", err)
	}
	br := bufio.NewReaderSize(io.LimitReader(body, MaxRecordingBytes+1), 64<<10)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return api.Recording{}, invalidf("recording %s has no complete asciicast header line", id)
	}
	var h castHeader
	if err := json.Unmarshal(line, &h); err != nil || h.Version != 2 {
		return api.Recording{}, invalidf("recording %s does not start with an asciicast v2 header", id)
	}
	// The record is written after the file: a start time it cannot hold
	// (JSON times have four-digit years) must be refused before.
	if y := time.Unix(h.Timestamp, 0).UTC().Year(); y < 0 || y > 9999 {
		return api.Recording{}, invalidf("recording %s: header timestamp %d is out of range", id, h.Timestamp)
	}
	head := append([]byte(nil), line...)
	path := a.recordingPath(id)
	n, err := atomicfile.WriteFrom(path, &capped{r: io.MultiReader(bytes.NewReader(head), br), max: MaxRecordingBytes}, 0o600)
	if errors.Is(err, errTooLarge) {
		return api.Recording{}, invalidf("recording %s is larger than %d bytes", id, int64(MaxRecordingBytes))
	}
	if err != nil {
		return api.Recording{}, fmt.Errorf("ca: storing recording %s: %w", id, err)
	}
	rec := api.Recording{
		ID: id, SessionID: h.SessionID, User: h.User, Login: h.Login, Node: h.Node,
		Proxy: p.rec.Name, Started: time.Unix(h.Timestamp, 0).UTC(), Size: n, Stored: a.now().UTC(),
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return api.Recording{}, err
	}
	if _, err := a.store.Create(ctx, recordingKey(id), b); err != nil && !errors.Is(err, store.ErrExists) {
		return api.Recording{}, err
	}
	ev := a.newEvent("recording.stored", a.now())
	ev.User, ev.Actor, ev.Success = rec.User, "proxy:"+p.rec.Name, true
	if ValidateUserName(ev.User) != nil {
		ev.User = ""
	}
	ev.Fields = map[string]string{"recording": id, "size": fmt.Sprint(n)}
	if err := a.writeEvent(ctx, ev); err != nil {
		a.log.Error("audit write failed", "err", err, "type", ev.Type)
	}
	return rec, nil
}

var errTooLarge = errors.New("too large")

// capped fails once more than max bytes were read.
type capped struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *capped) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, errTooLarge
	}
	return n, err
}

// Recordings lists stored recordings, oldest first.
func (a *Authority) Recordings(ctx context.Context) ([]api.Recording, error) {
	items, _, err := a.store.List(ctx, "recordings/")
	if err != nil {
		return nil, err
	}
	out := []api.Recording{}
	for _, it := range items {
		var r api.Recording
		if err := json.Unmarshal(it.Value, &r); err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

// OpenRecording opens a stored recording's asciicast file.
func (a *Authority) OpenRecording(ctx context.Context, id string) (*os.File, error) {
	if err := ValidateRecordingID(id); err != nil {
		return nil, err
	}
	if _, err := a.store.Get(ctx, recordingKey(id)); errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("ca: recording %q: %w", id, ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	f, err := os.Open(a.recordingPath(id))
	if err != nil {
		return nil, fmt.Errorf("ca: recording %s is listed but its file cannot be opened (was the data dir restored without recordings/, or do replicas sharing a store not share --recordings-dir?): %w", id, err)
	}
	return f, nil
}
