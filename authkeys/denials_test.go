package authkeys

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/nodedir"
)

// A refused login is appended to the node's denial log for the CA's
// audit log, one JSON line each; past MaxDenialLog nothing more is
// written (syslog still has it).
func TestRecordDenial(t *testing.T) {
	dir := nodedir.Dir(t.TempDir())
	if err := os.Mkdir(dir.Path(nodedir.CacheDir), 0o770); err != nil {
		t.Fatal(err)
	}
	c := policyCache(t, ModeProxy)
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir.Path(nodedir.Cache), b, 0o640); err != nil {
		t.Fatal(err)
	}
	now := c.Confirmed.Add(time.Minute)
	r := &Runner{Dir: dir, MaxAge: time.Hour, Now: func() time.Time { return now }, RecordDenials: true}
	if _, err := r.Answer("principals", "root", "user=bob proxy=p1 session=s1", "42"); err == nil {
		t.Fatal("locked bob allowed")
	}
	if _, err := r.Answer("principals", "root", "user=alice proxy=p1 session=s2", "43"); err != nil {
		t.Fatalf("alice refused: %v", err)
	}
	log, err := os.ReadFile(dir.Path(nodedir.Denials))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(log), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("denial log holds %d lines, want the one refusal:\n%s", len(lines), log)
	}
	var d api.NodeDenial
	if err := json.Unmarshal(lines[0], &d); err != nil {
		t.Fatal(err)
	}
	if d.Login != "root" || d.KeyID != "user=bob proxy=p1 session=s1" || d.Serial != "42" || !strings.Contains(d.Reason, "locked") || d.ID == "" || !d.Time.Equal(now) {
		t.Fatalf("denial = %+v", d)
	}
	if err := os.WriteFile(dir.Path(nodedir.Denials), bytes.Repeat([]byte("x"), MaxDenialLog+1), 0o660); err != nil {
		t.Fatal(err)
	}
	_, _ = r.Answer("principals", "root", "user=bob proxy=p1 session=s3", "44")
	if fi, _ := os.Stat(filepath.Join(string(dir), nodedir.Denials)); fi.Size() != MaxDenialLog+1 {
		t.Fatalf("the denial log grew past MaxDenialLog: %d bytes", fi.Size())
	}
}
