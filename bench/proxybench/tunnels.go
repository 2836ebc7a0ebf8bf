package proxybench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/sshproxy/tunnel"
)

// Memory is row 6: the proxy's resident memory with no tunnel and with
// Tunnels idle ones.
type Memory struct {
	Tunnels int
	// RSS0 and RSS1 are the proxy's VmRSS in bytes before and after.
	RSS0, RSS1 int64
	// Join is how long registering the nodes with the CA took, Connect
	// how long until every tunnel was up.
	Join, Connect time.Duration
	Err           error
}

// PerTunnel is the RSS the proxy grew by per idle tunnel, in bytes.
func (m Memory) PerTunnel() float64 {
	if m.Tunnels == 0 {
		return 0
	}
	return float64(m.RSS1-m.RSS0) / float64(m.Tunnels)
}

// idleNode is a node registered for the memory row: its host key with
// the host certificate from its join.
type idleNode struct {
	name   string
	signer ssh.Signer
}

// Concurrency of the joins and of tunnel handshakes in flight (the
// proxy's tunnel listener closes connections beyond 256 handshakes at
// once).
const (
	joinWorkers     = 8
	dialConcurrency = 32
)

// joinIdleNodes registers n nodes named prefix0000, prefix0001, ...
// with the CA, as teleport-node join would, through its HTTPS API with
// the pinned client.
func (c *cluster) joinIdleNodes(ctx context.Context, prefix string, n int) ([]idleNode, error) {
	tok, err := c.token(ctx, "node", map[string]string{"env": prefix}, true)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(c.caURL(), client.Options{Pin: c.pin})
	if err != nil {
		return nil, fmt.Errorf("proxybench: %w", err)
	}
	nodes := make([]idleNode, n)
	next := atomic.Int64{}
	errs := make(chan error, joinWorkers)
	var wg sync.WaitGroup
	for range joinWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					errs <- nil
					return
				}
				nd, err := joinIdle(ctx, cl, tok, fmt.Sprintf("%s%04d", prefix, i))
				if err != nil {
					errs <- err
					return
				}
				nodes[i] = nd
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return nodes, ctx.Err()
}

func joinIdle(ctx context.Context, cl *client.Client, token, name string) (idleNode, error) {
	hostPub, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return idleNode{}, err
	}
	tlsPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return idleNode{}, err
	}
	der, err := x509.MarshalPKIXPublicKey(tlsPub)
	if err != nil {
		return idleNode{}, err
	}
	sp, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		return idleNode{}, err
	}
	id, err := cl.JoinNode(ctx, api.NodeJoinRequest{
		Token: token, Name: name,
		HostPublicKey: string(ssh.MarshalAuthorizedKey(sp)),
		TLSPublicKey:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
	})
	if err != nil {
		return idleNode{}, fmt.Errorf("proxybench: joining %s: %w", name, err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(id.HostCertificate))
	if err != nil {
		return idleNode{}, fmt.Errorf("proxybench: %s's host certificate: %w", name, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return idleNode{}, fmt.Errorf("proxybench: %s: the CA returned no certificate", name)
	}
	key, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		return idleNode{}, err
	}
	signer, err := ssh.NewCertSigner(cert, key)
	if err != nil {
		return idleNode{}, err
	}
	return idleNode{name: name, signer: signer}, nil
}

// tunnelFleet runs, in this process, one tunnel.Client per node and proxy
// tunnel listener (what tunnel.Pool runs for a node that the CA lists
// several proxies to), with a Target that is never dialled (the proxy
// opens no channel on them) and the clients' default keepalive and
// backoff, as teleport-node run has them.
type tunnelFleet struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// up counts the tunnels up, per proxy address in the order given.
	up []atomic.Int64
	// down, per proxy address, when set, counts the reports of a tunnel
	// lost or an attempt failed (row 7's restart).
	down []atomic.Pointer[atomic.Int64]
}

