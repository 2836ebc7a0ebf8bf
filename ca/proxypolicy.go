package ca

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// A proxy follows the whole login policy (users, roles, nodes, revoked
// serials, proxies) with the same long poll nodes use, so it decides
// every login locally and cuts off a locked or removed user's sessions
// within a round trip of the change.

// ProxyPolicy waits until the policy differs from the one whose hash the
// proxy holds, or until wait passes, and returns the current policy.
func (a *Authority) ProxyPolicy(ctx context.Context, p *authenticatedProxy, have string, wait time.Duration, remote string) (api.ProxyPolicy, error) {
	a.touchProxy(ctx, p, remote, a.now())
	return longPoll(ctx, a, have, wait, func() (api.ProxyPolicy, string, error) {
		pol, err := a.buildProxyPolicy(ctx)
		return pol, pol.Hash, err
	})
}

// touchProxy records when a proxy was last seen (at most every
// touchNodeEvery unless its address changed).
func (a *Authority) touchProxy(ctx context.Context, p *authenticatedProxy, remote string, now time.Time) {
	if p.rec.Remote == remote && now.Sub(p.rec.LastSeen) < touchNodeEvery {
		return
	}
	rec := p.rec
	rec.LastSeen, rec.Remote = now.UTC(), remote
	if b, err := json.Marshal(rec); err == nil {
		_, _ = a.store.CompareAndSwap(ctx, proxyKey(rec.Name), p.rev, b)
	}
}

