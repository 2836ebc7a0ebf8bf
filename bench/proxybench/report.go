package proxybench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/opensshca/suite/sshproxy/tunnel"
)

// Machine describes where a report was measured.
type Machine struct {
	GOMAXPROCS, NumCPU int
	CPUModel           string // from /proc/cpuinfo
	GoVersion          string
	XCrypto            string // golang.org/x/crypto linked into the bench
	OpenSSH            string // ssh -V
	LoadAvg            string // /proc/loadavg's first three fields at the start
}

func probeMachine() Machine {
	m := Machine{
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU:     runtime.NumCPU(),
		CPUModel:   cpuModel(),
		GoVersion:  runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		XCrypto:    "unknown",
		OpenSSH:    "unknown",
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "golang.org/x/crypto" {
				m.XCrypto = d.Version
			}
		}
	}
	if out, err := exec.Command("ssh", "-V").CombinedOutput(); err == nil {
		m.OpenSSH, _, _ = strings.Cut(strings.TrimSpace(string(out)), ",")
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	return m
}

func (m Machine) String() string {
	return fmt.Sprintf("GOMAXPROCS=%d (NumCPU=%d), CPU %s, %s, golang.org/x/crypto %s, %s; load average at start %s",
		m.GOMAXPROCS, m.NumCPU, m.CPUModel, m.GoVersion, m.XCrypto, m.OpenSSH, m.LoadAvg)
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// Percentile returns the p-th percentile (0 < p <= 100) of ds by the
// nearest-rank method (so p99 of 20 runs is the slowest), or 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Aim is one of the aims, checked against a report.
type Aim struct {
	What     string // e.g. `ssh -J, mode proxy: setup p50 <= 0.75x stock`
	Measured bool
	Met      bool
	Figures  string
}

// Aims checks the aims: -J setup at most 0.75x and throughput at
// least 1.0x of the stock jump host in both modes; single-hop setup at
// most 0.5x and throughput at least 1.2x; at most 100 KiB per idle tunnel.
func (r *Report) Aims() []Aim {
	stock := r.Row(RowStock)
	var aims []Aim
	setup := func(id, name string, limit float64) {
		a := Aim{What: fmt.Sprintf("%s: setup p50 <= %.2fx the stock jump host's", name, limit)}
		row := r.Row(id)
		if row != nil && stock != nil && row.Err == nil && stock.Err == nil && len(row.Setups) > 0 && len(stock.Setups) > 0 {
			p, s := Percentile(row.Setups, 50), Percentile(stock.Setups, 50)
			ratio := float64(p) / float64(s)
			a.Measured, a.Met = true, ratio <= limit
			a.Figures = fmt.Sprintf("%.2fx: %s against %s", ratio, fmtDur(p), fmtDur(s))
		}
		aims = append(aims, a)
	}
	throughput := func(id, name string, limit float64) {
		a := Aim{What: fmt.Sprintf("%s: scp throughput >= %.1fx the stock jump host's", name, limit)}
		row := r.Row(id)
		if row != nil && stock != nil && row.Err == nil && stock.Err == nil && row.MiBps() > 0 && stock.MiBps() > 0 {
			ratio := row.MiBps() / stock.MiBps()
			a.Measured, a.Met = true, ratio >= limit
			a.Figures = fmt.Sprintf("%.2fx: %.0f MiB/s against %.0f MiB/s", ratio, row.MiBps(), stock.MiBps())
		}
		aims = append(aims, a)
	}
	setup(RowJProxy, "ssh -J, mode proxy", 0.75)
	throughput(RowJProxy, "ssh -J, mode proxy", 1.0)
	setup(RowJOff, "ssh -J, mode off", 0.75)
	throughput(RowJOff, "ssh -J, mode off", 1.0)
	setup(RowSingle, "single hop", 0.5)
	throughput(RowSingle, "single hop", 1.2)
	mem := Aim{What: "idle tunnels: <= 100 KiB of proxy RSS per tunnel"}
	if m := r.Memory; m.Err == nil && m.RSS1 > 0 {
		per := m.PerTunnel() / 1024
		mem.Measured, mem.Met = true, per <= 100
		mem.Figures = fmt.Sprintf("%.1f KiB per tunnel: RSS %s with %d tunnels, %s with none",
			per, fmtMiB(m.RSS1), m.Tunnels, fmtMiB(m.RSS0))
	}
	aims = append(aims, mem)
	if r.Fleet.Nodes > 0 {
		fl := Aim{What: fmt.Sprintf("%d-node fleet on two proxies: <= 100 KiB of RSS per tunnel on each proxy", r.Fleet.Nodes)}
		if f := r.Fleet; f.Err == nil && f.Proxies[0].RSS1 > 0 && f.Proxies[1].RSS1 > 0 {
			a, b := f.Proxies[0].PerTunnel(f.Nodes)/1024, f.Proxies[1].PerTunnel(f.Nodes)/1024
			fl.Measured, fl.Met = true, max(a, b) <= 100
			fl.Figures = fmt.Sprintf("%s %.1f KiB, %s %.1f KiB per tunnel, %d tunnels each", f.Proxies[0].Name, a, f.Proxies[1].Name, b, f.Nodes)
		}
		aims = append(aims, fl)
	}
	return aims
}

// Write prints the machine line, the table of rows 1-5, row 6, the aims
// and the notes, as Markdown.
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "machine: %s\n\n", r.Machine)
	if !r.Options.FleetOnly {
		r.writeRows(w)
	}
	if r.Fleet.Nodes > 0 {
		r.writeFleet(w)
	}
	r.writeNotes(w)
}

