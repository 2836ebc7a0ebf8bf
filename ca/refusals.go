package ca

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Refused requests are audited: a body that is malformed, too large or
// carries a value the validators refuse (a name that could inject an
// sshd_config line or an authorized_keys option, a path in an id), on
// the HTTPS API and the admin socket alike, and every caller the admin
// socket refuses. Each is an "api.refused" or "admin.refused" event
// with the reason the caller was given.
//
// Anyone who can reach the API can send refused requests, so the audit
// log must not grow with a flood: per client address (per uid on the
// admin socket) the first refusalAuditLimit refusals of each
// refusalAuditWindow are audited, the last of them saying so; the rest
// are logged only, as the sign-in throttle does.
const (
	refusalAuditLimit  = 20
	refusalAuditWindow = time.Minute
)

func newRefusalLimiter() addrThrottle {
	return addrThrottle{limit: refusalAuditLimit, window: refusalAuditWindow}
}

// auditRefusal audits a request refused as malformed (400) or too large
// (413); msg is what the caller was told.
func (s *Server) auditRefusal(r *http.Request, status int, msg string) {
	if status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge {
		return
	}
	actor, remote := "api", remoteHost(r)
	if p, ok := peerFrom(r.Context()); ok {
		actor, remote = p.String(), ""
	}
	s.auditRefused(r.Context(), "api.refused", actor, remote, map[string]string{
		"method": r.Method,
		"path":   cutField(r.URL.EscapedPath(), 256),
		"status": strconv.Itoa(status),
		"reason": cutField(msg, 512),
	})
}

// auditRefused writes one refusal event, within the limit of its actor
// and address.
func (s *Server) auditRefused(ctx context.Context, typ, actor, remote string, fields map[string]string) {
	key := actor + " " + remote
	now := s.a.now()
	if s.refusals.check(key, now) != nil {
		s.log.Info("request refused (not audited: too many refusals from this client)", "type", typ, "actor", actor, "remote", remote, "reason", fields["reason"])
		return
	}
	if s.refusals.fail(key, now) {
		fields["audit_limited_until"] = now.Add(refusalAuditWindow).UTC().Format(time.RFC3339)
	}
	ev := s.a.newEvent(typ, now)
	ev.Actor, ev.Remote, ev.Fields = actor, remote, fields
	// A client that hangs up at once must not keep its refusal out of
	// the log.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.a.writeEvent(ctx, ev); err != nil {
		s.log.Error("audit write failed", "err", err, "type", typ)
	}
}

// cutField bounds a value kept in an audit event.
func cutField(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
