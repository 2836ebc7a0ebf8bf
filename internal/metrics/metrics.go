// Package metrics serves the daemons' Prometheus metrics: each daemon
// (teleport-ca, teleport-proxy, teleport-node) keeps its own registry,
// made by NewRegistry with the Go runtime and process collectors and a
// build_info gauge, and serves it over plain HTTP on the address given by
// its --metrics-listen flag (off by default).
//
// The metrics carry no secrets, but they describe the cluster (node
// counts, session counts, certificate expiry), so bind the listener to
// loopback or a management network; docs/operator-guide.md shows how and
// contrib/prometheus holds alert rules written against these names.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric the suite defines.
const Namespace = "teleport"

// NewRegistry returns a registry holding the Go runtime and process
// collectors and teleport_<component>_build_info{version,go}.
func NewRegistry(component string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	version, goVersion := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 && version == "(devel)" {
				version = "devel-" + s.Value[:12]
			}
		}
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   Namespace,
		Subsystem:   component,
		Name:        "build_info",
		Help:        "Always 1; the labels name the build.",
		ConstLabels: prometheus.Labels{"version": version, "go": goVersion},
	})
	info.Set(1)
	reg.MustRegister(info)
	return reg
}

// Result is the "result" label value for an outcome.
func Result(ok bool) string {
	if ok {
		return "success"
	}
	return "failure"
}

// Listen opens the metrics listener; an empty address means metrics are
// off and returns a nil listener.
func Listen(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("--metrics-listen %q is not host:port (such as 127.0.0.1:9580)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	return ln, nil
}

// Serve answers GET /metrics on ln from reg until ctx ends. A nil ln
// returns at once (metrics off).
func Serve(ctx context.Context, ln net.Listener, reg *prometheus.Registry, log *slog.Logger) error {
	if ln == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slogPrinter{log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "Prometheus metrics are at /metrics")
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving metrics", "listen", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("metrics listener: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics", "err", fmt.Sprint(v...)) }
