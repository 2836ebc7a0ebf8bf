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
	"github.com/opensshca/suite/internal/metrics"
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
		a.metrics.auditErrors.Inc()
		return fmt.Errorf("ca: writing audit event %s: %w", ev.Type, err)
	}
	a.metrics.events.WithLabelValues(metricType(ev), metrics.Result(ev.Success)).Inc()
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

// Audit lists events, oldest first: the audit log proper and the
// issuance records, which appear as "cert.issue" events.
func (a *Authority) Audit(ctx context.Context, f AuditFilter) ([]api.AuditEvent, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	var all []api.AuditEvent
	if f.Type != "cert.issue" {
		evs, err := a.listEvents(ctx, "audit/", func(key string, b []byte) (api.AuditEvent, error) {
			var ev api.AuditEvent
			return ev, json.Unmarshal(b, &ev)
		})
		if err != nil {
			return nil, err
		}
		all = evs
	}
	if f.Type == "" || f.Type == "cert.issue" {
		evs, err := a.listEvents(ctx, "certs/", func(key string, b []byte) (api.AuditEvent, error) {
			var rec api.IssuedCert
			err := json.Unmarshal(b, &rec)
			return issuedEvent(key, rec), err
		})
		if err != nil {
			return nil, err
		}
		all = append(all, evs...)
	}
	slices.SortStableFunc(all, func(x, y api.AuditEvent) int { return x.Time.Compare(y.Time) })
	var out []api.AuditEvent
	for _, ev := range slices.Backward(all) {
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

func (a *Authority) listEvents(ctx context.Context, prefix string, decode func(key string, b []byte) (api.AuditEvent, error)) ([]api.AuditEvent, error) {
	items, _, err := a.store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]api.AuditEvent, 0, len(items))
	for _, it := range items {
		ev, err := decode(it.Key, it.Value)
		if err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

func isStoreNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
