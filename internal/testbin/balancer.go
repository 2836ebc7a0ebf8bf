package testbin

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Balancer is a TCP load balancer on a loopback port, as operators put in
// front of several CA replicas or proxies: each connection goes to the
// next backend in turn, and to the one after it when a backend refuses
// the connection. It splices bytes and knows nothing of what they carry,
// so TLS and SSH run end to end between client and backend.
type Balancer struct {
	Addr string

	ln       net.Listener
	mu       sync.Mutex
	backends []string
	next     int
	conns    map[net.Conn]bool
	wg       sync.WaitGroup
}

// StartBalancer listens on a free loopback port in front of backends and
// stops when the test ends.
func StartBalancer(t testing.TB, backends ...string) *Balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testbin: balancer: %v", err)
	}
	b := &Balancer{Addr: ln.Addr().String(), ln: ln, backends: backends, conns: map[net.Conn]bool{}}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(b.Close)
	return b
}

// Close stops accepting and closes every connection.
func (b *Balancer) Close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Balancer) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.handle(c)
		}()
	}
}

func (b *Balancer) track(c net.Conn, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if on {
		b.conns[c] = true
	} else {
		delete(b.conns, c)
	}
}

// dial connects to the next backend that accepts.
func (b *Balancer) dial() net.Conn {
	b.mu.Lock()
	start := b.next
	b.next = (b.next + 1) % len(b.backends)
	b.mu.Unlock()
	for i := range b.backends {
		addr := b.backends[(start+i)%len(b.backends)]
		if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
			return c
		}
	}
	return nil
}

func (b *Balancer) handle(c net.Conn) {
	b.track(c, true)
	defer b.track(c, false)
	defer c.Close()
	up := b.dial()
	if up == nil {
		return
	}
	b.track(up, true)
	defer b.track(up, false)
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
}
