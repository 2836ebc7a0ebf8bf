package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// StorageName is how tables name a backend: "bbolt" or "etcd".
func StorageName(storage string) string {
	if storage == StorageBolt || storage == "" {
		return "bbolt"
	}
	return storage
}

// cmpMetric is one figure of a row compared across backends.
type cmpMetric struct {
	label string
	val   func(Row) float64
	str   func(float64) string
}

var (
	cmpRate = cmpMetric{"certs/s", func(r Row) float64 { return r.Rate() }, func(v float64) string { return fmtInt(int(v + 0.5)) }}
	cmpDone = cmpMetric{"achieved/s", func(r Row) float64 { return r.Rate() }, func(v float64) string { return fmtInt(int(v + 0.5)) }}
	cmpP50  = cmpMetric{"p50", func(r Row) float64 { return float64(r.Latency.P50) }, durStr}
	cmpP99  = cmpMetric{"p99", func(r Row) float64 { return float64(r.Latency.P99) }, durStr}
	cmpCPU  = cmpMetric{"CPU/cert", func(r Row) float64 { return float64(r.CPUPerCert()) }, durStr}
	cmpOps  = cmpMetric{"ops/fsync", func(r Row) float64 { return r.OpsPerCommit }, fmtBatch}
)

func durStr(v float64) string { return fmtDur(time.Duration(v)) }

// cmpLines lists, for the rows of the first report that depend on the
// store, the figures a comparison shows: rates, CPU and batching for the
// in-process row, rate and tail for each API client count, latency for the
// open-loop rows.
func cmpLines(rows []Row) []struct {
	id string
	m  cmpMetric
} {
	var out []struct {
		id string
		m  cmpMetric
	}
	add := func(id string, ms ...cmpMetric) {
		for _, m := range ms {
			out = append(out, struct {
				id string
				m  cmpMetric
			}{id, m})
		}
	}
	for _, r := range rows {
		switch {
		case r.ID == "2":
			add(r.ID, cmpRate, cmpCPU, cmpOps)
		case strings.HasPrefix(r.ID, "3") && r.ID != "3z":
			add(r.ID, cmpRate, cmpP99, cmpCPU, cmpOps)
		case r.ID == "4" || r.ID == "6":
			add(r.ID, cmpDone, cmpP50, cmpP99, cmpOps)
		}
	}
	return out
}

// WriteComparison prints reports of the same options on different stores
// side by side: the machine, each store, one table with a column per
// store (and the ratio of each to the first) for the rows that depend on
// the store, then each report's own table.
func WriteComparison(w io.Writer, reps []*Report) error {
	if len(reps) == 0 {
		return nil
	}
	var b strings.Builder
	first := reps[0]
	fmt.Fprintf(&b, "date:    %s\n", first.Started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "machine: %s\n", first.Machine)
	for _, r := range reps {
		fmt.Fprintf(&b, "store %s: %s (load average at its start %s)\n", StorageName(r.Options.Storage), r.Storage, r.Machine.LoadAvg)
	}
	b.WriteString("\n")
	writeComparisonTable(&b, reps)
	b.WriteString("\n")
	for _, n := range comparisonNotes(reps) {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	for _, r := range reps {
		fmt.Fprintf(&b, "\n#### %s\n\n", StorageName(r.Options.Storage))
		r.writeBody(&b)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeComparisonTable(b *strings.Builder, reps []*Report) {
	head := []string{"#", "what", "figure"}
	right := []bool{false, false, false}
	for _, r := range reps {
		head = append(head, StorageName(r.Options.Storage))
		right = append(right, true)
	}
	base := StorageName(reps[0].Options.Storage)
	for _, r := range reps[1:] {
		head = append(head, StorageName(r.Options.Storage)+" / "+base)
		right = append(right, true)
	}
	cells := [][]string{head}
	for _, l := range cmpLines(reps[0].Rows) {
		row0, _ := reps[0].Row(l.id)
		line := []string{l.id, cmpName(row0), l.m.label}
		vals := make([]float64, len(reps))
		for i, r := range reps {
			row, ok := r.Row(l.id)
			if !ok || row.Skipped != "" {
				line = append(line, "-")
				continue
			}
			vals[i] = l.m.val(row)
			line = append(line, l.m.str(vals[i]))
		}
		for i := range reps[1:] {
			ratio := "-"
			if vals[0] > 0 && vals[i+1] > 0 {
				ratio = fmt.Sprintf("%.2fx", vals[i+1]/vals[0])
			}
			line = append(line, ratio)
		}
		cells = append(cells, line)
	}
	writeCells(b, cells, right)
}

// cmpName is a row's short description for the comparison.
func cmpName(r Row) string {
	switch {
	case r.ID == "2":
		return fmt.Sprintf("in-process IssueUserCert, %d callers", r.Concurrency)
	case strings.HasPrefix(r.ID, "3"):
		return fmt.Sprintf("HTTPS API POST /v1/certs/user, %d clients", r.Concurrency)
	case r.ID == "4":
		return fmt.Sprintf("HTTPS API, open loop at %d req/s", r.Offered)
	case r.ID == "6":
		return fmt.Sprintf("HTTPS sign-in, open loop at %d/s", r.Offered)
	}
	return r.Name
}

// comparisonNotes flags rows with errors or disturbed by other processes,
// per store.
func comparisonNotes(reps []*Report) []string {
	var n []string
	for _, r := range reps {
		name := StorageName(r.Options.Storage)
		var busy []string
		for _, row := range r.Rows {
			if row.Skipped == "" && row.Others > 0.05 {
				busy = append(busy, fmt.Sprintf("%s (%.0f%%)", row.ID, 100*row.Others))
			}
			if row.Errors > 0 {
				n = append(n, fmt.Sprintf("%s, row %s: %d errors; first: %s", name, row.ID, row.Errors, row.FirstError))
			}
		}
		if len(busy) > 0 {
			n = append(n, fmt.Sprintf("%s: rows %s ran while other processes used more than 5%% of the CPUs: their figures are low.", name, strings.Join(busy, ", ")))
		}
	}
	n = append(n, "ops/fsync: bbolt's write operations per committed transaction; etcd's raft proposals per WAL fsync (from its /metrics). CPU/cert counts this process and, for etcd, the etcd server process.")
	return n
}
