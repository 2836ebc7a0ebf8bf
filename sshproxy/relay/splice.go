package relay

import (
	"io"
	"sync"

	"golang.org/x/crypto/ssh"
)

// copyBufferSize is the buffer of one copy: one SSH packet's worth, as
// x/crypto/ssh and OpenSSH use 32 KiB maximum packets.
const copyBufferSize = 32 << 10

// observedReader hands every chunk it reads to fn before returning it.
type observedReader struct {
	r  io.Reader
	fn func([]byte)
}

func (o observedReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	if n > 0 && o.fn != nil {
		o.fn(p[:n])
	}
	return n, err
}

// copyStream copies src to dst through one fixed buffer until src ends or
// dst fails, showing every chunk to fn (which may be nil). observedReader
// has no WriteTo and SSH channels have no ReadFrom, so io.CopyBuffer does
// use buf.
func copyStream(dst io.Writer, src io.Reader, fn func([]byte)) {
	buf := make([]byte, copyBufferSize)
	_, _ = io.CopyBuffer(dst, observedReader{src, fn}, buf)
}

// direction moves one side's output to the other side of a channel pair:
// data (and, for sessions, stderr) from src to dst, then EOF, and src's
// requests through handle. It ends once src has closed and everything it
// sent is passed on, and then closes dst. That order is what makes an
// exit-status reach the client before the channel's close.
type direction struct {
	dst, src ssh.Channel
	reqs     <-chan *ssh.Request // src's requests
	// handle answers one request from src, usually by relaying it to dst.
	handle func(*ssh.Request)
	// stderr also copies extended data type 1 (SSH_EXTENDED_DATA_STDERR).
	stderr bool
	// observe, if set, sees every chunk of data and stderr.
	observe func([]byte)
	// beforeEOF, if set, is called after the data has been copied and
	// before dst gets EOF; reqsDone is closed once src's requests have
	// ended, for a beforeEOF that waits on a request.
	beforeEOF func(reqsDone <-chan struct{})
}

func (d direction) run() {
	var data sync.WaitGroup
	data.Add(1)
	go func() {
		defer data.Done()
		copyStream(d.dst, d.src, d.observe)
	}()
	if d.stderr {
		data.Add(1)
		go func() {
			defer data.Done()
			copyStream(d.dst.Stderr(), d.src.Stderr(), d.observe)
		}()
	}
	reqsDone := make(chan struct{})
	eofSent := make(chan struct{})
	go func() {
		defer close(eofSent)
		data.Wait()
		if d.beforeEOF != nil {
			d.beforeEOF(reqsDone)
		}
		_ = d.dst.CloseWrite()
	}()
	for req := range d.reqs {
		d.handle(req)
	}
	close(reqsDone)
	<-eofSent
	_ = d.dst.Close()
}

// splice joins two channels that carry a byte stream (port, agent and X11
// forwards) until both have closed. Such channels have no requests of
// their own; "eow@openssh.com" is passed on and anything else refused.
func splice(a ssh.Channel, aReqs <-chan *ssh.Request, b ssh.Channel, bReqs <-chan *ssh.Request) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		direction{dst: b, src: a, reqs: aReqs, handle: streamRequest(b)}.run()
	}()
	go func() {
		defer wg.Done()
		direction{dst: a, src: b, reqs: bReqs, handle: streamRequest(a)}.run()
	}()
	wg.Wait()
}

// streamRequest handles a request on a forwarded byte-stream channel.
func streamRequest(dst ssh.Channel) func(*ssh.Request) {
	return func(req *ssh.Request) {
		if req.Type != reqEOW {
			_ = req.Reply(false, nil)
			return
		}
		ok, err := dst.SendRequest(req.Type, req.WantReply, req.Payload)
		_ = req.Reply(ok && err == nil, nil)
	}
}
