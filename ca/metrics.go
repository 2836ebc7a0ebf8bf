package ca

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/metrics"
)

// staleNodeAfter is how long a node may go unseen before the metrics
// count it as stale: three times touchNodeEvery, so one missed touch is
// not an alert.
const staleNodeAfter = 3 * touchNodeEvery

// caMetrics are the authority's Prometheus metrics (docs/operator-guide.md
// lists them; contrib/prometheus/alerts.yml alerts on them).
type caMetrics struct {
	reg          *prometheus.Registry
	issued       *prometheus.CounterVec
	issueErrors  *prometheus.CounterVec
	issueSeconds *prometheus.HistogramVec
	events       *prometheus.CounterVec
	auditErrors  prometheus.Counter
	requests     *prometheus.CounterVec
	reqSeconds   *prometheus.HistogramVec
}

func newCAMetrics(a *Authority) *caMetrics {
	const sub = "ca"
	m := &caMetrics{reg: metrics.NewRegistry(sub)}
	m.issued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Subsystem: sub, Name: "certificates_issued_total",
		Help: "Certificates signed and durably recorded, by kind (user, host, session).",
	}, []string{"kind"})
	m.issueErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Subsystem: sub, Name: "issuance_errors_total",
		Help: "Issuance requests that failed after validation (signing, invariants or the store), by kind.",
	}, []string{"kind"})
	m.issueSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metrics.Namespace, Subsystem: sub, Name: "issuance_duration_seconds",
		Help:    "Time from a validated request to a durably recorded certificate, by kind.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"kind"})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Subsystem: sub, Name: "audit_events_total",
		Help: "Audit events written, by type (user.login, token.add, ...) and result.",
	}, []string{"type", "result"})
	m.auditErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Subsystem: sub, Name: "audit_write_errors_total",
		Help: "Audit events the store failed to write (the action they describe was refused or logged).",
	})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metrics.Namespace, Subsystem: sub, Name: "http_requests_total",
		Help: "HTTPS API and web requests, by route pattern and status code.",
	}, []string{"route", "code"})
	m.reqSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metrics.Namespace, Subsystem: sub, Name: "http_request_duration_seconds",
		Help:    "HTTPS request latency by route pattern (policy long polls hold up to 25 s by design).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route"})
	storeUp := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metrics.Namespace, Subsystem: sub, Name: "store_up",
		Help: "1 if the store answered a read within 5 s at scrape time, else 0.",
	}, func() float64 {
		if a.Healthy(context.Background()) != nil {
			return 0
		}
		return 1
	})
	for _, k := range []certKind{kindUser, kindHost, kindSession} {
		// Zero series from the start, so rate() and alerts see them.
		m.issued.WithLabelValues(string(k))
		m.issueErrors.WithLabelValues(string(k))
	}
	m.reg.MustRegister(m.issued, m.issueErrors, m.issueSeconds, m.events, m.auditErrors,
		m.requests, m.reqSeconds, storeUp, &fleetCollector{a: a})
	return m
}

// fleetCollector counts nodes and proxies from the store at scrape time.
type fleetCollector struct{ a *Authority }

var (
	nodesDesc = prometheus.NewDesc(metrics.Namespace+"_ca_nodes",
		"Joined nodes; state=stale when a node has not called the CA for 15 minutes (it polls every 25 s).",
		[]string{"state"}, nil)
	proxiesDesc = prometheus.NewDesc(metrics.Namespace+"_ca_proxies",
		"Registered proxies; state=stale when a proxy has not called the CA for 15 minutes.",
		[]string{"state"}, nil)
)

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- nodesDesc
	ch <- proxiesDesc
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := c.a.now()
	count := func(seen []time.Time) (active, stale float64) {
		for _, t := range seen {
			if now.Sub(t) > staleNodeAfter {
				stale++
			} else {
				active++
			}
		}
		return
	}
	if nodes, err := c.a.Nodes(ctx); err == nil {
		var seen []time.Time
		for _, n := range nodes {
			seen = append(seen, n.LastSeen)
		}
		active, stale := count(seen)
		ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, active, "active")
		ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, stale, "stale")
	} else {
		ch <- prometheus.NewInvalidMetric(nodesDesc, err)
	}
	if proxies, err := c.a.Proxies(ctx); err == nil {
		var seen []time.Time
		for _, p := range proxies {
			seen = append(seen, p.LastSeen)
		}
		active, stale := count(seen)
		ch <- prometheus.MustNewConstMetric(proxiesDesc, prometheus.GaugeValue, active, "active")
		ch <- prometheus.MustNewConstMetric(proxiesDesc, prometheus.GaugeValue, stale, "stale")
	} else {
		ch <- prometheus.NewInvalidMetric(proxiesDesc, err)
	}
}

// Metrics is the authority's Prometheus registry (teleport-ca serves it
// on --metrics-listen).
func (a *Authority) Metrics() *prometheus.Registry { return a.metrics.reg }

// observeIssue counts one pipeline run that got past validation.
func (m *caMetrics) observeIssue(kind certKind, start time.Time, err error) {
	k := string(kind)
	if err != nil {
		m.issueErrors.WithLabelValues(k).Inc()
		return
	}
	m.issued.WithLabelValues(k).Inc()
	m.issueSeconds.WithLabelValues(k).Observe(time.Since(start).Seconds())
}

// instrument counts requests by the ServeMux pattern that served them
// (bounded: patterns, not paths) and status code.
func (m *caMetrics) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		m.reqSeconds.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// proxyEventTypes are the event types teleport-proxy reports. A proxy's
// events are stored whatever their type (ProxyAudit), but only these
// become metric labels: a label per made-up type would let a proxy grow
// the CA's metrics without bound.
var proxyEventTypes = map[string]bool{
	"proxy.auth": true, "session.start": true, "session.end": true, "session.exec": true,
	"session.shell": true, "session.subsystem": true, "session.exit": true, "session.transfer": true,
	"session.forward": true, "session.terminated": true, "session.cert": true,
	"recording.failed": true, "recording.unavailable": true, "recording.stored": true,
}

// metricType is an event's type label: events the CA writes have types
// from its own code; a proxy's are kept to proxyEventTypes.
func metricType(ev api.AuditEvent) string {
	if strings.HasPrefix(ev.Actor, "proxy:") && !proxyEventTypes[ev.Type] {
		return "proxy.other"
	}
	return ev.Type
}
