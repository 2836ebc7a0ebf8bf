package proxybench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opensshca/suite/sshproxy/tunnel"
)

// Fleet is row 7: Nodes simulated nodes, each holding a reverse tunnel to
// both of two teleport-proxy processes as teleport-node run does for the
// proxies the CA lists (so Nodes tunnels per proxy, 2 x Nodes in all);
// then the first proxy is killed with SIGKILL and started again at once,
// and the time until every node is connected to it again is measured.
type Fleet struct {
	Nodes int
	// Proxies are the two proxies' figures, the restarted one first.
	Proxies [2]FleetProxy
	// Join is how long registering the nodes took, Connect how long
	// until all 2 x Nodes tunnels were up (first handshakes at most
	// dialConcurrency at a time).
	Join, Connect time.Duration
	// Listening is from the SIGKILL until the restarted proxy's tunnel
	// listener accepted a TCP connection.
	Listening time.Duration
	// Reconnect is from then until the restarted proxy's gauge
	// teleport_proxy_tunnels_connected showed every node, NodeSide until
	// every node's client to it reported its tunnel up.
	Reconnect, NodeSide time.Duration
	// Half and Most are from listening until the gauge showed half and
	// 90 % of the nodes.
	Half, Most time.Duration
	// OtherMin is the fewest tunnels the other proxy's gauge showed
	// while the first one was down and reconnecting (Nodes: none lost).
	OtherMin int
	// RSSAfter is the restarted proxy's VmRSS once every node was back.
	RSSAfter int64
	// Refused counts the nodes' failed attempts to reach the restarted
	// proxy (connection refused or closed before the tunnel was up).
	Refused int64
	// ProxyCPU and NodesCPU are the CPU time the restarted proxy and the
	// simulated nodes (this process) spent from the kill until every
	// node was back; Others is the share of the machine's CPUs other
	// processes used meanwhile (-1 if unknown).
	ProxyCPU, NodesCPU time.Duration
	Others             float64
	Err                error
}

// FleetProxy is one proxy of row 7.
type FleetProxy struct {
	Name string
	// RSS0 and RSS1 are its VmRSS with no tunnel and with Nodes.
	RSS0, RSS1 int64
}

// PerTunnel is the RSS the proxy grew by per idle tunnel, in bytes.
func (p FleetProxy) PerTunnel(nodes int) float64 {
	if nodes == 0 || p.RSS1 == 0 {
		return 0
	}
	return float64(p.RSS1-p.RSS0) / float64(nodes)
}

// fleetProxy is a teleport-proxy of row 7, with its own data dir, ports
// and metrics listener.
type fleetProxy struct {
	name, dir              string
	addr, tunAddr, metrics string
	p                      *proc
	joined                 bool
}

// newFleetProxies picks the two proxies' directories and ports.
func (c *cluster) newFleetProxies() ([2]*fleetProxy, error) {
	var fps [2]*fleetProxy
	addrs, err := freePorts(6)
	if err != nil {
		return fps, err
	}
	for i, name := range []string{"fleet-a", "fleet-b"} {
		fps[i] = &fleetProxy{name: name, dir: filepath.Join(c.dir, name),
			addr: addrs[3*i], tunAddr: addrs[3*i+1], metrics: addrs[3*i+2]}
	}
	return fps, nil
}

// start starts (or restarts, on the same data dir and ports) the proxy,
// joining the cluster the first time, and returns at once.
func (fp *fleetProxy) start(ctx context.Context, c *cluster) error {
	args := []string{"--data-dir", fp.dir, "--listen", fp.addr, "--tunnel-listen", fp.tunAddr,
		"--public-addr", fp.addr, "--metrics-listen", fp.metrics, "--log-level", "warn"}
	if !fp.joined {
		tok, err := c.token(ctx, "proxy", nil, false)
		if err != nil {
			return err
		}
		args = append(args, "--server", c.caURL(), "--token", tok, "--ca-pin", c.pin, "--name", fp.name)
	}
	var err error
	if fp.p, err = startProc(fp.name, nil, c.bins.Proxy, args...); err != nil {
		return err
	}
	fp.joined = true
	return nil
}

