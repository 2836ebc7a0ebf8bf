package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

var _ Store = (*Bolt)(nil)

// Defaults for the zero values of BoltOptions fields.
const (
	defaultTimeout           = time.Second
	defaultWatchHistory      = 10000
	defaultWatchHistoryBytes = 16 << 20
	defaultWatchBuffer       = 256
)

// Limits on one group commit.
const (
	maxBatchOps   = 1000
	maxBatchBytes = 16 << 20
)

var (
	bucketKV   = []byte("kv")
	bucketMeta = []byte("meta")
	keyRev     = []byte("rev")
)

// BoltOptions configures OpenBolt.
type BoltOptions struct {
	// Timeout is how long to wait for the lock on the data file, which
	// another process may hold. Zero means one second; a negative value
	// means try once.
	Timeout time.Duration
	// WatchHistory is the number of recent events kept in memory, which
	// bounds how far back Watch's fromRev may reach. Zero means 10000; a
	// negative value keeps none.
	WatchHistory int
	// WatchHistoryBytes bounds the same history by the size of its keys
	// and values, so that large values (a proxy's session list) cannot
	// make it hold much memory. Zero means 16 MiB; negative, no bound.
	WatchHistoryBytes int
	// WatchBuffer is the channel buffer of each watcher; a watcher whose
	// buffer is full when an event arrives is dropped. Zero means 256.
	WatchBuffer int
	// Linger is how long the writer waits for more writers to join a
	// commit when the previous commit carried more than one op (the store
	// is busy). It trades that much latency for fewer fsyncs under load;
	// an idle store commits at once. Zero means none.
	Linger time.Duration
}

// Bolt is a Store kept in a single bbolt file on local disk. Writes from
// concurrent callers are grouped into one transaction and one fsync.
type Bolt struct {
	db     *bolt.DB
	path   string
	linger time.Duration

	// sendMu orders enqueueing against Close: closed is set and ops is
	// closed under the write lock, so no send can follow the close.
	sendMu sync.RWMutex
	closed atomic.Bool
	ops    chan *op

	writerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error

	// commits counts committed write transactions; pending counts ops
	// enqueued and not yet answered. Tests read them.
	commits atomic.Int64
	pending atomic.Int64
	written atomic.Int64 // ops in committed transactions
	// busy: the last batch carried more than one op, so the next one
	// lingers (see BoltOptions.Linger). Only the writer sets it.
	busy atomic.Bool

	mu       sync.Mutex // guards the fields below
	rev      int64      // last published revision
	hist     ring
	watchers map[*watcher]struct{}
	wclosed  bool
	wbuf     int
}

// OpenBolt opens the store file at path, creating it with mode 0600 if it
// does not exist.
func OpenBolt(path string, opts BoltOptions) (*Bolt, error) {
	if opts.Timeout == 0 {
		opts.Timeout = defaultTimeout
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout})
	if err != nil {
		return nil, openError(path, opts.Timeout, err)
	}
	rev, err := initBuckets(db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s is not a valid store file: %w", path, err)
	}
	b := &Bolt{
		db:         db,
		path:       path,
		linger:     opts.Linger,
		ops:        make(chan *op, maxBatchOps),
		writerDone: make(chan struct{}),
		rev:        rev,
		hist:       ring{max: historySize(opts.WatchHistory), maxBytes: historyBytes(opts.WatchHistoryBytes)},
		watchers:   make(map[*watcher]struct{}),
		wbuf:       opts.WatchBuffer,
	}
	if b.wbuf <= 0 {
		b.wbuf = defaultWatchBuffer
	}
	go b.writer()
	return b, nil
}

func historyBytes(n int) int {
	switch {
	case n == 0:
		return defaultWatchHistoryBytes
	case n < 0:
		return 0
	}
	return n
}

func historySize(n int) int {
	switch {
	case n == 0:
		return defaultWatchHistory
	case n < 0:
		return 0
	}
	return n
}

// openError turns an error from bolt.Open into one that says what is wrong
// with the file at path.
func openError(path string, timeout time.Duration, err error) error {
	var pathErr *fs.PathError
	var errno syscall.Errno
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("store: data file %s is in use by another process (lock not acquired within %v): %w", path, timeout, err)
	case errors.As(err, &pathErr):
		return fmt.Errorf("store: %w", err)
	case errors.As(err, &errno):
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	return fmt.Errorf("store: %s is not a valid store file: %w", path, err)
}

