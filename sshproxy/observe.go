package sshproxy

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/opensshca/suite/sshproxy/recorder"
	"github.com/opensshca/suite/sshproxy/relay"
)

// checkRecording tells whether a new recorded session can be written:
// the recording directory exists, is writable, and has the configured
// free space.
func (p *Proxy) checkRecording() error {
	dir := filepath.Join(p.cfg.DataDir, dirRecordings)
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("recording directory %s: %w", dir, err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < p.cfg.MinRecordingFree {
		return fmt.Errorf("recording directory %s has %d bytes free, less than the %d required", dir, free, p.cfg.MinRecordingFree)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("recording directory %s is not writable: %w", dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// observer records one relayed connection: an asciicast file per PTY
// channel, audit events for commands, exits, transfers and forwards, and
// what runs in the session for the session list.
type observer struct {
	p      *Proxy
	s      *activeSession
	record bool
	log    *slog.Logger
	cancel func()
	open   map[int]*channelState
}

type channelState struct {
	rec       *recorder.Recorder
	recID     string
	what      string // "shell", "exec: CMD", "subsystem: sftp"
	command   string
	subsystem string
	exit      string
	failed    bool
}

func newObserver(p *Proxy, s *activeSession, record bool, log *slog.Logger, cancel func()) *observer {
	return &observer{p: p, s: s, record: record, log: log, cancel: cancel, open: map[int]*channelState{}}
}

func (o *observer) state(ch *relay.Channel) *channelState {
	st, _ := ch.State.(*channelState)
	if st == nil {
		st = &channelState{}
		ch.State = st
		o.open[ch.ID] = st
	}
	return st
}

func (o *observer) SessionOpened(ch *relay.Channel) { o.state(ch) }

func (o *observer) PTY(ch *relay.Channel, term string, cols, rows uint32) {
	st := o.state(ch)
	if !o.record || st.rec != nil {
		return
	}
	id := fmt.Sprintf("%s-%d", o.s.info.ID, ch.ID)
	rec, err := recorder.Create(filepath.Join(o.p.cfg.DataDir, dirRecordings), id, recorder.Header{
		Width: int(cols), Height: int(rows), Timestamp: o.p.cfg.Clock(), Term: term,
		User: o.s.info.User, Login: o.s.info.Login, Node: o.s.info.Node, SessionID: o.s.info.ID,
		ClientAddr: o.s.info.ClientAddr, Proxy: o.p.Name(), Channel: ch.ID,
	}, recorder.Options{RecordInput: o.p.cfg.RecordInput, Clock: o.p.cfg.Clock})
	if err != nil {
		o.recordingFailed(st, err)
		return
	}
	st.rec, st.recID = rec, id
}

// recordingFailed applies the configured behaviour when a recording
// cannot be written: close the session (refuse) or carry on unrecorded,
// with an audit event either way.
func (o *observer) recordingFailed(st *channelState, err error) {
	if st.failed {
		return
	}
	st.failed = true
	o.log.Error("recording failed", "err", err, "action", o.p.cfg.OnRecordingFailure)
	ev := event("recording.failed", o.s.info.User, false, o.s.info.ClientAddr)
	ev.Fields["session"], ev.Fields["node"], ev.Fields["reason"] = o.s.info.ID, o.s.info.Node, err.Error()
	ev.Fields["action"] = o.p.cfg.OnRecordingFailure
	o.p.events.add(ev)
	if o.p.cfg.OnRecordingFailure == "refuse" {
		o.s.terminate("recording failed")
		o.cancel()
	}
}

func (o *observer) Resize(ch *relay.Channel, cols, rows uint32) {
	if st := o.state(ch); st.rec != nil {
		if err := st.rec.Resize(int(cols), int(rows)); err != nil {
			o.recordingFailed(st, err)
		}
	}
}

func (o *observer) Exec(ch *relay.Channel, command string) {
	st := o.state(ch)
	st.command = command
	st.what = "exec: " + truncate(command, 200)
	o.s.addChannel(st.what)
	ev := o.event("session.exec")
	ev.Fields["command"] = truncate(command, 4000)
	ev.Fields["channel"] = fmt.Sprint(ch.ID)
	o.p.events.add(ev)
}

func (o *observer) Shell(ch *relay.Channel) {
	st := o.state(ch)
	st.what = "shell"
	o.s.addChannel("shell")
	ev := o.event("session.shell")
	ev.Fields["channel"] = fmt.Sprint(ch.ID)
	if st.recID != "" {
		ev.Fields["recording"] = st.recID
	}
	o.p.events.add(ev)
}

func (o *observer) Subsystem(ch *relay.Channel, name string) {
	st := o.state(ch)
	st.subsystem = name
	st.what = "subsystem: " + name
	o.s.addChannel(st.what)
	ev := o.event("session.subsystem")
	ev.Fields["subsystem"] = truncate(name, 200)
	ev.Fields["channel"] = fmt.Sprint(ch.ID)
	o.p.events.add(ev)
}

func (o *observer) Output(ch *relay.Channel, b []byte) {
	if st := o.state(ch); st.rec != nil && !st.failed {
		if err := st.rec.Output(b); err != nil {
			o.recordingFailed(st, err)
		}
	}
}

func (o *observer) Input(ch *relay.Channel, b []byte) {
	if st := o.state(ch); st.rec != nil && !st.failed && o.p.cfg.RecordInput {
		if err := st.rec.Input(b); err != nil {
			o.recordingFailed(st, err)
		}
	}
}

func (o *observer) Exit(ch *relay.Channel, status *uint32, signal string) {
	st := o.state(ch)
	ev := o.event("session.exit")
	ev.Fields["channel"] = fmt.Sprint(ch.ID)
	if status != nil {
		st.exit = fmt.Sprint(*status)
		ev.Fields["status"] = st.exit
	}
	if signal != "" {
		st.exit = "signal " + signal
		ev.Fields["signal"] = truncate(signal, 64)
	}
	if st.command != "" {
		ev.Fields["command"] = truncate(st.command, 4000)
	}
	o.p.events.add(ev)
}

func (o *observer) SessionClosed(ch *relay.Channel, in, out int64) {
	st := o.state(ch)
	delete(o.open, ch.ID)
	o.s.removeChannel(st.what)
	o.closeRecording(st)
	if ev, ok := o.transfer(st, in, out); ok {
		ev.Fields["channel"] = fmt.Sprint(ch.ID)
		o.p.events.add(ev)
	}
}

// transfer describes an scp or sftp channel as a transfer event: scp's
// command line shows the path and direction, sftp shows only the sizes
// (its paths are inside the encrypted-to-us but binary protocol; the
// bytes each way are what the proxy can state for certain).
func (o *observer) transfer(st *channelState, in, out int64) (eventT, bool) {
	switch {
	case st.subsystem == "sftp":
		ev := o.event("session.transfer")
		ev.Fields["protocol"] = "sftp"
		ev.Fields["bytes_to_node"], ev.Fields["bytes_from_node"] = fmt.Sprint(in), fmt.Sprint(out)
		return ev, true
	case strings.HasPrefix(st.command, "scp "):
		ev := o.event("session.transfer")
		ev.Fields["protocol"] = "scp"
		args := strings.Fields(st.command)
		dir, path := "", ""
		for i, a := range args[1:] {
			switch {
			case a == "-t":
				dir = "upload"
			case a == "-f":
				dir = "download"
			case a == "--" && i+2 < len(args):
				path = strings.Join(args[i+2:], " ")
			case !strings.HasPrefix(a, "-") && path == "":
				path = strings.Join(args[i+1:], " ")
			}
			if path != "" {
				break
			}
		}
		ev.Fields["direction"], ev.Fields["path"] = dir, truncate(path, 1024)
		ev.Fields["bytes_to_node"], ev.Fields["bytes_from_node"] = fmt.Sprint(in), fmt.Sprint(out)
		if st.exit != "" {
			ev.Fields["exit"] = st.exit
		}
		return ev, true
	}
	return eventT{}, false
}

func (o *observer) Forward(kind, detail string, allowed bool) {
	ev := o.event("session.forward")
	ev.Success = allowed
	ev.Fields["kind"], ev.Fields["detail"] = kind, truncate(detail, 512)
	o.p.events.add(ev)
	if allowed {
		o.s.addChannel(kind + " " + truncate(detail, 100))
	}
}

func (o *observer) event(typ string) eventT {
	ev := event(typ, o.s.info.User, true, o.s.info.ClientAddr)
	ev.Fields["session"], ev.Fields["login"], ev.Fields["node"] = o.s.info.ID, o.s.info.Login, o.s.info.Node
	return ev
}

func (o *observer) closeRecording(st *channelState) {
	if st.rec == nil {
		return
	}
	rec := st.rec
	st.rec = nil
	if err := rec.Close(); err != nil {
		o.log.Error("closing a recording", "recording", st.recID, "err", err)
	}
	o.p.spool.Notify(st.recID)
}

// finish closes recordings the relay left open (it calls SessionClosed
// for every channel, so this is a safety net).
func (o *observer) finish() {
	for id, st := range o.open {
		o.closeRecording(st)
		delete(o.open, id)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