// gauge reads teleport_proxy_tunnels_connected from the proxy's metrics.
func (fp *fleetProxy) gauge(ctx context.Context) (int, error) {
	v, err := scrapeGauge(ctx, "http://"+fp.metrics+"/metrics", "teleport_proxy_tunnels_connected")
	return int(v), err
}

// scrapeGauge returns the value of the unlabelled sample name in the
// Prometheus text at url.
func scrapeGauge(ctx context.Context, url, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("proxybench: %s: no %s", url, name)
}

// measureFleet is row 7. It stops the cluster's own proxy and node agent
// (so that neither counts), registers n nodes, starts two proxies,
// samples their RSS, brings up the nodes' 2n tunnels from this process,
// samples again, then kills the first proxy with SIGKILL, starts it again
// at once and times the nodes' return.
func (b *bench) measureFleet(ctx context.Context, n int) Fleet {
	f := Fleet{Nodes: n}
	c := b.c
	c.agent.stop()
	c.stopProxy()
	start := time.Now()
	nodes, err := c.joinIdleNodes(ctx, "fleet", n)
	f.Join = time.Since(start)
	if err != nil {
		f.Err = err
		return f
	}
	b.logf("row 7: joined %d nodes in %v", n, f.Join.Round(time.Millisecond))
	fps, err := c.newFleetProxies()
	if err != nil {
		f.Err = err
		return f
	}
	defer func() {
		for _, fp := range fps {
			fp.p.stop()
			os.RemoveAll(fp.dir)
		}
	}()
	for i, fp := range fps {
		f.Proxies[i].Name = fp.name
		if err := fp.start(ctx, c); err != nil {
			f.Err = err
			return f
		}
		if err := waitFor(ctx, readyTimeout, fp.name+"'s metrics", fp.p, func() error { _, err := fp.gauge(ctx); return err }); err != nil {
			f.Err = err
			return f
		}
	}
	for i, fp := range fps {
		if f.Proxies[i].RSS0, err = b.settledRSSOf(ctx, fp.p); err != nil {
			f.Err = err
			return f
		}
	}
	fleet, err := c.startTunnels(ctx, nodes, []string{fps[0].tunAddr, fps[1].tunAddr})
	if err != nil {
		f.Err = err
		return f
	}
	defer fleet.stop()
	start = time.Now()
	if f.Err = waitAllUp(ctx, 2*time.Minute, fps, fleet, n); f.Err != nil {
		return f
	}
	f.Connect = time.Since(start)
	b.logf("row 7: %d tunnels up in %v", 2*n, f.Connect.Round(time.Millisecond))
	for i, fp := range fps {
		if f.Proxies[i].RSS1, err = b.settledRSSOf(ctx, fp.p); err != nil {
			f.Err = err
			return f
		}
	}
	b.restartFleetProxy(ctx, &f, fps, fleet)
	return f
}

