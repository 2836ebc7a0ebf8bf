// Package store is the small key-value interface the authority keeps all of
// its state in (DESIGN.md section 4): users, roles, tokens, sign-in sessions,
// issuance records and the audit log.
//
// The contract every backend keeps:
//
//   - A write that returns a nil error is durable: it has been fsynced (bbolt)
//     or committed by a quorum (etcd). Issuance records and audit events rely
//     on this; a caller is never told "issued" for a record that a crash could
//     lose.
//   - Every successful write advances one store-wide revision counter by
//     one, and a failed write leaves it alone. An Item carries the
//     revision of its last modification, which is what CompareAndSwap
//     compares against. (On etcd the counter is the cluster's: it does
//     not start at zero, and other users of the cluster advance it too.)
//   - Watch delivers the events of a prefix in revision order.
//
// Keys are slash-separated strings such as "users/alice"; values are opaque
// bytes (the ca package stores JSON).
//
// Backends: Bolt, a single file on local disk (the default), and Etcd, an
// etcd cluster shared by several CA replicas. The storetest package holds
// the conformance suite both pass.
package store

import (
	"context"
	"errors"
	"fmt"
)

// Errors a caller branches on. Backends wrap them with the key concerned, so
// test them with errors.Is.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("store: key not found")
	// ErrExists: Create found the key already present.
	ErrExists = errors.New("store: key already exists")
	// ErrConflict: CompareAndSwap found a different revision.
	ErrConflict = errors.New("store: revision changed")
	// ErrCompacted: Watch was asked to start at a revision the backend no
	// longer holds events for; re-List and watch from the new revision.
	ErrCompacted = errors.New("store: revision compacted")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
)

// MaxKeySize is the longest key, in bytes, that a write accepts: bbolt's
// limit, which the etcd backend applies too so that data moves between
// them.
const MaxKeySize = 32768

// Item is one key with its value and the revision of its last modification.
type Item struct {
	Key      string
	Value    []byte
	Revision int64
}

// EventType says what happened to a key.
type EventType int

// The event types Watch delivers.
const (
	EventPut EventType = iota + 1
	EventDelete
)

// Event is one change delivered by Watch. For EventDelete, Item.Value is nil
// and Item.Revision is the revision of the deletion.
type Event struct {
	Type EventType
	Item Item
}

// Store is the interface every backend implements. All methods are safe for
// concurrent use.
type Store interface {
	// Get returns the item at key, or an error wrapping ErrNotFound.
	Get(ctx context.Context, key string) (Item, error)
	// Put writes value at key, creating or replacing it, and returns the
	// new revision.
	Put(ctx context.Context, key string, value []byte) (int64, error)
	// Create writes value at key only if the key is absent; otherwise it
	// returns an error wrapping ErrExists and changes nothing.
	Create(ctx context.Context, key string, value []byte) (int64, error)
	// CompareAndSwap replaces the value at key only if the key's current
	// revision equals rev. It returns an error wrapping ErrNotFound if the
	// key is absent and ErrConflict if the revision differs.
	CompareAndSwap(ctx context.Context, key string, rev int64, value []byte) (int64, error)
	// Delete removes key. It returns an error wrapping ErrNotFound if the key
	// is absent.
	Delete(ctx context.Context, key string) error
	// List returns the items whose key starts with prefix, sorted by key,
	// and the store revision the listing reflects (use rev+1 as Watch's
	// fromRev to follow changes after the snapshot without a gap).
	List(ctx context.Context, prefix string) (items []Item, rev int64, err error)
	// Watch delivers, in revision order, every change to keys with the
	// given prefix whose revision is fromRev or later (fromRev <= 0 means
	// changes after the call). The channel is closed when ctx is done, when
	// the store is closed, or when the watcher falls too far behind; a
	// caller that sees the channel close while ctx is still live must
	// re-List and watch again.
	Watch(ctx context.Context, prefix string, fromRev int64) (<-chan Event, error)
	// Close releases the backend. Writes in flight finish first.
	Close() error
}

// checkKey returns an error if a write may not use key, the same for every
// backend.
func checkKey(key string) error {
	switch {
	case key == "":
		return errors.New("store: empty key")
	case len(key) > MaxKeySize:
		return fmt.Errorf("store: key of %d bytes exceeds %d", len(key), MaxKeySize)
	}
	return nil
}