// initBuckets creates the buckets of a new file, checks those of an
// existing one, and returns the store revision.
func initBuckets(db *bolt.DB) (int64, error) {
	var rev int64
	err := db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return createBuckets(tx)
		}
		if tx.Bucket(bucketKV) == nil {
			return errors.New(`bucket "kv" missing`)
		}
		v := meta.Get(keyRev)
		if len(v) != 8 {
			return errors.New("malformed revision")
		}
		rev = int64(binary.BigEndian.Uint64(v))
		return nil
	})
	return rev, err
}

func createBuckets(tx *bolt.Tx) error {
	if k, _ := tx.Cursor().First(); k != nil {
		return fmt.Errorf("unexpected bucket %q", k)
	}
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	if _, err := tx.CreateBucket(bucketKV); err != nil {
		return err
	}
	return meta.Put(keyRev, make([]byte, 8))
}

// encodeValue returns the stored form of a value: its revision as 8 bytes
// big-endian, then the value.
func encodeValue(rev int64, value []byte) []byte {
	buf := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(buf, uint64(rev))
	copy(buf[8:], value)
	return buf
}

// decodeValue splits a stored value into its revision and value. The value
// aliases buf.
func decodeValue(buf []byte) (int64, []byte, error) {
	if len(buf) < 8 {
		return 0, nil, fmt.Errorf("store: stored value is %d bytes, shorter than its revision", len(buf))
	}
	rev := int64(binary.BigEndian.Uint64(buf))
	if rev <= 0 {
		return 0, nil, fmt.Errorf("store: stored value has invalid revision %d", rev)
	}
	return rev, buf[8:], nil
}

// Get implements Store.
func (b *Bolt) Get(ctx context.Context, key string) (Item, error) {
	var it Item
	err := b.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKV).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("store: %q: %w", key, ErrNotFound)
		}
		rev, val, err := decodeValue(v)
		if err != nil {
			return fmt.Errorf("store: %q: %w", key, err)
		}
		it = Item{Key: key, Value: bytes.Clone(val), Revision: rev}
		return nil
	})
	return it, err
}

