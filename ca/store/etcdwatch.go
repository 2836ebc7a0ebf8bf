package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Bounds of the wait before an etcd watch that ended is opened again.
const (
	etcdResumeDelay    = 50 * time.Millisecond
	etcdMaxResumeDelay = 2 * time.Second
)

// Watch implements Store. It delivers events from fromRev on however the
// connection fares: the client resumes a broken watch stream on any member
// at the revision after the last event it received, and when the etcd
// watch itself ends (its member lost the leader, say) a new one starts
// there. If etcd compacted the events the watcher has not yet seen, its
// channel is closed so that the caller re-Lists. A watch from a revision
// at or below etcd's compaction revision fails with ErrCompacted: etcd
// keeps the values at that revision but not the deletions made at it.
func (e *Etcd) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan Event, error) {
	if err := e.begin(ctx); err != nil {
		return nil, err
	}
	defer e.inflight.Done()
	start, err := e.watchStart(ctx, prefix, fromRev)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(e.watchCtx, cancel) // Close ends every watch
	out := make(chan Event, e.watchBuf)
	// Close waits for in-flight calls before it waits for watchers, so
	// this Add cannot race with that Wait.
	e.watchers.Add(1)
	go func() {
		defer e.watchers.Done()
		defer close(out)
		defer stop()
		defer cancel()
		e.follow(wctx, prefix, start, out)
	}()
	return out, nil
}

// watchStart returns the first revision a watch from fromRev delivers.
func (e *Etcd) watchStart(ctx context.Context, prefix string, fromRev int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if fromRev <= 0 {
		// Changes after the call: after the revision a read sees now.
		resp, err := e.cli.Get(ctx, e.rangeStart(""), clientv3.WithKeysOnly())
		if err != nil {
			return 0, e.requestError(prefix, nil, err)
		}
		return resp.Header.Revision + 1, nil
	}
	compacted, err := e.compacted(ctx, fromRev)
	if err != nil {
		return 0, e.requestError(prefix, nil, err)
	}
	if compacted {
		return 0, fmt.Errorf("store: watch %q from revision %d: etcd has compacted its history past it: %w", prefix, fromRev, ErrCompacted)
	}
	return fromRev, nil
}

// compacted reports whether the events of revision rev may be gone, that
// is, whether etcd has compacted at rev-1 or later: a read at rev-1 fails
// then.
func (e *Etcd) compacted(ctx context.Context, rev int64) (bool, error) {
	if rev <= 1 {
		return false, nil
	}
	_, err := e.cli.Get(ctx, e.rangeStart(""), clientv3.WithRev(rev-1), clientv3.WithKeysOnly())
	switch {
	case err == nil, errors.Is(err, rpctypes.ErrFutureRev):
		return false, nil
	case errors.Is(err, rpctypes.ErrCompacted):
		return true, nil
	}
	return false, err
}

// follow sends the changes under prefix from revision next on to out until
// ctx is done, out is full, or the events due next were compacted.
func (e *Etcd) follow(ctx context.Context, prefix string, next int64, out chan<- Event) {
	delay := etcdResumeDelay
	for {
		// RequireLeader: a member cut off from the others ends the
		// watch rather than go silent, and it resumes on another.
		wch := e.cli.Watch(clientv3.WithRequireLeader(ctx), e.rangeStart(prefix),
			clientv3.WithRange(e.rangeEnd(prefix)), clientv3.WithRev(next))
		from := next
		var resume bool
		next, resume = e.forward(ctx, wch, next, out)
		if !resume {
			return
		}
		if next > from {
			delay = etcdResumeDelay
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, etcdMaxResumeDelay)
			cctx, cancel := context.WithTimeout(ctx, e.timeout)
			compacted, err := e.compacted(cctx, next)
			cancel()
			if compacted {
				return
			}
			if err == nil {
				break
			}
		}
	}
}

// forward sends the events wch delivers, from revision next on, to out. It
// returns the revision to resume at and whether to resume: not once ctx is
// done, out is full (the watcher fell behind), events due were compacted
// or etcd ended the watch for a reason that would end a new one too.
func (e *Etcd) forward(ctx context.Context, wch clientv3.WatchChan, next int64, out chan<- Event) (int64, bool) {
	var ended error
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return next, false
		}
		if resp.Canceled {
			ended = resp.Err() // the channel closes next
			continue
		}
		upto := next
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision < next {
				continue // delivered before a resume
			}
			if ctx.Err() != nil {
				return next, false
			}
			select {
			case out <- e.event(ev):
			default:
				return next, false
			}
			upto = ev.Kv.ModRevision + 1
		}
		next = upto
	}
	return next, ctx.Err() == nil && resumable(ended)
}

// resumable reports whether a watch that etcd ended with err may be opened
// again.
func resumable(err error) bool {
	if err == nil || errors.Is(err, rpctypes.ErrNoLeader) {
		return true
	}
	s, _ := status.FromError(err)
	return s.Code() == codes.Unavailable
}

func (e *Etcd) event(ev *clientv3.Event) Event {
	if ev.Type == clientv3.EventTypeDelete {
		it := e.item(ev.Kv)
		it.Value = nil
		return Event{Type: EventDelete, Item: it}
	}
	return Event{Type: EventPut, Item: e.item(ev.Kv)}
}
