package proxybench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Where the CPU goes. The programs run on the same machine as the
// clients, so a row's throughput depends on the CPU every hop spends:
// the bench accounts for it per part.
const (
	partClient    = iota // ssh, scp and ProxyJump's "ssh -W" (reaped children of the bench)
	partProxy            // teleport-proxy
	partJump             // the stock jump host's sshd and its session processes
	partNodeSSHD         // the node's sshd, its session processes and teleport-authkeys
	partNodeAgent        // teleport-node run (the node's end of the tunnel)
	partCA               // teleport-ca
	numParts
)

// CPU is the CPU time a row's measurement cost, by part, and the share
// of the machine other processes took meanwhile.
type CPU struct {
	Client, Proxy, Jump, NodeSSHD, NodeAgent, CA time.Duration
	// Others is the share of the machine's CPU other processes used
	// while the row ran; -1 if unknown.
	Others float64
}

// Total is the CPU time of every part.
func (c CPU) Total() time.Duration {
	return c.Client + c.Proxy + c.Jump + c.NodeSSHD + c.NodeAgent + c.CA
}

// cpuMeter samples the CPU time the machine and each part have used.
// Parts are this process's reaped children (the OpenSSH clients, with
// what they forked) and the running programs the cluster started, read
// from /proc/PID/stat with their reaped children (sshd's session
// processes). Other processes' share is the machine's busy time
// (/proc/stat user, nice and system) minus all parts and the bench itself.
type cpuMeter struct {
	pids func() [numParts]int
}

type cpuSample struct {
	at             time.Time
	machine        time.Duration
	machineUnknown bool
	self           time.Duration
	parts          [numParts]time.Duration
}

// userHZ is sysconf(_SC_CLK_TCK) on Linux.
const userHZ = 100

func (m cpuMeter) sample() cpuSample {
	s := cpuSample{at: time.Now()}
	s.machine, s.machineUnknown = machineBusy()
	s.self = rusage(syscall.RUSAGE_SELF)
	s.parts[partClient] = rusage(syscall.RUSAGE_CHILDREN)
	if m.pids != nil {
		for part, pid := range m.pids() {
			if pid > 0 {
				s.parts[part] += procCPU(pid)
			}
		}
	}
	return s
}

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(who, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the CPU time the machine has spent in user, nice and
// system mode, from the first line of /proc/stat.
func machineBusy() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, true
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 4 || f[0] != "cpu" {
		return 0, true
	}
	var ticks int64
	for _, v := range f[1:4] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, true
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, false
}

// procCPU is utime+stime+cutime+cstime of a running process.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime..cstime are fields 14..17.
	if len(f) < 15 {
		return 0
	}
	var ticks int64
	for _, v := range f[11:15] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ
}

// hasChildren reports whether process pid has child processes (for an
// sshd listener: a connection still being served or torn down).
func hasChildren(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	return err == nil && len(strings.TrimSpace(string(b))) > 0
}

// cpuUse accumulates a row's CPU over its measurement windows.
type cpuUse struct {
	parts            [numParts]time.Duration
	others, capacity time.Duration
	unknown          bool
}

func (u *cpuUse) add(from, to cpuSample) {
	var ours time.Duration
	for i := range u.parts {
		d := to.parts[i] - from.parts[i]
		u.parts[i] += d
		ours += d
	}
	ours += to.self - from.self
	if from.machineUnknown || to.machineUnknown {
		u.unknown = true
		return
	}
	// Not clamped per window: a process's CPU may show as the machine's
	// in one window and as a part's in the next (once it is reaped), and
	// the sum evens that out.
	u.others += (to.machine - from.machine) - ours
	u.capacity += to.at.Sub(from.at) * time.Duration(runtime.NumCPU())
}

// cpu reports the accumulated use divided by n (runs, or GiB).
func (u cpuUse) cpu(n float64) CPU {
	per := func(d time.Duration) time.Duration {
		if n <= 0 {
			return 0
		}
		return time.Duration(float64(d) / n)
	}
	c := CPU{
		Client: per(u.parts[partClient]), Proxy: per(u.parts[partProxy]), Jump: per(u.parts[partJump]),
		NodeSSHD: per(u.parts[partNodeSSHD]), NodeAgent: per(u.parts[partNodeAgent]), CA: per(u.parts[partCA]),
		Others: -1,
	}
	if !u.unknown && u.capacity > 0 {
		c.Others = min(1, max(0, float64(u.others)/float64(u.capacity)))
	}
	return c
}