// List implements Store.
func (b *Bolt) List(ctx context.Context, prefix string) ([]Item, int64, error) {
	var items []Item
	var rev int64
	err := b.view(ctx, func(tx *bolt.Tx) error {
		rev = int64(binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(keyRev)))
		p := []byte(prefix)
		c := tx.Bucket(bucketKV).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			r, val, err := decodeValue(v)
			if err != nil {
				return fmt.Errorf("store: %q: %w", k, err)
			}
			items = append(items, Item{Key: string(k), Value: bytes.Clone(val), Revision: r})
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return items, rev, nil
}

// view runs fn in a read transaction.
func (b *Bolt) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.closed.Load() {
		return ErrClosed
	}
	err := b.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Put implements Store.
func (b *Bolt) Put(ctx context.Context, key string, value []byte) (int64, error) {
	return b.write(ctx, &op{kind: opPut, key: key, value: value})
}

// Create implements Store.
func (b *Bolt) Create(ctx context.Context, key string, value []byte) (int64, error) {
	return b.write(ctx, &op{kind: opCreate, key: key, value: value})
}

// CompareAndSwap implements Store.
func (b *Bolt) CompareAndSwap(ctx context.Context, key string, rev int64, value []byte) (int64, error) {
	return b.write(ctx, &op{kind: opCAS, key: key, rev: rev, value: value})
}

// Delete implements Store.
func (b *Bolt) Delete(ctx context.Context, key string) error {
	_, err := b.write(ctx, &op{kind: opDelete, key: key})
	return err
}

type opKind int

const (
	opPut opKind = iota
	opCreate
	opCAS
	opDelete
)

// An op is one write waiting for the writer goroutine.
type op struct {
	kind  opKind
	key   string
	value []byte
	rev   int64 // expected revision, for opCAS
	reply chan result
}

type result struct {
	rev int64
	err error
}

// check reports whether o may apply to a key whose stored form is cur (nil
// if absent).
func (o *op) check(cur []byte) error {
	switch o.kind {
	case opCreate:
		if cur != nil {
			return fmt.Errorf("store: %q: %w", o.key, ErrExists)
		}
	case opCAS, opDelete:
		if cur == nil {
			return fmt.Errorf("store: %q: %w", o.key, ErrNotFound)
		}
	}
	if o.kind != opCAS {
		return nil
	}
	if rev, _, err := decodeValue(cur); err != nil || rev != o.rev {
		return fmt.Errorf("store: %q: at revision %d, not %d: %w", o.key, rev, o.rev, ErrConflict)
	}
	return nil
}

// validate checks the limits bbolt puts on keys and values, so that they
// fail the op alone rather than its whole batch.
func (o *op) validate() error {
	if err := checkKey(o.key); err != nil {
		return err
	}
	if len(o.value) > bolt.MaxValueSize-8 {
		return fmt.Errorf("store: %q: value of %d bytes exceeds %d", o.key, len(o.value), bolt.MaxValueSize-8)
	}
	return nil
}

// write hands o to the writer goroutine and waits for its result.
func (b *Bolt) write(ctx context.Context, o *op) (int64, error) {
	if err := o.validate(); err != nil {
		return 0, err
	}
	o.reply = make(chan result, 1)
	if err := b.enqueue(ctx, o); err != nil {
		return 0, err
	}
	// Once enqueued, the op may commit; the result is the only truth.
	r := <-o.reply
	return r.rev, r.err
}

func (b *Bolt) enqueue(ctx context.Context, o *op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.sendMu.RLock()
	defer b.sendMu.RUnlock()
	if b.closed.Load() {
		return ErrClosed
	}
	b.pending.Add(1)
	select {
	case b.ops <- o:
		return nil
	case <-ctx.Done():
		b.pending.Add(-1)
		return ctx.Err()
	}
}

// writer applies queued ops in batches until ops is closed and drained.
func (b *Bolt) writer() {
	defer close(b.writerDone)
	batch := make([]*op, 0, maxBatchOps)
	for o := range b.ops {
		if b.busy.Load() && b.linger > 0 {
			// Under load, let more writers join this commit: one fsync
			// then serves more of them. Idle, an op commits at once.
			time.Sleep(b.linger)
		}
		batch = b.drain(append(batch[:0], o))
		b.busy.Store(len(batch) > 1)
		b.commit(batch)
		clear(batch)
	}
}

// drain appends the ops queued right now to batch, within the batch limits.
func (b *Bolt) drain(batch []*op) []*op {
	size := len(batch[0].value)
	for len(batch) < maxBatchOps && size < maxBatchBytes {
		select {
		case o, ok := <-b.ops:
			if !ok {
				return batch
			}
			batch = append(batch, o)
			size += len(o.value)
		default:
			return batch
		}
	}
	return batch
}

// commit applies batch in one transaction, publishes the events of the ops
// that succeeded and replies to every op.
func (b *Bolt) commit(batch []*op) {
	res := make([]result, len(batch))
	evs, err := b.apply(batch, res)
	if err != nil {
		for i, o := range batch {
			res[i] = result{err: fmt.Errorf("store: %q: %w", o.key, err)}
		}
	} else if len(evs) > 0 {
		b.publish(evs)
	}
	for i, o := range batch {
		o.reply <- res[i]
	}
	b.pending.Add(-int64(len(batch)))
}

// apply runs batch in one write transaction, recording each op's result in
// res. It commits only if some op succeeded.
func (b *Bolt) apply(batch []*op, res []result) ([]Event, error) {
	tx, err := b.db.Begin(true)
	if err != nil {
		return nil, err
	}
	evs, err := applyTx(tx, batch, res)
	if err != nil || len(evs) == 0 {
		tx.Rollback()
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	b.commits.Add(1)
	b.written.Add(int64(len(evs)))
	return evs, nil
}

// applyTx applies each op of batch whose precondition holds. An error
// means the transaction must be rolled back.
func applyTx(tx *bolt.Tx, batch []*op, res []result) ([]Event, error) {
	kv, meta := tx.Bucket(bucketKV), tx.Bucket(bucketMeta)
	rev := int64(binary.BigEndian.Uint64(meta.Get(keyRev)))
	var evs []Event
	for i, o := range batch {
		key := []byte(o.key)
		if err := o.check(kv.Get(key)); err != nil {
			res[i].err = err
			continue
		}
		rev++
		ev, err := applyOp(kv, o, key, rev)
		if err != nil {
			return nil, err
		}
		evs = append(evs, ev)
		res[i].rev = rev
	}
	if len(evs) == 0 {
		return nil, nil
	}
	return evs, meta.Put(keyRev, binary.BigEndian.AppendUint64(nil, uint64(rev)))
}

func applyOp(kv *bolt.Bucket, o *op, key []byte, rev int64) (Event, error) {
	if o.kind == opDelete {
		ev := Event{Type: EventDelete, Item: Item{Key: o.key, Revision: rev}}
		return ev, kv.Delete(key)
	}
	buf := encodeValue(rev, o.value)
	ev := Event{Type: EventPut, Item: Item{Key: o.key, Value: buf[8:], Revision: rev}}
	return ev, kv.Put(key, buf)
}

// Watch implements Store. Events older than the last WatchHistory events,
// or older than the opening of the store, are not available.
func (b *Bolt) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.wclosed {
		return nil, ErrClosed
	}
	if fromRev <= 0 {
		fromRev = b.rev + 1
	}
	oldest := b.rev - int64(b.hist.len()) + 1
	if fromRev < oldest {
		return nil, fmt.Errorf("store: watch %q from revision %d, oldest held is %d: %w", prefix, fromRev, oldest, ErrCompacted)
	}
	var backlog []Event
	for i := max(fromRev-oldest, 0); i < int64(b.hist.len()); i++ {
		if ev := b.hist.at(int(i)); strings.HasPrefix(ev.Item.Key, prefix) {
			backlog = append(backlog, ev)
		}
	}
	w := &watcher{prefix: prefix, from: fromRev, ch: make(chan Event, len(backlog)+b.wbuf)}
	for _, ev := range backlog {
		w.ch <- cloneEvent(ev)
	}
	b.watchers[w] = struct{}{}
	w.stop = context.AfterFunc(ctx, func() { b.unwatch(w) })
	return w.ch, nil
}

// A watcher is one Watch call's channel and filter.
type watcher struct {
	prefix string
	from   int64
	ch     chan Event
	stop   func() bool
}

func (w *watcher) wants(ev Event) bool {
	return ev.Item.Revision >= w.from && strings.HasPrefix(ev.Item.Key, w.prefix)
}

// publish records evs, which follow b.rev in order, and sends them to the
// watchers that want them, dropping any watcher that is full.
func (b *Bolt) publish(evs []Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ev := range evs {
		b.hist.push(ev)
		b.rev = ev.Item.Revision
		for w := range b.watchers {
			if !w.wants(ev) {
				continue
			}
			select {
			case w.ch <- cloneEvent(ev):
			default:
				b.dropLocked(w)
			}
		}
	}
}

func (b *Bolt) unwatch(w *watcher) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.watchers[w]; ok {
		b.dropLocked(w)
	}
}

