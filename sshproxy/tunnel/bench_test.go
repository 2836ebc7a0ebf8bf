package tunnel

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// BenchmarkIdleTunnelMemory opens b.N idle tunnels to one Server and
// reports how much the heap (HeapInuse) and goroutine stacks (StackInuse)
// grew per tunnel, and the goroutines per tunnel. ns/op is the time to
// bring up one tunnel with all b.N connecting at once.
//
//   - inprocess: nodes and proxy in this process, so both ends are counted.
//   - server: the nodes run in a child process (this test binary,
//     re-executed as TestHelperNodes), so only the proxy's side is counted.
//
// Pick the tunnel count with -benchtime, e.g.
//
//	go test -run '^$' -bench IdleTunnelMemory -benchtime 2000x ./sshproxy/tunnel
func BenchmarkIdleTunnelMemory(b *testing.B) {
	b.Run("inprocess", func(b *testing.B) { benchIdle(b, false) })
	b.Run("server", func(b *testing.B) { benchIdle(b, true) })
}

func benchIdle(b *testing.B, child bool) {
	_, caKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	ca, err := ssh.NewSignerFromKey(caKey)
	if err != nil {
		b.Fatal(err)
	}
	cas := func() []ssh.PublicKey { return []ssh.PublicKey{ca.PublicKey()} }
	cl := &cluster{t: b, ca: ca}
	p := cl.startProxy("", func(s *Server) {
		s.IsNode = func(name string) bool { return strings.HasPrefix(name, "node-") }
		s.Logger = nil
		s.MaxUnauthenticated = b.N + 16
	}, nil)

	var signers []ssh.Signer
	if !child {
		signers = benchSigners(b, ca, b.N)
	}
	heap0, stack0, g0 := memStats()
	b.ResetTimer()

	if child {
		stop := startHelperNodes(b, p.addr, caKey, b.N)
		defer stop()
	} else {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer func() { cancel(); wg.Wait() }()
		for i, s := range signers {
			c := &Client{
				Node:              fmt.Sprintf("node-%d", i),
				ProxyAddr:         p.addr,
				Signer:            fixed(s),
				HostCAs:           cas,
				KeepaliveInterval: time.Hour,
			}
			wg.Add(1)
			go func() { defer wg.Done(); _ = c.Run(ctx) }()
		}
	}
	waitFor(b, 5*time.Minute, "all tunnels up", func() bool { return len(p.Connected()) == b.N })
	b.StopTimer()

	heap1, stack1, g1 := memStats()
	n := float64(b.N)
	b.ReportMetric((float64(heap1)-float64(heap0))/n, "heapB/tunnel")
	b.ReportMetric((float64(stack1)-float64(stack0))/n, "stackB/tunnel")
	b.ReportMetric((float64(heap1+stack1)-float64(heap0+stack0))/n, "B/tunnel")
	b.ReportMetric(float64(g1-g0)/n, "goroutines/tunnel")
}

func memStats() (heap, stack uint64, goroutines int) {
	// Let handshake garbage and grown stacks go first.
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse, runtime.NumGoroutine()
}

func benchSigners(t testing.TB, ca ssh.Signer, n int) []ssh.Signer {
	signers := make([]ssh.Signer, n)
	for i := range signers {
		signers[i] = certSigner(t, ca, newKey(t), []string{fmt.Sprintf("node-%d", i)}, nil)
	}
	return signers
}

// startHelperNodes runs n nodes in a child process, connected to addr, and
// returns a func that stops them.
func startHelperNodes(b *testing.B, addr string, caKey ed25519.PrivateKey, n int) (stop func()) {
	block, err := ssh.MarshalPrivateKey(caKey, "")
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperNodes$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"TUNNEL_HELPER_NODES="+strconv.Itoa(n),
		"TUNNEL_HELPER_ADDR="+addr,
		"TUNNEL_HELPER_CA="+string(pem.EncodeToMemory(block)),
	)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	return func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("helper nodes: %v", err)
		}
	}
}

// TestHelperNodes is not a test: it is the child process of
// BenchmarkIdleTunnelMemory/server, running nodes until stdin closes.
func TestHelperNodes(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TUNNEL_HELPER_NODES"))
	if n == 0 {
		t.Skip("helper process for BenchmarkIdleTunnelMemory")
	}
	ca, err := ssh.ParsePrivateKey([]byte(os.Getenv("TUNNEL_HELPER_CA")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, s := range benchSigners(t, ca, n) {
		c := &Client{
			Node:              fmt.Sprintf("node-%d", i),
			ProxyAddr:         os.Getenv("TUNNEL_HELPER_ADDR"),
			Signer:            fixed(s),
			HostCAs:           func() []ssh.PublicKey { return []ssh.PublicKey{ca.PublicKey()} },
			KeepaliveInterval: time.Hour,
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Run(ctx) }()
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	wg.Wait()
}
