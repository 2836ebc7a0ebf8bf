package ca

import (
	"context"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
)

func TestSweep(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	ctx := context.Background()
	secret := addUser(t, a, "alice", []string{"alice"}, nil)
	if _, err := a.AddUser(ctx, api.AddUserRequest{Name: "pending", Logins: []string{"pending"}}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddToken(ctx, api.AddTokenRequest{Role: TokenNode, TTL: api.Duration(time.Hour)}, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := login(a, "alice", pw, oathtool(t, secret, clk.Now())); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		n := 0
		for _, p := range []string{"signins/", "sessions/", "tokens/", "enroll/"} {
			items, _, _ := a.store.List(ctx, p)
			n += len(items)
		}
		return n
	}
	if n, err := a.Sweep(ctx); err != nil || n != 0 || count() != 4 {
		t.Fatalf("sweep before expiry removed %d (%v); %d left, want 4", n, err, count())
	}
	clk.Advance(2 * time.Hour) // token expired
	if n, _ := a.Sweep(ctx); n != 1 {
		t.Fatalf("after 2h swept %d, want the token", n)
	}
	clk.Advance(24 * time.Hour) // session (and its index) and enrollment expired
	if n, _ := a.Sweep(ctx); n != 3 || count() != 0 {
		t.Fatalf("after 26h swept %d, %d left", n, count())
	}
	if recs, _ := a.Audit(ctx, AuditFilter{}); len(recs) == 0 {
		t.Fatal("sweep removed audit events")
	}
}
