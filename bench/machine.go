package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Machine describes where a report was measured.
type Machine struct {
	GOMAXPROCS, NumCPU int
	CPUModel           string // from /proc/cpuinfo
	GoVersion          string
	XCrypto, Bbolt     string // module versions linked in
	OpenSSH            string // ssh -V, if installed
	DataFS             string // file system type of the data dir
	// Fdatasync is the median time of a 4 KiB write + fdatasync in the
	// data dir: what each group commit of the store pays (bbolt syncs
	// twice per commit).
	Fdatasync time.Duration
	// LoadAvg is /proc/loadavg's first three fields when the run started.
	LoadAvg string
}

func probeMachine(dataDir string) Machine {
	m := Machine{
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU:     runtime.NumCPU(),
		CPUModel:   cpuModel(),
		GoVersion:  runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		XCrypto:    moduleVersion("golang.org/x/crypto"),
		Bbolt:      moduleVersion("go.etcd.io/bbolt"),
		DataFS:     fsType(dataDir),
		Fdatasync:  fdatasyncTime(dataDir),
	}
	if out, err := exec.Command("ssh", "-V").CombinedOutput(); err == nil {
		m.OpenSSH, _, _ = strings.Cut(strings.TrimSpace(string(out)), ",")
	}
	m.LoadAvg = loadAvg()
	return m
}

// loadAvg returns /proc/loadavg's 1, 5 and 15 minute load averages, or
// "unknown".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// String is the one-line description printed above the table.
func (m Machine) String() string {
	s := fmt.Sprintf("GOMAXPROCS=%d (NumCPU=%d), CPU %s, %s, golang.org/x/crypto %s, bbolt %s",
		m.GOMAXPROCS, m.NumCPU, m.CPUModel, m.GoVersion, m.XCrypto, m.Bbolt)
	if m.OpenSSH != "" {
		s += ", " + m.OpenSSH
	}
	return s + fmt.Sprintf("; data dir on %s, 4 KiB write+fdatasync p50 %s; load average at start %s", m.DataFS, fmtDur(m.Fdatasync), m.LoadAvg)
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

func moduleVersion(path string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range bi.Deps {
		if d.Path == path {
			if d.Replace != nil {
				return d.Replace.Version + " (replaced)"
			}
			return d.Version
		}
	}
	return "unknown"
}

// fsType names the file system dir is on, for the common magic numbers
// (statfs(2)).
func fsType(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown file system"
	}
	names := map[int64]string{
		0xEF53: "ext4", 0x01021994: "tmpfs", 0x58465342: "xfs", 0x9123683E: "btrfs",
		0x794C7630: "overlayfs", 0x2FC12FC1: "zfs", 0x6969: "nfs", 0x65735546: "fuse",
	}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("file system 0x%x", st.Type)
}

// fdatasyncTime returns the median of 32 timed 4 KiB writes, each followed
// by fdatasync, in dir; zero if it could not be measured.
func fdatasyncTime(dir string) time.Duration {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0
	}
	defer os.Remove(filepath.Clean(f.Name()))
	defer f.Close()
	buf := make([]byte, 4096)
	var ts []time.Duration
	for i := range 32 {
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i%8)*4096); err != nil {
			return 0
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0
		}
		ts = append(ts, time.Since(start))
	}
	slices.Sort(ts)
	return ts[len(ts)/2]
}

// cpuTime is the CPU time (user + system) this process and its waited-for
// children have used.
func cpuTime() time.Duration {
	var t time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if syscall.Getrusage(who, &ru) == nil {
			t += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	return t
}

// machineBusy is the CPU time every process on the machine has spent in
// user and system mode (interrupt handling left out), from /proc/stat; zero
// if unknown. Subtracting cpuTime shows what other processes took.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 4 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, v := range f[1:4] { // user, nice, system
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0
		}
		ticks += n
	}
	const userHZ = 100 // sysconf(_SC_CLK_TCK) on Linux
	return time.Duration(ticks) * time.Second / userHZ
}
