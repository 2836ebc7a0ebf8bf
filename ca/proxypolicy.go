package ca

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
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
	// Entries that do not validate are left out, not refused: one bad
	// entry must not hide the proxy's other sessions.
	kept := make([]api.Session, 0, len(req.Sessions))
	for _, s := range req.Sessions {
		s.Proxy = p.rec.Name
		if checkName("session id", s.ID, labelKeyRE, "") != nil || ValidateUserName(s.User) != nil ||
			(ValidateNodeName(s.Node) != nil && ValidateHostPrincipal(s.Node) != nil) {
			a.log.Warn("proxy reported a session that does not validate; left out", "proxy", p.rec.Name)
			continue
		}
		kept = append(kept, s)
	}
	b, err := json.Marshal(sessionsRecord{Sessions: kept, Expires: a.now().Add(ttl).UTC()})
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

// ProxyAudit stores a batch of events reported by a proxy. Content is
// never a reason to refuse an event (the proxy would retry it forever):
// what does not fit is cleaned and kept — a bad user name moves to the
// field user_given, over-long values are cut, a missing or bad id or type
// is replaced — and only an oversized batch is refused.
func (a *Authority) ProxyAudit(ctx context.Context, p *authenticatedProxy, evs []api.ProxyEvent) error {
	if len(evs) > maxProxyEvents {
		return invalidf("%d events in one batch; at most %d", len(evs), maxProxyEvents)
	}
	for i, e := range evs {
		ev := sanitizeProxyEvent(e, i, a.now())
		sum := sha256.Sum256([]byte(p.rec.Name + "\x00" + ev.ID))
		rec := api.AuditEvent{
			ID:   fmt.Sprintf("%020d-%s", ev.Time.UnixNano(), hex.EncodeToString(sum[:4])),
			Time: ev.Time.UTC(), Type: ev.Type, User: ev.User, Actor: "proxy:" + p.rec.Name,
			Success: ev.Success, Remote: ev.Remote, Fields: ev.Fields,
		}
		if err := a.writeEvent(ctx, rec); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
	}
	return nil
}

// sanitizeProxyEvent makes an event fit the audit log (see ProxyAudit).
func sanitizeProxyEvent(e api.ProxyEvent, i int, now time.Time) api.ProxyEvent {
	cut := func(s string, n int) string {
		if len(s) > n {
			return strings.ToValidUTF8(s[:n], "") + "…"
		}
		return s
	}
	fields := make(map[string]string, len(e.Fields)+2)
	n := 0
	for _, k := range slices.Sorted(maps.Keys(e.Fields)) {
		if n == 32 {
			fields["fields_dropped"] = fmt.Sprint(len(e.Fields) - n)
			break
		}
		fields[cut(k, 64)] = cut(e.Fields[k], 4096)
		n++
	}
	if checkName("event id", e.ID, labelKeyRE, "") != nil {
		sum := sha256.Sum256(fmt.Appendf(nil, "%q %d %d", e.ID, i, e.Time.UnixNano()))
		e.ID = hex.EncodeToString(sum[:12])
	}
	if checkName("event type", e.Type, labelKeyRE, "") != nil {
		fields["type_given"] = cut(fmt.Sprintf("%q", e.Type), 80)
		e.Type = "proxy.event"
	}
	if e.User != "" && ValidateUserName(e.User) != nil {
		fields["user_given"] = cut(fmt.Sprintf("%q", e.User), 80)
		e.User = ""
	}
	e.Remote = cut(e.Remote, 128)
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Fields = fields
	return e
}
