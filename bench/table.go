package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/opensshca/suite/ca"
)

// Write prints the machine, the table (Markdown, so that it pastes into
// docs/BENCHMARKS.md as is) and the notes that go with it.
func (r *Report) Write(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "date:    %s\n", r.Started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "machine: %s\n", r.Machine)
	fmt.Fprintf(&b, "store:   %s\n\n", r.Storage)
	r.writeBody(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeBody writes the table and its notes.
func (r *Report) writeBody(b *strings.Builder) {
	writeTable(b, r.Rows)
	b.WriteString("\n")
	for _, n := range r.notes() {
		fmt.Fprintf(b, "- %s\n", n)
	}
}

func writeTable(b *strings.Builder, rows []Row) {
	head := []string{"#", "what", "conc.", "certs", "errors", "certs/s", "vs raw (1b)", "CPU/cert", "p50", "p99", "max", "ops/fsync", "others"}
	right := []bool{false, false, true, true, true, true, true, true, true, true, true, true, true}
	cells := [][]string{head}
	for _, r := range rows {
		if r.Skipped != "" {
			cells = append(cells, []string{r.ID, r.Name, strconv.Itoa(r.Concurrency), "-", "-", "skipped", "-", "-", "-", "-", "-", "-", "-"})
			continue
		}
		vs := "-"
		if r.VsRaw > 0 && r.Offered == 0 { // an open-loop rate is the offered load
			vs = fmt.Sprintf("%.1f%%", 100*r.VsRaw)
		}
		cells = append(cells, []string{
			r.ID, r.Name, strconv.Itoa(r.Concurrency), fmtInt(r.Certs), fmtInt(r.Errors),
			fmtInt(int(r.Rate() + 0.5)), vs, fmtDur(r.CPUPerCert()),
			fmtDur(r.Latency.P50), fmtDur(r.Latency.P99), fmtDur(r.Latency.Max),
			fmtBatch(r.OpsPerCommit), fmt.Sprintf("%.0f%%", 100*r.Others),
		})
	}
	writeCells(b, cells, right)
}

// writeCells writes cells as a Markdown table, the first row the header,
// columns padded and aligned right where right says so.
func writeCells(b *strings.Builder, cells [][]string, right []bool) {
	width := make([]int, len(cells[0]))
	for _, row := range cells {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	line := func(row []string) {
		b.WriteString("|")
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if right[i] {
				fmt.Fprintf(b, " %s%s |", pad, c)
			} else {
				fmt.Fprintf(b, " %s%s |", c, pad)
			}
		}
		b.WriteString("\n")
	}
	line(cells[0])
	b.WriteString("|")
	for i, n := range width {
		if right[i] {
			fmt.Fprintf(b, "%s:|", strings.Repeat("-", n+1))
		} else {
			fmt.Fprintf(b, ":%s|", strings.Repeat("-", n+1))
		}
	}
	b.WriteString("\n")
	for _, row := range cells[1:] {
		line(row)
	}
}

func (r *Report) notes() []string {
	var n []string
	if one, ok := r.Row("1a"); ok && one.Certs > 0 {
		n = append(n, fmt.Sprintf("1a: %.1f µs per certificate on one core, median call %s (FIELD-NOTES.md: about 37 µs).", 1e6/one.Rate(), fmtDur(one.Latency.P50)))
	}
	if best, met, ok := r.Aim(); ok {
		verdict := "NOT MET"
		if met {
			verdict = "MET"
		}
		n = append(n, fmt.Sprintf("aim \"API >= %.0f%% of raw signing rate\": %s (best API row %s: %s certs/s = %.1f%% of 1b).",
			100*AimRatio, verdict, best.ID, fmtInt(int(best.Rate()+0.5)), 100*best.VsRaw))
	}
	if four, ok := r.Row("4"); ok && four.Skipped == "" {
		n = append(n, fmt.Sprintf("4: offered %d req/s for %v over %d connections; achieved %.0f certs/s, %d errors; latency from scheduled send time (queueing included).",
			four.Offered, r.Options.LatencyDuration, four.Concurrency, four.Rate(), four.Errors))
	}
	if six, ok := r.Row("6"); ok && six.Skipped == "" {
		n = append(n, fmt.Sprintf("6: offered %d sign-ins/s for %v over %d connections, each by a user signing in for the first time; achieved %.0f/s, %d errors; latency from scheduled send time; \"certs\" counts sessions opened; the bench's argon2id is cheap: with the default parameters (%s) each sign-in would take about %s more (one hash, measured here).",
			six.Offered, r.Options.SignInDuration, six.Concurrency, six.Rate(), six.Errors, argon2String(ca.DefaultArgon2), fmtDur(r.DefaultArgon2)))
	}
	var busy []string
	for _, row := range r.Rows {
		if row.Skipped == "" && row.Others > 0.05 {
			busy = append(busy, row.ID)
		}
	}
	if len(busy) > 0 {
		n = append(n, fmt.Sprintf("rows %s ran while other processes used more than 5%% of the CPUs (column \"others\", from /proc/stat): their figures are low; rerun on a quiet machine.", strings.Join(busy, ", ")))
	}
	for _, row := range r.Rows {
		switch {
		case row.Skipped != "":
			n = append(n, fmt.Sprintf("%s: %s", row.ID, row.Skipped))
		case row.Errors > 0:
			n = append(n, fmt.Sprintf("%s: %d errors; first: %s", row.ID, row.Errors, row.FirstError))
		}
	}
	n = append(n,
		fmt.Sprintf("closed-loop rows: %v each after %v warm-up; latency there is call to return.", r.Options.Duration, r.Options.Warmup),
		r.durableNote(),
		"HTTPS: "+r.Transport+", one keep-alive connection per client, one shared http.Transport; load generator, TLS client and JSON decoding run in this process on the same CPUs (CPU/cert counts both sides).",
		fmt.Sprintf("bench users: %s (cheap on purpose; each signs in once before timing, so argon2 is in no row but 6).", r.Argon2),
		"5: one ssh-keygen process per certificate (fork+exec, load CA key, sign, write -cert.pub); CPU/cert includes the children.",
	)
	return n
}

// fmtInt writes n with thousands separators.
func fmtInt(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + fmtInt(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// fmtDur writes d with three significant digits in µs, ms or s.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e3, 'f', digits(float64(d)/1e3), 64) + " µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/1e6, 'f', digits(float64(d)/1e6), 64) + " ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', digits(d.Seconds()), 64) + " s"
}

func digits(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	}
	return 2
}

func fmtBatch(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

// durableNote says what makes a row durable with the report's store.
func (r *Report) durableNote() string {
	if r.Options.Storage == StorageEtcd {
		return "durable: each certificate of rows 2-4 is an issuance record (which is also its cert.issue audit event), one etcd transaction committed by the server (raft log entry fsync'd to its WAL; concurrent proposals share one fsync) before the caller sees it; ops/fsync is raft proposals per WAL fsync from etcd's /metrics; CPU/cert includes the etcd server process."
	}
	return "durable: each certificate of rows 2-4 is an issuance record (which is also its cert.issue audit event), fsync'd by bbolt (concurrent writes share one commit) before the caller sees it; a sign-in (row 6) writes three records one after the other."
}
