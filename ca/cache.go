package ca

import (
	"encoding/json"
	"sync"

	"github.com/opensshca/suite/ca/store"
)

// decodeCache keeps decoded store records by key and revision, so that the
// hot path of issuance (session, user, roles) decodes JSON only when a
// record changed. It cannot serve a stale record: callers read the item,
// with its revision, from the store first, and the cache only replaces the
// decode of those exact bytes. Revisions are store-wide and never reused,
// so equal key and revision mean equal bytes.
type decodeCache struct {
	mu sync.RWMutex
	m  map[string]cachedRecord
}

type cachedRecord struct {
	rev int64
	v   any
}

// maxCached bounds the cache; past it the cache starts over.
const maxCached = 100_000

// decodeItem returns it decoded as T. The value may be shared with other
// callers: treat maps and slices in it as read-only.
func decodeItem[T any](c *decodeCache, it store.Item) (T, error) {
	c.mu.RLock()
	e, ok := c.m[it.Key]
	c.mu.RUnlock()
	if ok && e.rev == it.Revision {
		if v, ok := e.v.(T); ok {
			return v, nil
		}
	}
	var v T
	if err := json.Unmarshal(it.Value, &v); err != nil {
		return v, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCached {
		c.m = make(map[string]cachedRecord)
	}
	c.m[it.Key] = cachedRecord{rev: it.Revision, v: v}
	c.mu.Unlock()
	return v, nil
}