// writeRows prints the tables of rows 1-6.
func (r *Report) writeRows(w io.Writer) {
	stock := r.Row(RowStock)
	stockP50, stockRate := time.Duration(0), 0.0
	if stock != nil && stock.Err == nil {
		stockP50, stockRate = Percentile(stock.Setups, 50), stock.MiBps()
	}
	fmt.Fprintf(w, "| # | what | setups | setup p50 | setup p99 | vs stock (2) | scp %s MiB/s (best of %d) | vs stock (2) | CPU per login | CPU per GiB | others |\n",
		fmtSize(r.Options.FileSize), r.Options.SCPRuns)
	fmt.Fprintln(w, "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, row := range r.Rows {
		p50, p99 := Percentile(row.Setups, 50), Percentile(row.Setups, 99)
		cells := []string{row.ID, row.What, fmt.Sprint(len(row.Setups)), "-", "-", "-", "-", "-", "-", "-", fmtShare(row.Others())}
		if len(row.Setups) > 0 {
			cells[3], cells[4] = fmtDur(p50), fmtDur(p99)
			if stockP50 > 0 {
				cells[5] = fmt.Sprintf("%.2fx", float64(p50)/float64(stockP50))
			}
			cells[8] = fmtDur(row.SetupCPU().Total())
		}
		if rate := row.MiBps(); rate > 0 {
			cells[6] = fmt.Sprintf("%.0f", rate)
			if stockRate > 0 {
				cells[7] = fmt.Sprintf("%.2fx", rate/stockRate)
			}
			cells[9] = fmtDur(row.SCPCPU().Total())
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintln(w, "\nWhere the CPU went (hop: teleport-proxy or the stock jump host's sshd):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| # | per login: client | hop | node sshd | teleport-node | CA | per GiB: client | hop | node sshd | teleport-node |")
	fmt.Fprintln(w, "|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, row := range r.Rows {
		cells := []string{row.ID, "-", "-", "-", "-", "-", "-", "-", "-", "-"}
		if len(row.Setups) > 0 {
			c := row.SetupCPU()
			cells[1], cells[2], cells[3], cells[4], cells[5] = fmtDur(c.Client), fmtDur(c.Proxy+c.Jump), fmtDur(c.NodeSSHD), fmtDur(c.NodeAgent), fmtDur(c.CA)
		}
		if row.MiBps() > 0 {
			c := row.SCPCPU()
			cells[6], cells[7], cells[8], cells[9] = fmtDur(c.Client), fmtDur(c.Proxy+c.Jump), fmtDur(c.NodeSSHD), fmtDur(c.NodeAgent)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	m := r.Memory
	fmt.Fprintf(w, "\n| # | what | tunnels | proxy RSS, none | proxy RSS, %d | per tunnel | joins took | tunnels up after |\n", m.Tunnels)
	fmt.Fprintln(w, "|:--|:--|--:|--:|--:|--:|--:|--:|")
	if m.RSS1 > 0 {
		fmt.Fprintf(w, "| 6 | teleport-proxy holding idle reverse tunnels | %d | %s | %s | %.1f KiB | %s | %s |\n",
			m.Tunnels, fmtMiB(m.RSS0), fmtMiB(m.RSS1), m.PerTunnel()/1024, fmtDur(m.Join), fmtDur(m.Connect))
	} else {
		fmt.Fprintf(w, "| 6 | teleport-proxy holding idle reverse tunnels | %d | - | - | - | - | - |\n", m.Tunnels)
	}
}

// writeFleet prints row 7's two tables: memory per proxy, then the
// restart.
func (r *Report) writeFleet(w io.Writer) {
	f := r.Fleet
	fmt.Fprintf(w, "\n| # | what | nodes | tunnels (to this proxy) | proxy | proxy RSS, none | proxy RSS, %d | per tunnel | joins took | all %d tunnels up after |\n", f.Nodes, 2*f.Nodes)
	fmt.Fprintln(w, "|:--|:--|--:|--:|:--|--:|--:|--:|--:|--:|")
	for _, p := range f.Proxies {
		cells := []string{"7", "simulated nodes, each with a tunnel to both proxies", fmt.Sprint(f.Nodes), fmt.Sprintf("%d (%d)", 2*f.Nodes, f.Nodes), p.Name, "-", "-", "-", "-", "-"}
		if p.RSS0 > 0 {
			cells[5] = fmtMiB(p.RSS0)
		}
		if p.RSS1 > 0 {
			cells[6], cells[7], cells[8], cells[9] = fmtMiB(p.RSS1), fmt.Sprintf("%.1f KiB", p.PerTunnel(f.Nodes)/1024), fmtDur(f.Join), fmtDur(f.Connect)
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintln(w, "\n| # | what | tunnels lost | SIGKILL to listening | then half back | 90 % back | all back (proxy gauge) | all back (nodes' side) | other proxy's tunnels meanwhile (min) | failed attempts | RSS after | CPU: proxy | nodes | others |")
	fmt.Fprintln(w, "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	cells := []string{"7r", fmt.Sprintf("kill -9 %s, started again at once", f.Proxies[0].Name), fmt.Sprint(f.Nodes), "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"}
	if f.Reconnect > 0 {
		cells[3], cells[4], cells[5], cells[6], cells[7] = fmtDur(f.Listening), fmtDur(f.Half), fmtDur(f.Most), fmtDur(f.Reconnect), fmtDur(f.NodeSide)
		cells[8], cells[9], cells[10] = fmt.Sprintf("%d of %d", f.OtherMin, f.Nodes), fmt.Sprint(f.Refused), fmtMiB(f.RSSAfter)
		cells[11], cells[12], cells[13] = fmtDur(f.ProxyCPU), fmtDur(f.NodesCPU), fmtShare(f.Others)
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
}

// writeNotes prints the aims and the notes.
func (r *Report) writeNotes(w io.Writer) {
	fmt.Fprintln(w)
	for _, a := range r.Aims() {
		if r.Options.FleetOnly && !a.Measured {
			continue
		}
		switch {
		case !a.Measured:
			fmt.Fprintf(w, "- aim %q: NOT MEASURED\n", a.What)
		case a.Met:
			fmt.Fprintf(w, "- aim %q: MET (%s)\n", a.What, a.Figures)
		default:
			fmt.Fprintf(w, "- aim %q: NOT MET (%s)\n", a.What, a.Figures)
		}
	}
	var runs []string
	for _, row := range r.Rows {
		var rates []string
		for _, v := range row.AllMiBps() {
			rates = append(rates, fmt.Sprintf("%.0f", v))
		}
		if len(rates) > 0 {
			runs = append(runs, fmt.Sprintf("%s: %s", row.ID, strings.Join(rates, ", ")))
		}
	}
	if len(runs) > 0 {
		fmt.Fprintf(w, "- every scp, MiB/s in run order: %s\n", strings.Join(runs, "; "))
	}
	for _, row := range r.Rows {
		if row.Err != nil {
			fmt.Fprintf(w, "- row %s failed: %v\n", row.ID, row.Err)
		}
		if s := row.Others(); s > 0.05 {
			fmt.Fprintf(w, "- row %s: other processes used %s of the machine's CPU while it ran: treat its figures as disturbed\n", row.ID, fmtShare(s))
		}
	}
	if m := r.Memory; m.Err != nil {
		fmt.Fprintf(w, "- row 6 failed: %v\n", m.Err)
	}
	if f := r.Fleet; f.Nodes > 0 {
		if f.Err != nil {
			fmt.Fprintf(w, "- row 7 failed: %v\n", f.Err)
		}
		fmt.Fprintf(w, "- row 7: %d simulated nodes x 2 proxies = %d tunnels, each node's two sshproxy/tunnel Clients in this process (what tunnel.Pool runs per listed proxy) with host certificates from the CA's joins, so their memory is not the proxies'; first handshakes at most %d at a time.\n", f.Nodes, 2*f.Nodes, dialConcurrency)
		fmt.Fprintf(w, "- row 7r: nodes' reconnect policy, sshproxy/tunnel's defaults as teleport-node run keeps them: %s; the proxy's tunnel listener closes connections beyond %d handshakes at once. \"listening\" is the first TCP connect the restarted proxy's tunnel listener accepted; \"all back\" the first scrape (every 50 ms) of its teleport_proxy_tunnels_connected gauge showing every node; \"failed attempts\" the nodes' reports of a failed attempt to it after the kill; CPU from the kill until all were back (nodes: this process), others: the share of the machine's CPUs other processes used meanwhile.\n", fleetBackoff(), tunnel.DefaultMaxUnauthenticated)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	fmt.Fprintf(w, "- run took %v\n", r.Took.Round(100*time.Millisecond))
}

// Failed reports whether any row failed.
func (r *Report) Failed() bool {
	for _, row := range r.Rows {
		if row.Err != nil {
			return true
		}
	}
	return r.Memory.Err != nil || r.Fleet.Err != nil
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
}

func fmtMiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func fmtSize(b int64) string {
	if b >= 1<<30 && b%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", b>>30)
	}
	return fmt.Sprintf("%d MiB", b>>20)
}

func fmtShare(s float64) string {
	if s < 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", 100*s)
}
