package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// cast is what the soak reads from one asciicast v2 recording.
type cast struct {
	user, login, node string
	events            int
	session           int // the session whose markers it holds; -1 if none
	markers           int // the last marker, all before it present in order
}

// parseCast checks that b is a valid asciicast v2 file (a JSON header
// with version 2 and a size, then [time, code, data] events in time
// order, as https://docs.asciinema.org/manual/asciicast/v2/ says) and
// that its output holds one session's markers 1..N in order.
func parseCast(b []byte) (cast, error) {
	c := cast{session: -1}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	if !sc.Scan() {
		return c, errors.New("empty file")
	}
	var h struct {
		Version int    `json:"version"`
		Width   int    `json:"width"`
		Height  int    `json:"height"`
		User    string `json:"user"`
		Login   string `json:"login"`
		Node    string `json:"node"`
	}
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
		return c, fmt.Errorf("header: %w", err)
	}
	if h.Version != 2 || h.Width <= 0 || h.Height <= 0 {
		return c, fmt.Errorf("header: version %d, size %dx%d", h.Version, h.Width, h.Height)
	}
	c.user, c.login, c.node = h.User, h.Login, h.Node
	var out strings.Builder
	last := -1.0
	for line := 2; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var ev []json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || len(ev) != 3 {
			return c, fmt.Errorf("line %d is not a [time, code, data] event: %.80s", line, sc.Bytes())
		}
		var t float64
		var code, data string
		if json.Unmarshal(ev[0], &t) != nil || json.Unmarshal(ev[1], &code) != nil || json.Unmarshal(ev[2], &data) != nil {
			return c, fmt.Errorf("line %d: bad event types: %.80s", line, sc.Bytes())
		}
		if t < last {
			return c, fmt.Errorf("line %d: time %.6f before %.6f", line, t, last)
		}
		last = t
		c.events++
		if code == "o" {
			out.WriteString(data)
		}
	}
	if err := sc.Err(); err != nil {
		return c, err
	}
	for _, m := range markerRE.FindAllStringSubmatch(out.String(), -1) {
		id, _ := strconv.Atoi(m[1])
		n, _ := strconv.Atoi(m[2])
		chk, _ := strconv.Atoi(m[3])
		switch {
		case c.session >= 0 && id != c.session:
			return c, fmt.Errorf("markers of sessions %d and %d", c.session, id)
		case n != c.markers+1:
			return c, fmt.Errorf("session %d: marker %d after %d", id, n, c.markers)
		case chk != markerCheck(id, n):
			return c, fmt.Errorf("session %d: marker %d has a bad check", id, n)
		}
		c.session, c.markers = id, n
	}
	return c, nil
}

// recordingReport is what the recordings check found.
type recordingReport struct {
	atCA        int           // recordings the CA lists
	uploadTook  time.Duration // from the last session closed to all stored
	spoolLeft   int           // files left in the proxy's spool
	complete    int           // sessions whose recording holds every marker their client saw
	missing     []int         // opened sessions without a recording
	problems    []string      // invalid, incomplete, mismatched or unexpected recordings
	played      int           // asciinema cat ran and showed the last marker
	playTried   int
	playProblem []string
	bytes       int64
}