// waitAllUp waits until both proxies' gauges and the nodes' side show n
// tunnels each.
func waitAllUp(ctx context.Context, within time.Duration, fps [2]*fleetProxy, fleet *tunnelFleet, n int) error {
	for i, fp := range fps {
		err := waitFor(ctx, within, fmt.Sprintf("%d tunnels to %s", n, fp.name), fp.p, func() error {
			g, err := fp.gauge(ctx)
			if err != nil {
				return err
			}
			if up := fleet.up[i].Load(); g < n || up < int64(n) {
				return fmt.Errorf("gauge %d, nodes' side %d of %d", g, up, n)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// restartFleetProxy kills the first proxy with SIGKILL, starts it again
// at once and fills in the restart figures of f.
func (b *bench) restartFleetProxy(ctx context.Context, f *Fleet, fps [2]*fleetProxy, fleet *tunnelFleet) {
	a, other := fps[0], fps[1]
	n := f.Nodes
	var refused atomic.Int64
	stopCount := fleet.countDrops(0, &refused)
	defer stopCount()
	busy0, unknown := machineBusy()
	self0, other0, ca0 := rusage(syscall.RUSAGE_SELF), procCPU(other.p.pid()), procCPU(b.c.ca.pid())
	killed := time.Now()
	_ = a.p.cmd.Process.Kill()
	<-a.p.done
	b.logf("row 7: %s killed (SIGKILL), starting it again", a.name)
	if err := a.start(ctx, b.c); err != nil {
		f.Err = err
		return
	}
	if err := waitFor(ctx, readyTimeout, a.name+"'s tunnel listener", a.p, func() error { return dialOnce(a.tunAddr) }); err != nil {
		f.Err = err
		return
	}
	listening := time.Now()
	f.Listening = listening.Sub(killed)
	f.OtherMin = n
	var gaugeAt, nodesAt, halfAt, mostAt time.Time
	err := waitFor(ctx, 3*time.Minute, fmt.Sprintf("%d tunnels back to %s", n, a.name), a.p, func() error {
		if g, err := other.gauge(ctx); err == nil {
			f.OtherMin = min(f.OtherMin, g)
		}
		g, err := a.gauge(ctx)
		if err != nil {
			return err
		}
		now := time.Now()
		if 2*g >= n && halfAt.IsZero() {
			halfAt = now
		}
		if 10*g >= 9*n && mostAt.IsZero() {
			mostAt = now
		}
		if g >= n && gaugeAt.IsZero() {
			gaugeAt = now
		}
		if up := fleet.up[0].Load(); up >= int64(n) && nodesAt.IsZero() {
			nodesAt = now
		}
		if gaugeAt.IsZero() || nodesAt.IsZero() {
			return fmt.Errorf("gauge %d, nodes' side %d of %d", g, fleet.up[0].Load(), n)
		}
		return nil
	})
	if err != nil {
		f.Err = err
		return
	}
	busy1, unknown1 := machineBusy()
	f.ProxyCPU, f.NodesCPU = procCPU(a.p.pid()), rusage(syscall.RUSAGE_SELF)-self0
	rest := procCPU(other.p.pid()) - other0 + procCPU(b.c.ca.pid()) - ca0
	f.Others = -1
	if capacity := time.Since(killed).Seconds() * float64(runtime.NumCPU()); !unknown && !unknown1 && capacity > 0 {
		f.Others = max(0, (busy1-busy0-f.ProxyCPU-f.NodesCPU-rest).Seconds()/capacity)
	}
	f.Reconnect, f.NodeSide = gaugeAt.Sub(listening), nodesAt.Sub(listening)
	f.Half, f.Most = halfAt.Sub(listening), mostAt.Sub(listening)
	f.Refused = refused.Load() - int64(n) // each node's loss of its tunnel is one report too
	b.logf("row 7: %s listening after %v, all %d nodes back %v later", a.name,
		f.Listening.Round(time.Millisecond), n, f.Reconnect.Round(time.Millisecond))
	f.RSSAfter, f.Err = b.settledRSSOf(ctx, a.p)
}

// countDrops makes the fleet count, into drops, every report of a
// tunnel down or an attempt failed on proxy i from now on; the returned
// func stops counting.
func (f *tunnelFleet) countDrops(i int, drops *atomic.Int64) func() {
	f.down[i].Store(drops)
	return func() { f.down[i].Store(nil) }
}

// dialOnce checks that something accepts TCP connections on addr.
func dialOnce(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return conn.Close()
}

// settledRSSOf is settledRSS for process p.
func (b *bench) settledRSSOf(ctx context.Context, p *proc) (int64, error) {
	return b.settledRSSPid(ctx, p.pid())
}

// fleetBackoff describes the nodes' reconnect policy (package
// sshproxy/tunnel's defaults, which teleport-node run keeps).
func fleetBackoff() string {
	return fmt.Sprintf("the n-th wait in a row drawn uniformly from [%v, min(%v, %v x 2^(n+1))] (full jitter, the first wait after a loss too), keepalive every %v",
		tunnel.DefaultMinBackoff, tunnel.DefaultMaxBackoff, tunnel.DefaultMinBackoff, tunnel.DefaultKeepaliveInterval)
}
