package ca

import (
	"context"
	"testing"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

func TestDecodeCacheFollowsRevisions(t *testing.T) {
	var c decodeCache
	v1, err := decodeItem[session](&c, store.Item{Key: "sessions/x", Revision: 1, Value: []byte(`{"user":"a"}`)})
	if err != nil || v1.User != "a" {
		t.Fatalf("%+v %v", v1, err)
	}
	// Same revision: served from the cache even if the bytes were (by
	// contract impossibly) different.
	if v, _ := decodeItem[session](&c, store.Item{Key: "sessions/x", Revision: 1, Value: []byte(`{"user":"b"}`)}); v.User != "a" {
		t.Fatalf("same revision decoded again: %+v", v)
	}
	// A new revision is decoded.
	if v, _ := decodeItem[session](&c, store.Item{Key: "sessions/x", Revision: 2, Value: []byte(`{"user":"b"}`)}); v.User != "b" {
		t.Fatalf("new revision served stale: %+v", v)
	}
	if _, err := decodeItem[session](&c, store.Item{Key: "sessions/y", Revision: 3, Value: []byte(`{`)}); err == nil {
		t.Fatal("damaged record decoded")
	}
}

// A caller mutating the user record it got must not change what the next
// caller reads.
func TestCachedUserIsACopy(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	addUser(t, a, "kim", []string{"kim"}, nil)
	u1, _, err := a.getUser(ctx, "kim")
	if err != nil {
		t.Fatal(err)
	}
	u1.Locked, u1.Roles[0] = true, "admin"
	u2, _, _ := a.getUser(ctx, "kim")
	if u2.Locked || u2.Roles[0] != "user:kim" {
		t.Fatalf("mutation leaked through the cache: %+v", u2)
	}
	if err := a.LockUser(ctx, "kim", api.LockRequest{}, "test"); err != nil {
		t.Fatal(err)
	}
	if u3, _, _ := a.getUser(ctx, "kim"); !u3.Locked {
		t.Fatal("lock not seen through the cache")
	}
}
