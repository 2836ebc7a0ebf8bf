package node

import (
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/internal/metrics"
	"github.com/opensshca/suite/internal/nodedir"
)

// nodeMetrics are teleport-node's Prometheus metrics. The alert that
// matters most is a policy not refreshed for a while: teleport-authkeys
// refuses every login once the cache is older than its --max-age.
type nodeMetrics struct {
	reg           *prometheus.Registry
	policyErrors  prometheus.Counter
	renewErrors   prometheus.Counter
	policyUsers   prometheus.Gauge
	policySuccess prometheus.Gauge
}

func newNodeMetrics(r *Runner) *nodeMetrics {
	const sub = "node"
	m := &nodeMetrics{reg: metrics.NewRegistry(sub)}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: metrics.Namespace, Subsystem: sub, Name: name, Help: help}
	}
	m.policyErrors = prometheus.NewCounter(prometheus.CounterOpts(opts("policy_errors_total",
		"Policy polls that failed (CA unreachable, node identity refused, cache not writable).")))
	m.renewErrors = prometheus.NewCounter(prometheus.CounterOpts(opts("renewal_errors_total",
		"Host and TLS certificate renewals that failed.")))
	m.policyUsers = prometheus.NewGauge(prometheus.GaugeOpts(opts("policy_users",
		"Users in the login policy cache teleport-authkeys answers from.")))
	m.policySuccess = prometheus.NewGauge(prometheus.GaugeOpts(opts("policy_last_success_timestamp_seconds",
		"When the policy was last fetched and written to the cache (Unix time; 0 = not since start).")))
	m.reg.MustRegister(m.policyErrors, m.renewErrors, m.policyUsers, m.policySuccess,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("host_cert_expiry_timestamp_seconds",
			"When the node's host certificate expires (Unix time; 0 = unreadable); renewed at 2/3 of its life.")),
			func() float64 { return hostCertExpiry(r.cfg.Dir) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("tunnels_configured",
			"Proxies this node should hold a reverse tunnel to.")), func() float64 {
			if pool := r.tunnels.Load(); pool != nil {
				return float64(len(pool.Addrs()))
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("tunnels_connected",
			"Proxies this node holds a reverse tunnel to now.")), func() float64 {
			return float64(len(r.TunnelsUp()))
		}),
	)
	return m
}

func hostCertExpiry(dir nodedir.Dir) float64 {
	b, err := os.ReadFile(dir.Path(nodedir.HostCert))
	if err != nil {
		return 0
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return 0
	}
	if c, ok := pub.(*ssh.Certificate); ok {
		return float64(min(c.ValidBefore, 1<<53))
	}
	return 0
}

// Metrics is the node agent's Prometheus registry (teleport-node run
// serves it on --metrics-listen).
func (r *Runner) Metrics() *prometheus.Registry { return r.metrics.reg }
