package sshproxy

import (
	"net"
	"sync"
)

// handshakeLimit counts the connections logging in, in all and per
// source address, so that one source that opens connections and stalls
// cannot take every slot and keep everyone else out until the handshake
// timeout (Config.MaxUnauthenticated, MaxUnauthenticatedPerSource).
type handshakeLimit struct {
	max, perSource int

	mu       sync.Mutex
	total    int
	bySource map[string]int
}

// acquire takes a slot for a connection from remote; ok is false, with
// the reason for the log, when a cap is reached.
func (l *handshakeLimit) acquire(remote net.Addr) (release func(), ok bool, why string) {
	src := sourceOf(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max {
		return nil, false, "too many unauthenticated connections"
	}
	if l.perSource > 0 && l.bySource[src] >= l.perSource {
		return nil, false, "too many unauthenticated connections from one address"
	}
	if l.bySource == nil {
		l.bySource = map[string]int{}
	}
	l.total++
	l.bySource[src]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.bySource[src]--; l.bySource[src] <= 0 {
				delete(l.bySource, src)
			}
		})
	}, true, ""
}

// sourceOf is the IP of an address (the whole address if it has none).
func sourceOf(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}
