package proxybench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/opensshca/suite/internal/logging"
	"github.com/opensshca/suite/sshproxy"
)

// Profiling: with Options.ProfileDir the bench runs teleport-proxy's
// profiling twin (bench/cmd/proxybench/profproxy: package sshproxy with
// the same flags, plus runtime/pprof) instead of teleport-proxy, and
// brackets phases with signals:
//
//   - it writes the phase's label to ProfileDir/label and sends SIGUSR1:
//     the twin starts a CPU profile;
//   - it sends SIGUSR2: the twin stops the CPU profile, collects garbage,
//     and writes LABEL.cpu.pprof, LABEL.heap.pprof and LABEL.mem.txt
//     (runtime.MemStats figures and the goroutine count), the last one
//     last.
//
// The proxy itself is not changed: the twin links the same package.

// profileEnv names the directory the twin writes its profiles to.
const profileEnv = "PROXYBENCH_PROFILE_DIR"

// profileStart starts a CPU profile in the proxy labelled label.
func (b *bench) profileStart(label string) {
	if b.o.ProfileDir == "" {
		return
	}
	if err := os.WriteFile(filepath.Join(b.o.ProfileDir, "label"), []byte(label), 0o644); err != nil {
		b.logf("profile %s: %v", label, err)
		return
	}
	b.profLabel = label
	_ = b.c.proxy.cmd.Process.Signal(syscall.SIGUSR1)
	time.Sleep(50 * time.Millisecond) // let the twin read the label
}

// profileStop ends the profile profileStart began and waits until the
// twin has written it.
func (b *bench) profileStop() {
	if b.o.ProfileDir == "" || b.profLabel == "" {
		return
	}
	label := b.profLabel
	b.profLabel = ""
	_ = b.c.proxy.cmd.Process.Signal(syscall.SIGUSR2)
	done := filepath.Join(b.o.ProfileDir, label+".mem.txt")
	err := waitFor(context.Background(), 20*time.Second, "the profile "+label, b.c.proxy, func() error {
		_, err := os.Stat(done)
		return err
	})
	if err != nil {
		b.logf("%v", err)
		return
	}
	b.logf("profile %s written to %s", label, b.o.ProfileDir)
}

// RunProfiledProxy is the profiling twin's main: it parses the
// teleport-proxy flags the bench uses and runs package sshproxy, taking
// profiles on SIGUSR1/SIGUSR2 into the directory $PROXYBENCH_PROFILE_DIR.
func RunProfiledProxy(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("profproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg sshproxy.Config
	var logLevel string
	fs.StringVar(&cfg.DataDir, "data-dir", "", "data directory")
	fs.StringVar(&cfg.Join.Server, "server", "", "CA URL (first start)")
	fs.StringVar(&cfg.Join.Token, "token", "", "proxy join token (first start)")
	fs.StringVar(&cfg.Join.Pin, "ca-pin", "", "CA pin (first start)")
	fs.StringVar(&cfg.Join.Name, "name", "", "proxy name (first start)")
	fs.StringVar(&cfg.Listen, "listen", ":3023", "SSH address")
	fs.StringVar(&cfg.TunnelListen, "tunnel-listen", ":3024", "tunnel address")
	fs.StringVar(&cfg.PublicAddr, "public-addr", "", "public host:port")
	fs.StringVar(&logLevel, "log-level", "info", "log level")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	level, err := logging.ParseLevel(logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "profproxy: %v\n", err)
		return 2
	}
	dir := os.Getenv(profileEnv)
	if dir == "" {
		fmt.Fprintf(stderr, "profproxy: $%s is not set\n", profileEnv)
		return 2
	}
	cfg.Logger = logging.New(stderr, level)
	p, err := sshproxy.New(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "profproxy: %v\n", err)
		return 1
	}
	go profileOnSignals(ctx, dir, stderr)
	if err := p.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "profproxy: %v\n", err)
		return 1
	}
	return 0
}

// profileOnSignals serves the SIGUSR1/SIGUSR2 protocol until ctx ends.
func profileOnSignals(ctx context.Context, dir string, stderr io.Writer) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	var cpu *os.File
	label := ""
	for {
		select {
		case <-ctx.Done():
			if cpu != nil {
				pprof.StopCPUProfile()
				cpu.Close()
			}
			return
		case s := <-sigs:
			if s == syscall.SIGUSR1 && cpu == nil {
				b, err := os.ReadFile(filepath.Join(dir, "label"))
				if err != nil {
					fmt.Fprintf(stderr, "profproxy: %v\n", err)
					continue
				}
				label = strings.TrimSpace(string(b))
				if cpu, err = os.Create(filepath.Join(dir, label+".cpu.pprof")); err != nil {
					fmt.Fprintf(stderr, "profproxy: %v\n", err)
					continue
				}
				if err := pprof.StartCPUProfile(cpu); err != nil {
					fmt.Fprintf(stderr, "profproxy: %v\n", err)
					cpu.Close()
					cpu = nil
				}
			}
			if s == syscall.SIGUSR2 && cpu != nil {
				pprof.StopCPUProfile()
				cpu.Close()
				cpu = nil
				if err := writeHeap(dir, label); err != nil {
					fmt.Fprintf(stderr, "profproxy: %v\n", err)
				}
			}
		}
	}
}

// writeHeap collects garbage and writes the heap profile and the memory
// figures of label.
func writeHeap(dir, label string) error {
	runtime.GC()
	f, err := os.Create(filepath.Join(dir, label+".heap.pprof"))
	if err != nil {
		return err
	}
	err = pprof.Lookup("heap").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	text := fmt.Sprintf("goroutines %d\nheap_inuse %d\nheap_alloc %d\nstack_inuse %d\nsys %d\nheap_released %d\nnum_gc %d\n",
		runtime.NumGoroutine(), ms.HeapInuse, ms.HeapAlloc, ms.StackInuse, ms.Sys, ms.HeapReleased, ms.NumGC)
	tmp := filepath.Join(dir, label+".mem.txt.tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, label+".mem.txt"))
}
