package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// markerRE matches the line each session's shell loop prints:
// SOAK-<session>-<counter>-<check>, check = (counter*31+session) % 997.
// The shell's echo of the typed loop holds "SOAK-$s-...", which does not
// match.
var markerRE = regexp.MustCompile(`SOAK-(\d+)-(\d+)-(\d+)`)

func markerCheck(session, n int) int { return (n*31 + session) % 997 }

// loopCommand is what each session types at its shell: a loop that
// prints one marker every interval and costs a sleep(1) per marker.
func loopCommand(session int, interval time.Duration) string {
	return fmt.Sprintf("s=%d n=0; while sleep %d; do n=$((n+1)); echo \"SOAK-$s-$n-$(( (n*31+s) %% 997 ))\"; done\n",
		session, int(interval.Seconds()))
}

// session is one interactive PTY session and what its client saw.
type session struct {
	id   int
	user string
	node string
	hop  string

	// Set by open.
	opened    bool
	openErr   error
	openTook  time.Duration // dial to first marker
	loginTook time.Duration // dial to the shell started, both logins done

	mu       sync.Mutex
	last     int       // last marker counter seen, 0 before the first
	lastAt   time.Time // when it arrived
	maxGap   time.Duration
	seqErr   error // first bad marker: out of order or bad check
	readDone chan struct{}
	readErr  error

	// Set by finish.
	closeErr error

	client  *ssh.Client
	closeFn func()
	sess    *ssh.Session
	stdin   io.WriteCloser
}

// open logs in, starts a PTY shell, types the loop and waits for the
// first marker (at most firstWithin).
func (s *session) open(ctx context.Context, d *dialer, u sshUser, interval, firstWithin time.Duration) {
	start := time.Now()
	s.openErr = s.start(ctx, d, u, interval)
	s.loginTook = time.Since(start)
	if s.openErr == nil {
		s.openErr = s.waitFirst(ctx, firstWithin)
	}
	s.openTook = time.Since(start)
	s.opened = s.openErr == nil
	if !s.opened && s.closeFn != nil {
		s.closeFn()
	}
}

func (s *session) start(ctx context.Context, d *dialer, u sshUser, interval time.Duration) error {
	var err error
	s.client, s.closeFn, err = d.dial(ctx, u, s.node, s.hop)
	if err != nil {
		return err
	}
	if s.sess, err = s.client.NewSession(); err != nil {
		return fmt.Errorf("opening the session channel: %w", err)
	}
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
	if err := s.sess.RequestPty("xterm", 40, 120, modes); err != nil {
		return fmt.Errorf("pty-req: %w", err)
	}
	if s.stdin, err = s.sess.StdinPipe(); err != nil {
		return err
	}
	out, err := s.sess.StdoutPipe()
	if err != nil {
		return err
	}
	if err := s.sess.Shell(); err != nil {
		return fmt.Errorf("shell: %w", err)
	}
	s.readDone = make(chan struct{})
	go s.read(out)
	if _, err := io.WriteString(s.stdin, loopCommand(s.id, interval)); err != nil {
		return fmt.Errorf("typing the loop: %w", err)
	}
	return nil
}

// read checks every marker the session prints until its output ends.
func (s *session) read(out io.Reader) {
	defer close(s.readDone)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		for _, m := range markerRE.FindAllStringSubmatch(sc.Text(), -1) {
			s.marker(m)
		}
	}
	s.mu.Lock()
	s.readErr = sc.Err()
	s.mu.Unlock()
}

func (s *session) marker(m []string) {
	id, _ := strconv.Atoi(m[1])
	n, _ := strconv.Atoi(m[2])
	c, _ := strconv.Atoi(m[3])
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.seqErr != nil:
		return
	case id != s.id:
		s.seqErr = fmt.Errorf("marker of session %d in session %d", id, s.id)
	case n != s.last+1:
		s.seqErr = fmt.Errorf("marker %d after %d", n, s.last)
	case c != markerCheck(id, n):
		s.seqErr = fmt.Errorf("marker %d has check %d, want %d", n, c, markerCheck(id, n))
	}
	if s.seqErr != nil {
		return
	}
	if s.last > 0 {
		s.maxGap = max(s.maxGap, now.Sub(s.lastAt))
	}
	s.last, s.lastAt = n, now
}

// seen returns the last counter seen and when.
func (s *session) seen() (int, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.lastAt
}

func (s *session) waitFirst(ctx context.Context, within time.Duration) error {
	deadline := time.After(within)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if n, _ := s.seen(); n > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.readDone:
			return fmt.Errorf("the session's output ended before the first marker: %v", s.readErr)
		case <-deadline:
			return fmt.Errorf("no marker within %v", within)
		case <-tick.C:
		}
	}
}

// finish stops the loop with Ctrl-C, exits the shell and waits for the
// session to end with exit status 0 and its output to close.
func (s *session) finish(within time.Duration) {
	defer s.closeFn()
	s.mu.Lock()
	if s.last > 0 {
		s.maxGap = max(s.maxGap, time.Since(s.lastAt))
	}
	s.mu.Unlock()
	select {
	case <-s.readDone:
		s.closeErr = fmt.Errorf("the session ended on its own: %v", s.readErr)
		return
	default:
	}
	// Two interrupts, a moment apart: the first may land between the
	// loop's sleeps.
	_, err := io.WriteString(s.stdin, "\x03")
	time.Sleep(300 * time.Millisecond)
	if err == nil {
		_, err = io.WriteString(s.stdin, "\x03")
	}
	time.Sleep(300 * time.Millisecond)
	if err == nil {
		_, err = io.WriteString(s.stdin, "exit 0\n")
	}
	if err != nil {
		s.closeErr = fmt.Errorf("typing exit: %w", err)
		return
	}
	waited := make(chan error, 1)
	go func() { waited <- s.sess.Wait() }()
	select {
	case err = <-waited:
	case <-time.After(within):
		err = fmt.Errorf("the shell did not exit within %v", within)
	}
	if err != nil {
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("exit status %d", ee.ExitStatus())
		}
		s.closeErr = err
		return
	}
	select {
	case <-s.readDone:
	case <-time.After(within):
		s.closeErr = errors.New("the output did not end after exit")
	}
}

// failure is why the session counts as failed, or nil.
func (s *session) failure(stall time.Duration) error {
	if s.openErr != nil {
		return fmt.Errorf("open: %w", s.openErr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.seqErr != nil:
		return s.seqErr
	case s.maxGap > stall:
		return fmt.Errorf("%v without a marker (limit %v)", s.maxGap.Round(time.Second), stall)
	case s.closeErr != nil:
		return fmt.Errorf("close: %w", s.closeErr)
	}
	return nil
}
