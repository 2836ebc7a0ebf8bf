package ca

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// The audit log lives under "audit/<unix nanoseconds, 20 digits>-<random>",
// so that keys sort by time. Every event is durable before the action it
// records is reported done.

func (a *Authority) newEvent(typ string, now time.Time) api.AuditEvent {
	var b [4]byte
	_, _ = io.ReadFull(a.rand, b[:])
	return api.AuditEvent{
		ID:   fmt.Sprintf("%020d-%s", now.UnixNano(), hex.EncodeToString(b[:])),
		Time: now.UTC(),
		Type: typ,
	}
}

func (a *Authority) writeEvent(ctx context.Context, ev api.AuditEvent) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if _, err := a.store.Create(ctx, "audit/"+ev.ID, b); err != nil {
		return fmt.Errorf("ca: writing audit event %s: %w", ev.Type, err)
	}
	return nil
}

func (a *Authority) auditAdmin(ctx context.Context, typ, user, actor string, fields map[string]string) error {
	ev := a.newEvent(typ, a.now())
	ev.User, ev.Actor, ev.Success, ev.Fields = user, actor, true, fields
	return a.writeEvent(ctx, ev)
}

// auditLogin records a sign-in attempt and returns the write error. For
// failed attempts callers log it and still refuse; a success that cannot be
// recorded is refused.
func (a *Authority) auditLogin(ctx context.Context, user, remote string, ok bool, reason string, now time.Time) error {
	ev := a.newEvent("user.login", now)
	ev.User, ev.Actor, ev.Success, ev.Remote = user, user, ok, remote
	if ValidateUserName(user) != nil {
		ev.User, ev.Actor = "", ""
		ev.Fields = map[string]string{"user_given": fmt.Sprintf("%.64q", user)}
	}
	if reason != "" {
		if ev.Fields == nil {
			ev.Fields = map[string]string{}
		}
		ev.Fields["reason"] = reason
	}
	err := a.writeEvent(ctx, ev)
	if err != nil {
		a.log.Error("audit write failed", "err", err, "type", ev.Type)
	}
	return err
}

// AuditFilter selects audit events.
type AuditFilter struct {
	User, Type string
	Since      time.Time
	Limit      int // newest N; zero means 1000
}

// Audit lists events, oldest first.
func (a *Authority) Audit(ctx context.Context, f AuditFilter) ([]api.AuditEvent, error) {
	items, _, err := a.store.List(ctx, "audit/")
	if err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	var out []api.AuditEvent
	for _, it := range slices.Backward(items) {
		var ev api.AuditEvent
		if err := json.Unmarshal(it.Value, &ev); err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		if !f.Since.IsZero() && ev.Time.Before(f.Since) {
			break
		}
		if (f.User == "" || ev.User == f.User) && (f.Type == "" || ev.Type == f.Type) {
			out = append(out, ev)
			if len(out) == limit {
				break
			}
		}
	}
	slices.Reverse(out)
	return out, nil
}

func isStoreNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
