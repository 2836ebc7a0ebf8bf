package sshproxy

import (
	"bufio"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/opensshca/suite/internal/atomicfile"
)

// fileAuditQueue holds the audit events the CA does not have yet, one
// JSON object per line, in the order they happened. Lines are appended
// as events happen (a kill -9 loses none: the kernel has them; the queue
// syncs the file to disk every few seconds) and the file is rewritten to
// what is left after each round of sending, usually to nothing.
const fileAuditQueue = "audit_queue.jsonl"

// maxAuditLine bounds one line when reading the file back.
const maxAuditLine = 1 << 20

// queueFile is the auditQueue's file; its methods run under the queue's
// mutex.
type queueFile struct {
	path  string
	f     *os.File
	log   *slog.Logger
	dirty bool // written since the last sync
	stale bool // holds events no longer queued (overflow)
}

// open reads the events a previous run left and opens the file for
// appending. A line that does not parse (a write cut by a crash) is
// skipped and logged; a file that cannot be opened leaves the queue in
// memory only, logged.
func (d *queueFile) open(dir string, log *slog.Logger) []eventT {
	d.log = log
	if dir == "" {
		return nil // no data directory (unit tests): memory only
	}
	d.path = filepath.Join(dir, fileAuditQueue)
	var out []eventT
	if f, err := os.Open(d.path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, maxAuditLine)
		bad := 0
		for sc.Scan() {
			var ev eventT
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.ID == "" || ev.Type == "" {
				bad++
				continue
			}
			if ev.Fields == nil {
				ev.Fields = map[string]string{}
			}
			out = append(out, ev)
		}
		if err := sc.Err(); err != nil {
			bad++
		}
		f.Close()
		if bad > 0 {
			log.Warn("skipped damaged lines in the audit queue file (a write cut by a crash)", "file", d.path, "lines", bad)
			d.stale = true
		}
		if len(out) > maxQueuedEvents {
			out = out[len(out)-maxQueuedEvents:]
			d.stale = true
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		log.Error("reading the audit queue file", "file", d.path, "err", err)
	}
	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		log.Error("audit events are queued in memory only", "file", d.path, "err", err)
		return out
	}
	d.f = f
	return out
}

// append writes one event at the end of the file.
func (d *queueFile) append(ev eventT) {
	if d.f == nil {
		return
	}
	b, err := json.Marshal(ev)
	if err == nil {
		_, err = d.f.Write(append(b, '\n'))
	}
	if err != nil {
		d.log.Error("writing an audit event to the queue file; it is in this log", "err", err)
		d.stale = true // a partial line: rewrite at the next round
		return
	}
	d.dirty = true
}

// sync flushes appended events to the disk.
func (d *queueFile) sync() {
	if d.f != nil && d.dirty {
		if err := d.f.Sync(); err != nil {
			d.log.Warn("syncing the audit queue file", "err", err)
		}
		d.dirty = false
	}
}

// rewrite replaces the file with the events still queued.
func (d *queueFile) rewrite(q []eventT) {
	if d.f == nil {
		return
	}
	if len(q) == 0 {
		if err := d.f.Truncate(0); err != nil {
			d.log.Warn("emptying the audit queue file", "err", err)
			return
		}
		d.stale, d.dirty = false, false
		return
	}
	var b []byte
	for _, ev := range q {
		line, err := json.Marshal(ev)
		if err != nil {
			continue
		}
		b = append(append(b, line...), '\n')
	}
	if err := atomicfile.WriteFile(d.path, b, 0o600); err != nil {
		d.log.Warn("rewriting the audit queue file", "err", err)
		return
	}
	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.log.Error("audit events are queued in memory only", "file", d.path, "err", err)
		d.f.Close()
		d.f = nil
		return
	}
	d.f.Close()
	d.f = f
	d.stale, d.dirty = false, false
}