// startTunnels starts the clients of every node to every address in
// addrs, at most dialConcurrency first handshakes at a time, and returns
// at once.
func (c *cluster) startTunnels(ctx context.Context, nodes []idleNode, addrs []string) (*tunnelFleet, error) {
	hostCA, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.hostCA))
	if err != nil {
		return nil, fmt.Errorf("proxybench: the host CA key: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &tunnelFleet{cancel: cancel, up: make([]atomic.Int64, len(addrs)), down: make([]atomic.Pointer[atomic.Int64], len(addrs))}
	slots := make(chan struct{}, dialConcurrency)
	f.wg.Go(func() {
		for _, n := range nodes {
			for i, addr := range addrs {
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return
				}
				f.wg.Go(func() { _ = f.client(n, i, addr, hostCA, slots).Run(ctx) })
			}
		}
	})
	return f, nil
}

// client is node n's tunnel client to addr, the i-th address: it counts
// itself in f.up[i] while connected and frees a slot after its first
// attempt.
func (f *tunnelFleet) client(n idleNode, i int, addr string, hostCA ssh.PublicKey, slots <-chan struct{}) *tunnel.Client {
	up := &f.up[i]
	var once sync.Once
	connected := false
	return &tunnel.Client{
		Node: n.name, ProxyAddr: addr,
		Signer:  func() (ssh.Signer, error) { return n.signer, nil },
		HostCAs: func() []ssh.PublicKey { return []ssh.PublicKey{hostCA} },
		Target:  "127.0.0.1:1",
		OnState: func(isUp bool, _ error) {
			once.Do(func() { <-slots })
			if d := f.down[i].Load(); d != nil && !isUp {
				d.Add(1)
			}
			switch {
			case isUp && !connected:
				up.Add(1)
			case !isUp && connected:
				up.Add(-1)
			}
			connected = isUp
		},
	}
}

// stop ends every client and waits for them.
func (f *tunnelFleet) stop() {
	f.cancel()
	f.wg.Wait()
}

// measureTunnels is row 6. It registers n more nodes, restarts the proxy
// with the measured node's agent stopped (so it holds no tunnel and
// carries no garbage from the throughput rows), samples its RSS, brings
// up n idle tunnels from this process and samples again.
func (b *bench) measureTunnels(ctx context.Context, n int) Memory {
	m := Memory{Tunnels: n}
	start := time.Now()
	nodes, err := b.c.joinIdleNodes(ctx, "idle", n)
	m.Join = time.Since(start)
	if err != nil {
		m.Err = err
		return m
	}
	b.logf("joined %d idle nodes in %v", n, m.Join.Round(time.Millisecond))
	b.c.agent.stop()
	b.c.stopProxy()
	if err := b.c.startProxy(ctx); err != nil {
		m.Err = err
		return m
	}
	// The proxy follows the policy at once after a start (its cached one
	// may lack the last joins); give it and the runtime time to settle.
	if m.RSS0, err = b.settledRSS(ctx); err != nil {
		m.Err = err
		return m
	}
	b.profileStart("tunnels-0")
	b.profileStop()
	b.profileStart(fmt.Sprintf("tunnels-%d", n))
	fleet, err := b.c.startTunnels(ctx, nodes, []string{b.c.tunAddr})
	if err != nil {
		m.Err = err
		return m
	}
	defer fleet.stop()
	start = time.Now()
	err = waitFor(ctx, 60*time.Second, fmt.Sprintf("%d idle tunnels up", n), b.c.proxy, func() error {
		if up := fleet.up[0].Load(); up < int64(n) {
			return fmt.Errorf("%d of %d up", up, n)
		}
		return nil
	})
	m.Connect = time.Since(start)
	if err != nil {
		m.Err = err
		return m
	}
	b.logf("%d tunnels up in %v", n, m.Connect.Round(time.Millisecond))
	m.RSS1, m.Err = b.settledRSS(ctx)
	b.profileStop()
	return m
}

// settledRSS waits settleTime, then returns the median of five VmRSS
// samples of the proxy 200 ms apart.
func (b *bench) settledRSS(ctx context.Context) (int64, error) {
	return b.settledRSSPid(ctx, b.c.proxy.pid())
}

// settledRSSPid is settledRSS for process pid.
func (b *bench) settledRSSPid(ctx context.Context, pid int) (int64, error) {
	select {
	case <-time.After(b.o.settle()):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	var rss []int64
	for i := range 5 {
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		v, err := vmRSS(pid)
		if err != nil {
			return 0, err
		}
		rss = append(rss, v)
	}
	slices.Sort(rss)
	if rss[0] == 0 {
		return 0, errors.New("proxybench: the proxy's VmRSS is 0")
	}
	return rss[len(rss)/2], nil
}
