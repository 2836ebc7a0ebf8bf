package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestServe(t *testing.T) {
	if ln, err := Listen(""); ln != nil || err != nil {
		t.Fatalf("Listen(\"\") = %v, %v; want metrics off", ln, err)
	}
	if _, err := Listen("9580"); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Fatalf("Listen without a host: %v", err)
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry("test")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, reg, slog.New(slog.DiscardHandler)) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"teleport_test_build_info{", "go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if resp, err := http.Post("http://"+ln.Addr().String()+"/metrics", "text/plain", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %v %v", resp.Status, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after ctx ended")
	}
}

// TestAlertRules checks contrib/prometheus/alerts.yml with the real
// promtool: syntax and PromQL, then the unit tests in alerts_test.yml
// (each alert fires on its failure and not on a healthy cluster). That
// the metrics it names exist is checked against the real daemons in
// sshproxy's integration test.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install the prometheus package (.ci/run does)")
	}
	dir := "../../contrib/prometheus"
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