func (b *Bolt) dropLocked(w *watcher) {
	w.stop()
	delete(b.watchers, w)
	close(w.ch)
}

func cloneEvent(ev Event) Event {
	ev.Item.Value = bytes.Clone(ev.Item.Value)
	return ev
}

// Close implements Store. Writes already queued are committed; later ones
// fail with ErrClosed. Every watcher's channel is closed.
func (b *Bolt) Close() error {
	b.closeOnce.Do(func() {
		b.sendMu.Lock()
		b.closed.Store(true)
		close(b.ops)
		b.sendMu.Unlock()
		<-b.writerDone

		b.mu.Lock()
		b.wclosed = true
		for w := range b.watchers {
			b.dropLocked(w)
		}
		b.mu.Unlock()

		if err := b.db.Close(); err != nil {
			b.closeErr = fmt.Errorf("store: close %s: %w", b.path, err)
		}
	})
	return b.closeErr
}

// A ring keeps the last max events.
type ring struct {
	buf      []Event
	start    int // buf[start:] are the events held, oldest first
	max      int // events
	maxBytes int // bytes of keys and values
	bytes    int
}

func (r *ring) len() int { return len(r.buf) - r.start }

// at returns the i'th oldest event.
func (r *ring) at(i int) Event { return r.buf[r.start+i] }

func eventBytes(ev Event) int { return len(ev.Item.Key) + len(ev.Item.Value) + 64 }

// push adds ev and drops the oldest events while more than max events or
// maxBytes bytes are held (the newest event is always kept).
func (r *ring) push(ev Event) {
	if r.max == 0 {
		return
	}
	r.buf = append(r.buf, ev)
	r.bytes += eventBytes(ev)
	for r.len() > 1 && (r.len() > r.max || (r.maxBytes > 0 && r.bytes > r.maxBytes)) {
		r.bytes -= eventBytes(r.buf[r.start])
		r.buf[r.start] = Event{}
		r.start++
	}
	if r.start > len(r.buf)/2 && r.start > 64 {
		n := copy(r.buf, r.buf[r.start:])
		clear(r.buf[n:])
		r.buf, r.start = r.buf[:n], 0
	}
}

// BoltStats counts the work of the writer.
type BoltStats struct {
	// Commits is the number of write transactions committed (one fsync
	// each); Ops the number of write operations they carried. Ops/Commits
	// is the group-commit batch size.
	Commits, Ops int64
}

// Stats returns the writer's counters since open.
func (b *Bolt) Stats() BoltStats {
	return BoltStats{Commits: b.commits.Load(), Ops: b.written.Load()}
}
