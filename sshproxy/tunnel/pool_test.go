package tunnel

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestPool(t *testing.T) {
	t.Parallel()
	cl := newCluster(t, "node1")
	a := cl.startProxy("", nil, nil)
	b := cl.startProxy("", nil, nil)
	var ups atomic.Int32
	pool := NewPool(context.Background(), Client{
		Node:       "node1",
		Signer:     fixed(cl.nodeSigner("node1")),
		HostCAs:    cl.hostCAs,
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond,
		OnState: func(up bool, _ error) {
			if up {
				ups.Add(1)
			}
		},
	})
	defer pool.Close()
	only := func(p *proxy) func() bool {
		return func() bool { return slices.Equal(p.Connected(), []string{"node1"}) }
	}
	none := func(p *proxy) func() bool {
		return func() bool { return len(p.Connected()) == 0 }
	}

	pool.Set([]string{a.addr})
	waitFor(t, 10*time.Second, "tunnel to a", only(a))
	waitFor(t, 10*time.Second, "pool to report a", func() bool { return slices.Equal(pool.Connected(), []string{a.addr}) })

	// b is added later; duplicates and empty strings are ignored.
	pool.Set([]string{a.addr, b.addr, "", a.addr})
	waitFor(t, 10*time.Second, "tunnel to b", only(b))
	if got, want := pool.Addrs(), slices.Sorted(slices.Values([]string{a.addr, b.addr})); !slices.Equal(got, want) {
		t.Errorf("Addrs = %q, want %q", got, want)
	}
	if !only(a)() {
		t.Error("adding b disturbed a")
	}

	// a is dropped: Set returns once its client has stopped.
	pool.Set([]string{b.addr})
	if got := pool.Addrs(); !slices.Equal(got, []string{b.addr}) {
		t.Errorf("Addrs = %q, want only b", got)
	}
	waitFor(t, 10*time.Second, "a to lose the tunnel", none(a))
	waitFor(t, 10*time.Second, "pool to report only b", func() bool { return slices.Equal(pool.Connected(), []string{b.addr}) })
	if !only(b)() {
		t.Error("dropping a disturbed b")
	}
	if got := ups.Load(); got != 2 {
		t.Errorf("template OnState(true) called %d times, want 2", got)
	}

	pool.Close()
	waitFor(t, 10*time.Second, "b to lose the tunnel", none(b))
	pool.Set([]string{a.addr})
	if got := pool.Addrs(); len(got) != 0 {
		t.Errorf("Set after Close started %q", got)
	}
}
