package ca

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/opensshca/suite/ca/store"
)

// Sweep deletes expired sign-in sessions, tokens and enrollment links. They
// are refused once expired anyway; sweeping keeps the store from growing.
// Issuance records and audit events are never swept.
func (a *Authority) Sweep(ctx context.Context) (int, error) {
	now := a.now()
	n := 0
	for _, prefix := range []string{"signins/", "sessions/", "tokens/", "enroll/", "revoked/"} {
		items, _, err := a.store.List(ctx, prefix)
		if err != nil {
			return n, err
		}
		for _, it := range items {
			var rec struct {
				Expires time.Time `json:"expires"`
			}
			if err := json.Unmarshal(it.Value, &rec); err != nil || rec.Expires.IsZero() || now.Before(rec.Expires) {
				continue
			}
			if err := a.store.Delete(ctx, it.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// RunSweeper calls Sweep every interval until ctx is done.
func (a *Authority) RunSweeper(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := a.Sweep(ctx); err != nil && ctx.Err() == nil {
				a.log.Error("sweeping expired records", "err", err)
			} else if n > 0 {
				a.log.Info("swept expired records", "count", n)
			}
		}
	}
}
