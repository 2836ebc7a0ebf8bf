package client

import (
	"net/http"
	"time"
)

// serverDate is a response's Date header and when, on the local monotonic
// clock, the response arrived.
type serverDate struct {
	date     time.Time
	received time.Time
}

// noteDate keeps the Date header of resp (net/http servers, teleport-ca
// among them, send one with every response).
func (c *Client) noteDate(resp *http.Response) {
	d, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return
	}
	c.date.Store(&serverDate{date: d, received: time.Now()})
}

// ClockSkew estimates how far the server's clock is ahead of now (negative:
// behind), from the Date header of the last response: that date, moved on
// by the time elapsed since it arrived, minus now. Callers pass their own
// clock's reading. The estimate is good to about a second (Date has whole
// seconds; the round trip adds its share). ok is false before any
// response carried a Date.
func (c *Client) ClockSkew(now time.Time) (skew time.Duration, ok bool) {
	d := c.date.Load()
	if d == nil {
		return 0, false
	}
	server := d.date.Add(time.Since(d.received))
	return server.Sub(now).Round(time.Second), true
}
