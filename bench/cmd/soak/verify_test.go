package main

import (
	"fmt"
	"strings"
	"testing"
)

func castOf(events ...string) string {
	return `{"version":2,"width":120,"height":40,"timestamp":1,"user":"soak00","login":"root","node":"node1"}` + "\n" +
		strings.Join(events, "\n") + "\n"
}

func out(t float64, s string) string { return fmt.Sprintf("[%g,\"o\",%q]", t, s) }

func TestParseCast(t *testing.T) {
	m := func(id, n int) string { return fmt.Sprintf("SOAK-%d-%d-%d\r\n", id, n, markerCheck(id, n)) }
	typed := out(0.1, `s=7 n=0; while sleep 5; do n=$((n+1)); echo "SOAK-$s-$n-$(( (n*31+s) % 997 ))"; done`+"\r\n")
	tests := []struct {
		name        string
		cast        string
		wantSession int
		wantMarkers int
		wantErr     string
	}{
		{"complete", castOf(typed, out(5, m(7, 1)), out(10, m(7, 2)), out(15, m(7, 3))), 7, 3, ""},
		{"marker split over two events", castOf(out(5, m(7, 1)), out(10, "SOAK-7-"), out(10.1, "2-"+fmt.Sprint(markerCheck(7, 2))+"\r\n")), 7, 2, ""},
		{"no markers", castOf(typed), -1, 0, ""},
		{"gap", castOf(out(5, m(7, 1)), out(15, m(7, 3))), 0, 0, "marker 3 after 1"},
		{"bad check", castOf(out(5, "SOAK-7-1-0\r\n")), 0, 0, "bad check"},
		{"two sessions", castOf(out(5, m(7, 1)), out(6, m(8, 1))), 0, 0, "sessions 7 and 8"},
		{"time backwards", castOf(out(5, m(7, 1)), out(4, m(7, 2))), 0, 0, "before"},
		{"not an event", castOf(out(5, m(7, 1)), `[1,"o"]`), 0, 0, "not a [time, code, data] event"},
		{"version 1", strings.Replace(castOf(out(1, "x")), `"version":2`, `"version":1`, 1), 0, 0, "version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseCast([]byte(tt.cast))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.session != tt.wantSession || c.markers != tt.wantMarkers || c.user != "soak00" || c.node != "node1" {
				t.Fatalf("got %+v, want session %d with %d markers", c, tt.wantSession, tt.wantMarkers)
			}
		})
	}
}

// TestLoopCommandEcho: the shell's echo of the typed loop never looks
// like a marker, and the loop's arithmetic is the check markerCheck makes.
func TestLoopCommandEcho(t *testing.T) {
	cmd := loopCommand(42, 5e9)
	if markerRE.MatchString(cmd) {
		t.Fatalf("the typed loop matches the marker pattern: %q", cmd)
	}
	if !strings.Contains(cmd, "while sleep 5;") || !strings.Contains(cmd, "(n*31+s) % 997") {
		t.Fatalf("loop %q", cmd)
	}
}
