package sshproxy

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// Events survive a restart of the proxy until the CA has them; a line cut
// by a crash is skipped, the rest kept; after a round of sending the
// file holds what is left.
func TestAuditQueueFile(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	var d queueFile
	if q := d.open(dir, log); len(q) != 0 {
		t.Fatalf("a new queue file holds %d events", len(q))
	}
	var evs []eventT
	for i := range 3 {
		ev := event("session.start", "alice", true, "10.0.0.1:5000")
		ev.Fields["n"] = string(rune('a' + i))
		evs = append(evs, ev)
		d.append(ev)
	}
	d.sync()
	// A crash mid-write leaves a partial line.
	f, err := os.OpenFile(filepath.Join(dir, fileAuditQueue), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"id":"x","type":"sess`)
	f.Close()

	var d2 queueFile
	q := d2.open(dir, log)
	if len(q) != 3 || q[0].ID != evs[0].ID || q[2].Fields["n"] != "c" || !d2.stale {
		t.Fatalf("after a restart the queue holds %+v (stale %v), want the three events", q, d2.stale)
	}
	d2.rewrite(q[2:])
	var d3 queueFile
	if q := d3.open(dir, log); len(q) != 1 || q[0].ID != evs[2].ID {
		t.Fatalf("after sending two the file holds %+v, want the third", q)
	}
	d3.rewrite(nil)
	if fi, err := os.Stat(filepath.Join(dir, fileAuditQueue)); err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after sending all: %v %v", fi, err)
	}
	d3.append(evs[0])
	var d4 queueFile
	if q := d4.open(dir, log); len(q) != 1 {
		t.Fatalf("an event appended after emptying the file: %d events", len(q))
	}
}
