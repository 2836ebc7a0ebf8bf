package proxybench

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The short run measures every row against real programs: teleport-ca,
// teleport-proxy, teleport-node, the OpenSSH sshd and clients. It needs
// root (sshd) and is skipped otherwise.
func TestShortRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the proxy bench runs sshd and needs root; CI runs it as root")
	}
	for _, prog := range []string{"/usr/sbin/sshd", "ssh", "scp", "go"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s not installed; .ci/run installs openssh-server and openssh-client", prog)
		}
	}
	bins, err := Build(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	o := ShortOptions()
	o.Bins = bins
	o.Log = testLog{t}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	rep.Write(&out)
	t.Logf("report:\n%s", out.String())
	if len(rep.Rows) != 7 {
		t.Fatalf("%d rows, want 5 and 2 context rows", len(rep.Rows))
	}
	for _, r := range rep.Rows {
		if r.Err != nil {
			t.Errorf("row %s: %v", r.ID, r.Err)
			continue
		}
		if r.setupOnly {
			if len(r.Setups) != o.Setups || len(r.SCPTimes) != 0 {
				t.Errorf("context row %s: %d setups, %d scp runs; want %d, none", r.ID, len(r.Setups), len(r.SCPTimes), o.Setups)
			}
			continue
		}
		if len(r.Setups) != o.Setups || len(r.SCPTimes) != o.SCPRuns || r.SCPBytes != o.FileSize || r.MiBps() <= 0 {
			t.Errorf("row %s: %d setups, %d scp runs of %d bytes (%.0f MiB/s); want %d, %d of %d",
				r.ID, len(r.Setups), len(r.SCPTimes), r.SCPBytes, r.MiBps(), o.Setups, o.SCPRuns, o.FileSize)
		}
		if c := r.SetupCPU(); c.Client <= 0 || c.NodeSSHD <= 0 {
			t.Errorf("row %s: no CPU accounted to the client or the node per login: %+v", r.ID, c)
		}
	}
	if m := rep.Memory; m.Err != nil || m.Tunnels != o.Tunnels || m.RSS0 <= 0 || m.RSS1 <= m.RSS0 {
		t.Errorf("row 6: %+v", m)
	}
	if f := rep.Fleet; f.Err != nil || f.Nodes != o.FleetNodes || f.Proxies[0].RSS1 <= 0 || f.Proxies[1].RSS1 <= 0 ||
		f.Reconnect <= 0 || f.NodeSide <= 0 || f.OtherMin != f.Nodes {
		t.Errorf("row 7: %+v", f)
	}
	for _, a := range rep.Aims() {
		if !a.Measured {
			t.Errorf("aim %q not measured", a.What)
		}
	}
}

// Row 7's tables show both proxies, the restart and what was simulated.
func TestWriteFleet(t *testing.T) {
	rep := &Report{
		Options: Options{FleetOnly: true},
		Fleet: Fleet{
			Nodes:   2000,
			Proxies: [2]FleetProxy{{Name: "fleet-a", RSS0: 20 << 20, RSS1: 20<<20 + 2000*50<<10}, {Name: "fleet-b", RSS0: 20 << 20, RSS1: 20<<20 + 2000*120<<10}},
			Join:    7 * time.Second, Connect: 12 * time.Second,
			Listening: 190 * time.Millisecond, Half: 3 * time.Second, Most: 8 * time.Second,
			Reconnect: 12 * time.Second, NodeSide: 12 * time.Second, OtherMin: 2000, Refused: 3884, RSSAfter: 124 << 20,
			ProxyCPU: 2 * time.Second, NodesCPU: 3 * time.Second, Others: 0.04,
		},
	}
	var out strings.Builder
	rep.Write(&out)
	for _, want := range []string{
		"| 7 | simulated nodes, each with a tunnel to both proxies | 2000 | 4000 (2000) | fleet-a | 20.0 MiB | 117.7 MiB | 50.0 KiB |",
		"| fleet-b | 20.0 MiB | 254.4 MiB | 120.0 KiB |",
		"| 7r | kill -9 fleet-a, started again at once | 2000 | 190 ms | 3.00 s | 8.00 s | 12.0 s | 12.0 s | 2000 of 2000 | 3884 | 124.0 MiB | 2.00 s | 3.00 s | 4% |",
		"NOT MET (fleet-a 50.0 KiB, fleet-b 120.0 KiB per tunnel",
		"2000 simulated nodes x 2 proxies = 4000 tunnels",
		"the first wait after a loss too",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	// Only row 7 was run: no table or aim of the other rows.
	for _, unwanted := range []string{"| 6 |", "NOT MEASURED", "setup p50"} {
		if strings.Contains(out.String(), unwanted) {
			t.Errorf("fleet-only report has %q:\n%s", unwanted, out.String())
		}
	}
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		var out []time.Duration
		for _, v := range vs {
			out = append(out, time.Duration(v)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of odd", ms(5, 1, 3), 50, 3 * time.Millisecond},
		{"median of even is the lower", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p99 of 20 is the slowest", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20), 99, 20 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tt.in, tt.p, got, tt.want)
			}
		})
	}
}

// Aims compare each row with row 2 and the memory row with 100 KiB.
func TestAims(t *testing.T) {
	row := func(id string, setup time.Duration, scp time.Duration) *Row {
		return &Row{ID: id, Setups: []time.Duration{setup}, SCPBytes: 1 << 30, SCPTimes: []time.Duration{scp}}
	}
	rep := &Report{
		Rows: []*Row{
			row(RowDirect, 300*time.Millisecond, 4*time.Second),
			row(RowStock, 600*time.Millisecond, 10*time.Second),
			row(RowJProxy, 450*time.Millisecond, 10*time.Second), // 0.75x, 1.0x: both met
			row(RowJOff, 451*time.Millisecond, 11*time.Second),   // just over, just under
			row(RowSingle, 300*time.Millisecond, 8*time.Second),  // 0.5x; 1.25x
		},
		Memory: Memory{Tunnels: 1000, RSS0: 10 << 20, RSS1: 10<<20 + 1000*101<<10},
	}
	want := []bool{true, true, false, false, true, true, false}
	aims := rep.Aims()
	if len(aims) != len(want) {
		t.Fatalf("%d aims, want %d", len(aims), len(want))
	}
	for i, a := range aims {
		if !a.Measured || a.Met != want[i] {
			t.Errorf("aim %q: measured %v met %v (%s), want met %v", a.What, a.Measured, a.Met, a.Figures, want[i])
		}
	}
	rep.Rows[1].Err = errors.New("broken")
	for _, a := range rep.Aims()[:6] {
		if a.Measured {
			t.Errorf("aim %q measured without the stock row", a.What)
		}
	}
}