// checkRecordings waits until the proxy's spool is empty and the CA holds
// a recording for every opened session, then checks them all and plays
// a sample with asciinema.
func checkRecordings(ctx context.Context, c *cluster, sessions []*session, dir string, play int, wait time.Duration, logf func(string, ...any)) recordingReport {
	var rep recordingReport
	opened := 0
	for _, s := range sessions {
		if s.opened {
			opened++
		}
	}
	start := time.Now()
	var list []api.Recording
	for {
		left, _ := filepath.Glob(filepath.Join(c.proxyDir, "recordings", "*.cast*"))
		rep.spoolLeft = len(left)
		var err error
		list, err = c.admin.Recordings(ctx)
		if err == nil && len(list) >= opened && rep.spoolLeft == 0 {
			break
		}
		if time.Since(start) > wait || ctx.Err() != nil {
			logf("recordings: %d at the CA, %d left in the proxy's spool after %v (last error: %v)", len(list), rep.spoolLeft, wait, err)
			break
		}
		time.Sleep(time.Second)
	}
	rep.uploadTook, rep.atCA = time.Since(start), len(list)
	logf("recordings: %d at the CA after %v; checking them", len(list), rep.uploadTook.Round(100*time.Millisecond))

	bySession := map[int]*session{}
	for _, s := range sessions {
		bySession[s.id] = s
	}
	found := map[int]string{} // session -> cast file
	if err := os.MkdirAll(dir, 0o700); err != nil {
		rep.problems = append(rep.problems, err.Error())
		return rep
	}
	for _, r := range list {
		path := filepath.Join(dir, r.ID+".cast")
		var buf bytes.Buffer
		if err := c.admin.ExportRecording(ctx, r.ID, &buf); err != nil {
			rep.problems = append(rep.problems, fmt.Sprintf("%s: export: %v", r.ID, err))
			continue
		}
		rep.bytes += int64(buf.Len())
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			rep.problems = append(rep.problems, err.Error())
			continue
		}
		cs, err := parseCast(buf.Bytes())
		s := bySession[cs.session]
		switch {
		case err != nil:
			rep.problems = append(rep.problems, fmt.Sprintf("%s: not valid: %v", r.ID, err))
			continue
		case s == nil:
			rep.problems = append(rep.problems, fmt.Sprintf("%s: holds no session's markers (%d events)", r.ID, cs.events))
			continue
		case found[s.id] != "":
			rep.problems = append(rep.problems, fmt.Sprintf("%s: a second recording of session %d", r.ID, s.id))
			continue
		}
		found[s.id] = path
		last, _ := s.seen()
		switch {
		case cs.user != s.user || cs.login != login || cs.node != s.node || r.User != s.user || r.Node != s.node:
			rep.problems = append(rep.problems, fmt.Sprintf("%s: session %d of %s@%s recorded as %s/%s@%s (listed %s@%s)",
				r.ID, s.id, s.user, s.node, cs.user, cs.login, cs.node, r.User, r.Node))
		case cs.markers != last:
			rep.problems = append(rep.problems, fmt.Sprintf("%s: session %d: the client saw markers 1-%d, the recording holds 1-%d", r.ID, s.id, last, cs.markers))
		default:
			rep.complete++
		}
	}
	for _, s := range sessions {
		if s.opened && found[s.id] == "" {
			rep.missing = append(rep.missing, s.id)
		}
	}
	rep.playTried, rep.played, rep.playProblem = playSample(ctx, found, bySession, play)
	return rep
}

// playSample runs the real "asciinema cat" on n random recordings, under
// script(1) since asciinema wants a terminal, and checks that what it
// prints ends with the session's last marker.
func playSample(ctx context.Context, found map[int]string, bySession map[int]*session, n int) (tried, ok int, problems []string) {
	ids := make([]int, 0, len(found))
	for id := range found {
		ids = append(ids, id)
	}
	rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	if _, err := exec.LookPath("asciinema"); err != nil {
		return 0, 0, []string{"asciinema is not installed (apt-get install asciinema)"}
	}
	for _, id := range ids[:min(n, len(ids))] {
		tried++
		last, _ := bySession[id].seen()
		want := fmt.Sprintf("SOAK-%d-%d-%d", id, last, markerCheck(id, last))
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		out, err := exec.CommandContext(cctx, "script", "-qec", "asciinema cat "+found[id], "/dev/null").CombinedOutput()
		cancel()
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("session %d: asciinema cat: %v: %.200s", id, err, out))
		case !bytes.Contains(out, []byte(want)):
			problems = append(problems, fmt.Sprintf("session %d: asciinema cat does not show %s", id, want))
		default:
			ok++
		}
	}
	return tried, ok, problems
}
