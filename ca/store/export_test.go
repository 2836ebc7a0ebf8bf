package store

// Hooks for the conformance suite, which runs in package store_test.

// CompactBoltHistory drops the events before rev from b's watch history, as
// etcd's compaction does: a Watch from an earlier revision then fails with
// ErrCompacted.
func CompactBoltHistory(b *Bolt, rev int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := ring{max: b.hist.max}
	for i := range b.hist.len() {
		if ev := b.hist.at(i); ev.Item.Revision >= rev {
			kept.push(ev)
		}
	}
	b.hist = kept
}

// BoltPath returns the file b was opened on.
func BoltPath(b *Bolt) string { return b.path }
