package ca

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// maxNodeDenials bounds one batch of node denials.
const maxNodeDenials = 1000

// NodeAudit stores the login denials a node's teleport-authkeys made, as
// "node.login.denied" events by "node:NAME". Like a proxy's events, the
// content is cleaned, never a reason to refuse (the node would retry
// forever): over-long values are cut, a user name that is not one moves
// to user_given, a time far from the CA's is replaced by the CA's. The
// type is fixed here: a node cannot write other kinds of events.
func (a *Authority) NodeAudit(ctx context.Context, n *authenticatedNode, evs []api.NodeDenial) error {
	if len(evs) > maxNodeDenials {
		return invalidf("%d denials in one batch; at most %d", len(evs), maxNodeDenials)
	}
	now := a.now()
	for _, d := range evs {
		t := d.Time
		if t.IsZero() || t.Sub(now).Abs() > 48*time.Hour {
			t = now
		}
		sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%q\x00%d", n.rec.Name, d.ID, d.Time.UnixNano()))
		ev := api.AuditEvent{
			ID:   fmt.Sprintf("%020d-%s", t.UnixNano(), hex.EncodeToString(sum[:4])),
			Time: t.UTC(), Type: "node.login.denied", Actor: "node:" + n.rec.Name, Success: false,
			Fields: map[string]string{
				"node": n.rec.Name, "login": cleanField(d.Login, 64), "reason": cleanField(d.Reason, 512),
			},
		}
		if d.KeyID != "" {
			ev.Fields["key_id"] = cleanField(d.KeyID, 256)
		}
		if d.Serial != "" {
			ev.Fields["serial"] = cleanField(d.Serial, 20)
		}
		if u := denialUser(d.KeyID); u != "" {
			if ValidateUserName(u) == nil {
				ev.User = u
			} else {
				ev.Fields["user_given"] = cleanField(fmt.Sprintf("%q", u), 80)
			}
		}
		if err := a.writeEvent(ctx, ev); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
	}
	return nil
}

// denialUser is the user a certificate's KeyId names: "user=NAME ..." for
// session certificates, the KeyId itself for user certificates.
func denialUser(keyID string) string {
	if u, ok := strings.CutPrefix(keyID, "user="); ok {
		u, _, _ = strings.Cut(u, " ")
		return u
	}
	return keyID
}

// cleanField makes a value from a node fit an audit field: valid UTF-8,
// no control characters, at most n bytes.
func cleanField(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	return cutField(s, n)
}
