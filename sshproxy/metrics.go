package sshproxy

import (
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/internal/metrics"
)

// proxyMetrics are the proxy's Prometheus metrics. Gauges are read from
// the proxy's state at scrape time; the only counter is fed by the audit
// queue, so every audited outcome (refused logins, sessions, transfers,
// recording failures) is counted by type and result with no second
// bookkeeping to drift.
type proxyMetrics struct {
	reg    *prometheus.Registry
	events *prometheus.CounterVec
}

func newProxyMetrics(p *Proxy) *proxyMetrics {
	const sub = "proxy"
	m := &proxyMetrics{reg: metrics.NewRegistry(sub)}
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Subsystem: sub, Name: "audit_events_total",
		Help: "Audit events, by type (proxy.auth, session.start, recording.failed, ...) and result.",
	}, []string{"type", "result"})
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: metrics.Namespace, Subsystem: sub, Name: name, Help: help,
		}, f)
	}
	m.reg.MustRegister(m.events,
		gauge("sessions_active", "Sessions relayed now (jump and single-hop logins).", func() float64 {
			p.sessions.mu.Lock()
			defer p.sessions.mu.Unlock()
			return float64(len(p.sessions.byID))
		}),
		gauge("tunnels_connected", "Nodes holding a reverse tunnel to this proxy.", func() float64 {
			return float64(len(p.tunnels.Connected()))
		}),
		gauge("recordings_pending", "Finished recordings waiting in the spool for upload to the CA.", func() float64 {
			return float64(len(p.spool.Pending()))
		}),
		gauge("recording_free_bytes", "Free bytes in the recording directory (new recorded sessions need --min-recording-free).", func() float64 {
			var st syscall.Statfs_t
			if err := syscall.Statfs(filepath.Join(p.cfg.DataDir, dirRecordings), &st); err != nil {
				return -1
			}
			return float64(int64(st.Bavail) * st.Bsize)
		}),
		gauge("audit_queue_length", "Audit events not yet delivered to the CA.", func() float64 {
			return float64(p.events.len())
		}),
		gauge("policy_last_success_timestamp_seconds", "When the CA last answered the proxy's policy poll (Unix time; 0 = not since start).", func() float64 {
			return float64(p.polContact.Load())
		}),
		gauge("host_cert_expiry_timestamp_seconds", "When the proxy's host certificate expires (Unix time); renewed at 2/3 of its life.", func() float64 {
			if c, ok := p.currentHostSigner().PublicKey().(*ssh.Certificate); ok {
				return float64(min(c.ValidBefore, 1<<53))
			}
			return 0
		}),
	)
	return m
}

// Metrics is the proxy's Prometheus registry (teleport-proxy serves it on
// --metrics-listen).
func (p *Proxy) Metrics() *prometheus.Registry { return p.metrics.reg }
