package tunnel

import (
	"context"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// Pool keeps one Client per proxy address, so that a node holds a tunnel to
// every proxy the CA lists and picks up proxies added later.
type Pool struct {
	ctx      context.Context
	template Client

	mu      sync.Mutex
	closed  bool
	clients map[string]*pooled
}

type pooled struct {
	cancel    context.CancelFunc
	done      chan struct{}
	connected atomic.Bool
}

// NewPool returns a pool whose clients are copies of template with
// ProxyAddr set, running until ctx is done, Set drops their address or
// Close. template.OnState, if set, is shared by all of them; Connected says
// which proxies have a tunnel up.
func NewPool(ctx context.Context, template Client) *Pool {
	return &Pool{ctx: ctx, template: template, clients: make(map[string]*pooled)}
}

// Set makes the pool's proxies exactly addrs (duplicates and empty strings
// ignored): it starts a Client for each new address, and stops those whose
// address is gone, waiting for them to close their tunnels.
func (p *Pool) Set(addrs []string) {
	want := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		if a != "" {
			want[a] = true
		}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	var stopped []*pooled
	for addr, pc := range p.clients {
		if !want[addr] {
			pc.cancel()
			stopped = append(stopped, pc)
			delete(p.clients, addr)
		}
	}
	for addr := range want {
		if p.clients[addr] == nil {
			p.clients[addr] = p.start(addr)
		}
	}
	p.mu.Unlock()
	for _, pc := range stopped {
		<-pc.done
	}
}

func (p *Pool) start(addr string) *pooled {
	ctx, cancel := context.WithCancel(p.ctx)
	pc := &pooled{cancel: cancel, done: make(chan struct{})}
	c := p.template
	c.ProxyAddr = addr
	c.OnState = func(up bool, err error) {
		pc.connected.Store(up)
		if p.template.OnState != nil {
			p.template.OnState(up, err)
		}
	}
	go func() {
		defer close(pc.done)
		_ = c.Run(ctx)
	}()
	return pc
}

// Addrs returns the sorted addresses the pool has a client for.
func (p *Pool) Addrs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.clients))
}

// Connected returns the sorted addresses whose tunnel is up.
func (p *Pool) Connected() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var up []string
	for a, pc := range p.clients {
		if pc.connected.Load() {
			up = append(up, a)
		}
	}
	slices.Sort(up)
	return up
}

// Close stops every client and waits for them; later calls to Set do
// nothing.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	stopped := slices.Collect(maps.Values(p.clients))
	clear(p.clients)
	p.mu.Unlock()
	for _, pc := range stopped {
		pc.cancel()
	}
	for _, pc := range stopped {
		<-pc.done
	}
}
