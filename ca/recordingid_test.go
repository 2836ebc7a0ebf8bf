package ca

import (
	"strings"
	"testing"

	"github.com/opensshca/suite/sshproxy/recorder"
)

// The proxy's spool keeps only recordings whose ids the CA accepts: an id
// one takes and the other refuses would wait in the spool forever.
func FuzzRecordingIDsAgree(f *testing.F) {
	for _, s := range []string{"a", "A1b_c-d", "x.", "a..b", "../x", ".hidden", "-x", "_x", "é", strings.Repeat("a", 128), strings.Repeat("a", 129), "1e9b8792d5be19ddcf166ee3-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		ca := recordingIDRE.MatchString(id)
		proxy := recorder.ValidID(id) == nil
		if ca != proxy {
			t.Fatalf("recording id %q: CA accepts %v, proxy spool accepts %v", id, ca, proxy)
		}
	})
}
