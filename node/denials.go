package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/nodedir"
)

// maxDenialBatch is how many denials go to the CA in one request.
const maxDenialBatch = 500

// reportDenials sends teleport-authkeys' denial log to the CA's audit log
// every interval until ctx ends.
func (r *Runner) reportDenials(ctx context.Context) {
	t := time.NewTicker(r.cfg.AuditInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.sendDenials(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Log.Warn("sending login denials to the CA failed; retrying (they stay in the denial log)", "err", err)
		}
	}
}

// sendDenials moves the denial log aside (teleport-authkeys starts a new
// one at its next denial), sends what it holds and removes it once the CA
// has it. A log moved aside but not yet sent is sent first.
func (r *Runner) sendDenials(ctx context.Context) error {
	sending := r.cfg.Dir.Path(nodedir.DenialsSending)
	if _, err := os.Stat(sending); errors.Is(err, os.ErrNotExist) {
		fi, err := os.Stat(r.cfg.Dir.Path(nodedir.Denials))
		if err != nil || fi.Size() == 0 {
			return nil
		}
		if err := os.Rename(r.cfg.Dir.Path(nodedir.Denials), sending); err != nil {
			return err
		}
		// A teleport-authkeys that opened the log before the rename
		// writes its one line within milliseconds.
		time.Sleep(200 * time.Millisecond)
	}
	f, err := os.Open(sending)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(io.LimitReader(f, 4<<20))
	f.Close()
	if err != nil {
		return err
	}
	var evs []api.NodeDenial
	bad := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 64<<10)
	for sc.Scan() {
		var d api.NodeDenial
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil || d.ID == "" {
			bad++
			continue
		}
		evs = append(evs, d)
	}
	if bad > 0 {
		r.cfg.Log.Warn("skipped damaged lines in the denial log", "lines", bad)
	}
	for len(evs) > 0 {
		n := min(len(evs), maxDenialBatch)
		if err := r.client().NodeAudit(ctx, evs[:n]); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return os.Remove(sending)
}
