package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdListPage is how many keys one request of List reads.
const etcdListPage = 1000

// rangeStart and rangeEnd bound the etcd keys of the store keys that start
// with prefix. etcd has no empty key: the range of everything starts at
// "\x00".
func (e *Etcd) rangeStart(prefix string) string {
	if k := e.prefix + prefix; k != "" {
		return k
	}
	return "\x00"
}

func (e *Etcd) rangeEnd(prefix string) string {
	return clientv3.GetPrefixRangeEnd(e.prefix + prefix)
}

// item turns an etcd key-value into an Item. An empty value is non-nil,
// as with bbolt, so that only deletions carry a nil value.
func (e *Etcd) item(kv *mvccpb.KeyValue) Item {
	v := kv.Value
	if v == nil {
		v = []byte{}
	}
	return Item{Key: strings.TrimPrefix(string(kv.Key), e.prefix), Value: v, Revision: kv.ModRevision}
}

// Get implements Store.
func (e *Etcd) Get(ctx context.Context, key string) (Item, error) {
	if err := e.begin(ctx); err != nil {
		return Item{}, err
	}
	defer e.inflight.Done()
	if key == "" {
		return Item{}, fmt.Errorf("store: %q: %w", key, ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	resp, err := e.cli.Get(ctx, e.prefix+key)
	if err != nil {
		return Item{}, e.requestError(key, nil, err)
	}
	if len(resp.Kvs) == 0 {
		return Item{}, fmt.Errorf("store: %q: %w", key, ErrNotFound)
	}
	return e.item(resp.Kvs[0]), nil
}

// List implements Store. It reads etcdListPage keys per request, every
// page at the revision of the first, so the listing is one consistent
// snapshot however long it is.
func (e *Etcd) List(ctx context.Context, prefix string) ([]Item, int64, error) {
	if err := e.begin(ctx); err != nil {
		return nil, 0, err
	}
	defer e.inflight.Done()
	for attempt := 0; ; attempt++ {
		items, rev, err := e.list(ctx, prefix)
		// etcd compacted the snapshot between two pages: take a new one.
		if errors.Is(err, rpctypes.ErrCompacted) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, 0, e.requestError(prefix, nil, err)
		}
		return items, rev, nil
	}
}

func (e *Etcd) list(ctx context.Context, prefix string) ([]Item, int64, error) {
	var items []Item
	var rev int64
	from, end := e.rangeStart(prefix), e.rangeEnd(prefix)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(etcdListPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		rctx, cancel := context.WithTimeout(ctx, e.timeout)
		resp, err := e.cli.Get(rctx, from, opts...)
		cancel()
		if err != nil {
			return nil, 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			items = append(items, e.item(kv))
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return items, rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Put implements Store.
func (e *Etcd) Put(ctx context.Context, key string, value []byte) (int64, error) {
	resp, err := e.txn(ctx, key, value, nil, clientv3.OpPut(e.prefix+key, string(value)))
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// Create implements Store: the put happens only if the key's
// CreateRevision is 0, that is, if it does not exist.
func (e *Etcd) Create(ctx context.Context, key string, value []byte) (int64, error) {
	k := e.prefix + key
	resp, err := e.txn(ctx, key, value, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), "=", 0)}, clientv3.OpPut(k, string(value)))
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("store: %q: %w", key, ErrExists)
	}
	return resp.Header.Revision, nil
}

// CompareAndSwap implements Store: the put happens only if the key exists
// and its ModRevision is rev. Otherwise the transaction reads the key, to
// tell ErrNotFound from ErrConflict.
func (e *Etcd) CompareAndSwap(ctx context.Context, key string, rev int64, value []byte) (int64, error) {
	k := e.prefix + key
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(k), ">", 0),
		clientv3.Compare(clientv3.ModRevision(k), "=", rev),
	}
	resp, err := e.txn(ctx, key, value, cmps, clientv3.OpPut(k, string(value)), clientv3.OpGet(k, clientv3.WithKeysOnly()))
	if err != nil {
		return 0, err
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return 0, fmt.Errorf("store: %q: %w", key, ErrNotFound)
	}
	return 0, fmt.Errorf("store: %q: at revision %d, not %d: %w", key, kvs[0].ModRevision, rev, ErrConflict)
}

// Delete implements Store: the delete happens only if the key exists, so
// that deleting an absent key neither succeeds nor advances the revision.
func (e *Etcd) Delete(ctx context.Context, key string) error {
	k := e.prefix + key
	resp, err := e.txn(ctx, key, nil, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k), ">", 0)}, clientv3.OpDelete(k))
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("store: %q: %w", key, ErrNotFound)
	}
	return nil
}

// txn runs If(cmps) Then(then) Else(els...) as one etcd transaction.
//
// Once sent, a write is not abandoned when ctx is canceled, as with bbolt:
// its outcome is the only truth, and only RequestTimeout bounds it. A write
// that fails with a timeout or a lost connection may still have been
// applied.
func (e *Etcd) txn(ctx context.Context, key string, value []byte, cmps []clientv3.Cmp, then clientv3.Op, els ...clientv3.Op) (*clientv3.TxnResponse, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := e.begin(ctx); err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.timeout)
	defer cancel()
	resp, err := e.cli.Txn(ctx).If(cmps...).Then(then).Else(els...).Commit()
	if err != nil {
		return nil, e.requestError(key, value, err)
	}
	return resp, nil
}
