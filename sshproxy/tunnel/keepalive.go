package tunnel

import (
	"sync/atomic"

	"golang.org/x/crypto/ssh"
)

// prober sends keepalive probes on one connection and counts the ticks at
// which the previous probe was still unanswered. Its owner calls tick once
// per keepalive interval; a probe runs in a short-lived goroutine (a
// want-reply request blocks until answered or the connection closes), and at
// most one is in flight per connection.
type prober struct {
	conn        ssh.Conn
	outstanding atomic.Bool
	missed      atomic.Int32
}

// tick sends a probe, or counts a miss if the last one is unanswered. It
// reports whether max probes in a row went unanswered: the peer is dead.
func (p *prober) tick(max int) (dead bool) {
	if p.outstanding.Load() {
		return int(p.missed.Add(1)) >= max
	}
	p.outstanding.Store(true)
	go func() {
		// Any reply, success or failure, shows the peer is alive.
		if _, _, err := p.conn.SendRequest(keepaliveRequest, true, nil); err != nil {
			return // the connection is closed; leave outstanding set
		}
		p.missed.Store(0)
		p.outstanding.Store(false)
	}()
	return false
}

// seen records traffic from the peer, which shows it is alive.
func (p *prober) seen() {
	p.missed.Store(0)
}