func (a *Authority) buildProxyPolicy(ctx context.Context) (api.ProxyPolicy, error) {
	info := a.Info()
	pol := api.ProxyPolicy{
		RecordingMode: info.RecordingMode, UserCA: info.UserCA, HostCA: info.HostCA, SessionCA: info.SessionCA,
		Users: []api.ProxyUser{}, Roles: []api.Role{}, Nodes: []api.ProxyNode{}, Proxies: []api.ProxyInfo{},
	}
	now := a.now()
	users, _, err := a.store.List(ctx, "users/")
	if err != nil {
		return pol, err
	}
	for _, it := range users {
		u, err := decodeItem[userRecord](&a.decoded, it)
		if err != nil {
			return pol, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		if u.Pending {
			continue
		}
		pol.Users = append(pol.Users, api.ProxyUser{Name: u.Name, Roles: slices.Clone(u.Roles), Locked: u.locked(now)})
	}
	roles, err := a.rolesByName(ctx)
	if err != nil {
		return pol, err
	}
	for _, r := range roles {
		pol.Roles = append(pol.Roles, r)
	}
	sort.Slice(pol.Roles, func(i, j int) bool { return pol.Roles[i].Name < pol.Roles[j].Name })
	nodes, _, err := a.store.List(ctx, "nodes/")
	if err != nil {
		return pol, err
	}
	for _, it := range nodes {
		n, err := decodeItem[nodeRecord](&a.decoded, it)
		if err != nil {
			return pol, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		pol.Nodes = append(pol.Nodes, api.ProxyNode{Name: n.Name, Labels: n.Labels, Principals: n.Principals, Addr: n.SSHAddr})
	}
	proxies, err := a.proxies(ctx)
	if err != nil {
		return pol, err
	}
	for _, p := range proxies {
		pol.Proxies = append(pol.Proxies, p.info())
	}
	if pol.Revoked, err = a.revokedSerials(ctx, now); err != nil {
		return pol, err
	}
	pol.Hash = proxyPolicyHash(pol)
	pol.Generated = now.UTC()
	return pol, nil
}

func proxyPolicyHash(p api.ProxyPolicy) string {
	p.Generated, p.Hash = time.Time{}, ""
	b, _ := json.Marshal(p)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// Active sessions. Each proxy PUTs its whole list when it changes and
// every few seconds; the list is kept under "sessions/<proxy>" with an
// expiry, so a proxy that dies stops showing sessions after its TTL.

func sessionsKey(proxy string) string { return "sessions/" + proxy }

type sessionsRecord struct {
	Sessions []api.Session `json:"sessions"`
	Expires  time.Time     `json:"expires"`
}

const (
	maxSessionsTTL    = 5 * time.Minute
	maxSessionsPerPut = 10000
)

// PutProxySessions replaces a proxy's list of active sessions.
func (a *Authority) PutProxySessions(ctx context.Context, p *authenticatedProxy, req api.ActiveSessions) error {
	ttl := time.Duration(req.TTL)
	if ttl <= 0 || ttl > maxSessionsTTL {
		ttl = maxSessionsTTL
	}
	if len(req.Sessions) > maxSessionsPerPut {
		return invalidf("%d sessions in one report; at most %d", len(req.Sessions), maxSessionsPerPut)
	}
	for i := range req.Sessions {
		s := &req.Sessions[i]
		s.Proxy = p.rec.Name
		if err := checkName("session id", s.ID, labelKeyRE, "use letters, digits, '_', '.', '/' and '-'"); err != nil {
			return err
		}
		if err := ValidateUserName(s.User); err != nil {
			return err
		}
		if err := ValidateNodeName(s.Node); err != nil {
			return err
		}
	}
	b, err := json.Marshal(sessionsRecord{Sessions: req.Sessions, Expires: a.now().Add(ttl).UTC()})
	if err != nil {
		return err
	}
	_, err = a.store.Put(ctx, sessionsKey(p.rec.Name), b)
	return err
}

// Sessions lists the sessions running through every proxy that reported
// within its TTL, oldest first.
func (a *Authority) Sessions(ctx context.Context) ([]api.Session, error) {
	items, _, err := a.store.List(ctx, "sessions/")
	if err != nil {
		return nil, err
	}
	now := a.now()
	out := []api.Session{}
	for _, it := range items {
		var rec sessionsRecord
		if err := json.Unmarshal(it.Value, &rec); err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		if now.After(rec.Expires) {
			continue
		}
		out = append(out, rec.Sessions...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

// Proxy audit events. A proxy reports session starts and ends, exec
// commands, exit codes, transfers and forwards; each event carries an ID
// so a batch retried after a lost answer is stored once.

const maxProxyEvents = 1000

// ProxyAudit stores a batch of events reported by a proxy.
func (a *Authority) ProxyAudit(ctx context.Context, p *authenticatedProxy, evs []api.ProxyEvent) error {
	if len(evs) > maxProxyEvents {
		return invalidf("%d events in one batch; at most %d", len(evs), maxProxyEvents)
	}
	for _, e := range evs {
		if err := checkName("event id", e.ID, labelKeyRE, "use letters, digits, '_', '.', '/' and '-'"); err != nil {
			return err
		}
		if err := checkName("event type", e.Type, labelKeyRE, "use letters, digits, '_', '.', '/' and '-'"); err != nil {
			return err
		}
		if e.User != "" && ValidateUserName(e.User) != nil {
			return invalidf("event %s names an invalid user", e.ID)
		}
		if len(e.Fields) > 32 {
			return invalidf("event %s has %d fields; at most 32", e.ID, len(e.Fields))
		}
		for k, v := range e.Fields {
			if len(k) > 64 || len(v) > 4096 {
				return invalidf("event %s: field %.64q is too long", e.ID, k)
			}
		}
	}
	for _, e := range evs {
		t := e.Time
		if t.IsZero() {
			t = a.now()
		}
		sum := sha256.Sum256([]byte(p.rec.Name + "\x00" + e.ID))
		ev := api.AuditEvent{
			ID:   fmt.Sprintf("%020d-%s", t.UnixNano(), hex.EncodeToString(sum[:4])),
			Time: t.UTC(), Type: e.Type, User: e.User, Actor: "proxy:" + p.rec.Name,
			Success: e.Success, Remote: e.Remote, Fields: e.Fields,
		}
		if err := a.writeEvent(ctx, ev); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
	}
	return nil
}
