package ca

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// A node's denials become node.login.denied events by node:NAME: cleaned,
// never another type, stored once when a batch is sent again.
func TestNodeAudit(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	_, leaf := joinNode(t, a, "web1", nil)
	n, err := a.authenticateNode(ctx, leaf)
	if err != nil {
		t.Fatal(err)
	}
	batch := []api.NodeDenial{
		{ID: "d1", Time: time.Now(), Login: "root", KeyID: "user=bob proxy=p1 session=s1", Serial: "42", Reason: "user \"bob\" is locked\x1b[2J"},
		{ID: "d2", Time: time.Now().Add(-1000 * time.Hour), Login: "root", KeyID: "Not A User!", Reason: strings.Repeat("x", 5000)},
	}
	for range 2 { // sent twice: the answer was lost
		if err := a.NodeAudit(ctx, n, batch); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := a.Audit(ctx, AuditFilter{Type: "node.login.denied"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("%d events, want 2 (a batch sent twice is stored once)", len(evs))
	}
	for _, e := range evs {
		if e.Actor != "node:web1" || e.Success || e.Fields["node"] != "web1" {
			t.Errorf("event %+v", e)
		}
		if strings.ContainsAny(e.Fields["reason"], "\x1b") || len(e.Fields["reason"]) > 520 {
			t.Errorf("reason not cleaned: %q", e.Fields["reason"])
		}
		if time.Since(e.Time) > time.Hour {
			t.Errorf("a time far from the CA's was kept: %v", e.Time)
		}
	}
	byUser := map[string]api.AuditEvent{}
	for _, e := range evs {
		byUser[e.User] = e
	}
	if byUser["bob"].Fields["serial"] != "42" || byUser[""].Fields["user_given"] == "" {
		t.Errorf("users: %+v", byUser)
	}
	if err := a.NodeAudit(ctx, n, make([]api.NodeDenial, maxNodeDenials+1)); err == nil {
		t.Error("an oversized batch was accepted")
	}
}
