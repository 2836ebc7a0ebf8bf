package sshproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/metrics"
)

type eventT = api.ProxyEvent

var userRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,63}$`)

func validUser(u string) bool { return userRE.MatchString(u) }

// event starts an audit event.
func event(typ, user string, ok bool, remote string) eventT {
	return eventT{
		ID: newSessionID(), Time: time.Now().UTC(), Type: typ, User: user, Success: ok, Remote: remote,
		Fields: map[string]string{},
	}
}

// auditQueue sends audit events to the CA in batches, retrying until the
// CA has them. Every event is also logged, and written to the queue file
// in the data directory until the CA has it (auditqueue.go), so neither a
// CA outage nor a crash of the proxy loses it.
type auditQueue struct {
	p    *Proxy
	mu   sync.Mutex
	q    []eventT
	wake chan struct{}
	disk queueFile
}

// maxQueuedEvents bounds the queue while the CA is unreachable; older
// events are dropped first (and were logged).
const maxQueuedEvents = 100000

func newAuditQueue(p *Proxy) *auditQueue {
	a := &auditQueue{p: p, wake: make(chan struct{}, 1)}
	a.q = a.disk.open(p.cfg.DataDir, p.log)
	if len(a.q) > 0 {
		p.log.Info("audit events left from the last run will be sent to the CA", "events", len(a.q))
	}
	return a
}

func (a *auditQueue) add(ev eventT) {
	if ev.User != "" && !validUser(ev.User) {
		ev.Fields["user_given"] = truncate(fmt.Sprintf("%q", ev.User), 80)
		ev.User = ""
	}
	args := []any{"type", ev.Type, "user", ev.User, "success", ev.Success, "remote", ev.Remote}
	for _, k := range sortedKeys(ev.Fields) {
		args = append(args, k, ev.Fields[k])
	}
	a.p.log.Info("audit", args...)
	if a.p.metrics != nil { // nil in unit tests' hand-built proxies
		a.p.metrics.events.WithLabelValues(ev.Type, metrics.Result(ev.Success)).Inc()
	}
	a.mu.Lock()
	if len(a.q) >= maxQueuedEvents {
		a.p.log.Error("audit queue full while the CA is unreachable; dropping the oldest event (it is in this log)")
		a.q = a.q[1:]
		a.disk.stale = true
	}
	a.q = append(a.q, ev)
	a.disk.append(ev)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (a *auditQueue) run(ctx context.Context) {
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			a.flush(context.Background()) // last chance, bounded below
			return
		case <-a.wake:
		case <-time.After(5 * time.Second):
		}
		a.mu.Lock()
		a.disk.sync()
		a.mu.Unlock()
		if err := a.flush(ctx); err != nil {
			a.p.log.Warn("sending audit events to the CA failed; retrying", "err", err, "queued", a.len())
			sleep(ctx, backoff)
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		backoff = time.Second
	}
}

func (a *auditQueue) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.q)
}

// flush sends what is queued, 200 events per call, and brings the queue
// file in line with what is left.
func (a *auditQueue) flush(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sent := false
	defer func() {
		a.mu.Lock()
		if sent || a.disk.stale {
			a.disk.rewrite(a.q)
		}
		a.mu.Unlock()
	}()
	for {
		a.mu.Lock()
		n := min(len(a.q), 200)
		batch := append([]eventT(nil), a.q[:n]...)
		a.mu.Unlock()
		if n == 0 {
			return nil
		}
		if err := a.p.cl.Load().ProxyAudit(ctx, batch); err != nil {
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Status < 400 || ae.Status >= 500 || ae.Status == http.StatusTooManyRequests {
				return err // the CA is down or busy: retry
			}
			// The CA refuses the batch itself (it never refuses content):
			// retrying would block every later event. The events are in
			// this log already.
			a.p.log.Error("the CA refused a batch of audit events; dropping it (the events are in this log)", "err", err, "events", n)
		}
		a.mu.Lock()
		a.q = a.q[n:]
		a.mu.Unlock()
		sent = true
	}
}

// activeSession is a running session in the registry.
type activeSession struct {
	mu     sync.Mutex
	info   api.Session
	serial string // the user certificate's serial
	// unregistered marks a host reached by DNS fallback (mode off): it
	// has no record in the policy, and is judged as a node without labels.
	unregistered bool
	cancel       func()
	terminated   atomic.Pointer[string]
}

func (s *activeSession) addChannel(what string) {
	s.mu.Lock()
	s.info.Channels = append(s.info.Channels, what)
	s.mu.Unlock()
}

func (s *activeSession) removeChannel(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.info.Channels {
		if c == what {
			s.info.Channels = append(s.info.Channels[:i], s.info.Channels[i+1:]...)
			return
		}
	}
}

func (s *activeSession) terminate(reason string) {
	s.terminated.CompareAndSwap(nil, &reason)
}

func (s *activeSession) snapshot() api.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.info
	out.Channels = append([]string(nil), s.info.Channels...)
	return out
}

// registry holds the proxy's active sessions, reports them to the CA and
// ends those the policy no longer allows.
type registry struct {
	p       *Proxy
	mu      sync.Mutex
	byID    map[string]*activeSession
	changed chan struct{}
}

func newRegistry(p *Proxy) *registry {
	return &registry{p: p, byID: map[string]*activeSession{}, changed: make(chan struct{}, 1)}
}

// add registers a session and checks it once against the current
// policy: a change that arrived while the session was being set up (after
// its first check, before it was registered) must not be missed.
func (r *registry) add(info api.Session, serial string, unregistered bool, cancel func()) *activeSession {
	s := &activeSession{info: info, serial: serial, unregistered: unregistered, cancel: cancel}
	r.mu.Lock()
	r.byID[info.ID] = s
	r.mu.Unlock()
	r.poke()
	if pol := r.p.policyNow(); pol != nil {
		r.end(s, pol)
	}
	return s
}

func (r *registry) remove(id string) {
	r.mu.Lock()
	delete(r.byID, id)
	r.mu.Unlock()
	r.poke()
}

func (r *registry) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *registry) list() []api.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]api.Session, 0, len(r.byID))
	for _, s := range r.byID {
		out = append(out, s.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

// enforce ends the sessions that pol no longer allows: the user was
// removed or locked, the login or node is no longer theirs, or their
// certificate was revoked.
func (r *registry) enforce(pol *policy) {
	r.mu.Lock()
	sessions := make([]*activeSession, 0, len(r.byID))
	for _, s := range r.byID {
		sessions = append(sessions, s)
	}
	r.mu.Unlock()
	for _, s := range sessions {
		r.end(s, pol)
	}
}

// disallowed says why pol no longer allows s, or "".
func disallowed(s *activeSession, pol *policy) string {
	info := s.snapshot()
	node, ok := pol.nodes[info.Node]
	switch {
	case !ok && !s.unregistered:
		return "the node was removed"
	case !ok:
		node = api.ProxyNode{Name: info.Node}
	}
	switch {
	case pol.isRevoked("user", parseSerial(s.serial)):
		return "the user's certificate was revoked"
	case info.Login == "":
		if len(pol.loginsOn(info.User, node)) == 0 {
			return "the policy no longer gives the user a login on the node"
		}
	default:
		if _, err := pol.allow(info.User, info.Login, node); err != nil {
			return err.Error()
		}
	}
	return ""
}

// end ends s, with an audit event, when pol does not allow it.
func (r *registry) end(s *activeSession, pol *policy) {
	reason := disallowed(s, pol)
	if reason == "" {
		return
	}
	info := s.snapshot()
	s.terminate(reason)
	r.p.log.Info("ending a session the policy no longer allows", "session", info.ID, "user", info.User, "reason", reason)
	ev := event("session.terminated", info.User, true, info.ClientAddr)
	ev.Fields["session"], ev.Fields["node"], ev.Fields["reason"] = info.ID, info.Node, reason
	r.p.events.add(ev)
	s.cancel()
}

func parseSerial(s string) uint64 {
	var v uint64
	_, _ = fmt.Sscan(s, &v)
	return v
}

func (r *registry) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.byID {
		s.cancel()
	}
}

// run reports the session list to the CA when it changes (at most every
// half second) and every ReportInterval.
func (r *registry) run(ctx context.Context) {
	every := r.p.cfg.ReportInterval
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_ = r.p.cl.Load().PutSessions(cctx, api.ActiveSessions{Sessions: []api.Session{}, TTL: api.Duration(every)})
			cancel()
			return
		case <-t.C:
		case <-r.changed:
			sleep(ctx, 500*time.Millisecond)
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := r.p.cl.Load().PutSessions(cctx, api.ActiveSessions{Sessions: r.list(), TTL: api.Duration(6 * every)})
		cancel()
		if err != nil && ctx.Err() == nil {
			r.p.log.Warn("reporting active sessions to the CA failed", "err", err)
		}
	}
}

// visibleSessions lists the sessions, on every proxy, on nodes where user
// has a login (teleport-keyhelper sessions: "is someone else on this
// node?"). It asks the CA, and falls back to this proxy's own list.
func (p *Proxy) visibleSessions(ctx context.Context, pol *policy, user string) ([]api.Session, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	all, err := p.cl.Load().AllSessions(cctx)
	if err != nil {
		p.log.Warn("listing sessions at the CA failed; showing this proxy's only", "err", err)
		all = p.sessions.list()
	}
	out := []api.Session{}
	for _, s := range all {
		n, ok := pol.nodes[s.Node]
		if ok && len(pol.loginsOn(user, n)) > 0 {
			out = append(out, s)
		}
	}
	return out, nil
}

func writeJSONTo(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeSessionsTable(w io.Writer, list []api.Session) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SESSION\tUSER\tLOGIN\tNODE\tSTARTED\tFROM\tRUNNING\r\n")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\r\n", s.ID, s.User, s.Login, s.Node, s.Started.Format(time.RFC3339), s.ClientAddr, strings.Join(s.Channels, "; "))
	}
	_ = tw.Flush()
}

func sortedNodeNames(pol *policy) []string {
	out := make([]string, 0, len(pol.nodes))
	for n := range pol.nodes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
