package sshproxy_test

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape reads a Prometheus text exposition: "name{labels}" → value.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scraping %s: %s\n%s", addr, resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%s: bad sample line %q", addr, line)
		}
		out[line[:i]] = v
	}
	return out
}

// names returns the metric names of a scrape (without labels).
func names(m map[string]float64) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		name, _, _ := strings.Cut(k, "{")
		name = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		out[name] = true
	}
	return out
}

// checkMetrics scrapes the real daemons of TestProxyRecordingMode after its
// sessions ran: the values reflect the cluster (two nodes with tunnels, one
// proxy, sessions and certificates issued), and every metric the alert
// rules in contrib/prometheus use is exposed, so the rules cannot drift
// from the code.
func checkMetrics(t *testing.T, addr map[string]string) {
	now := float64(time.Now().Unix())
	ca, proxy, node := scrape(t, addr["ca"]), scrape(t, addr["proxy"]), scrape(t, addr["node"])
	expect := func(what string, m map[string]float64, series string, ok func(float64) bool) {
		t.Helper()
		v, found := m[series]
		if !found || !ok(v) {
			t.Errorf("%s: %s = %v (present %v)", what, series, v, found)
		}
	}
	atLeast := func(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
	equal := func(n float64) func(float64) bool { return func(v float64) bool { return v == n } }
	future := func(v float64) bool { return v > now+3600 }
	recent := func(v float64) bool { return v > now-120 && v <= now+5 }

	expect("ca", ca, `teleport_ca_store_up`, equal(1))
	expect("ca", ca, `teleport_ca_nodes{state="active"}`, atLeast(2))
	expect("ca", ca, `teleport_ca_proxies{state="active"}`, equal(1))
	expect("ca", ca, `teleport_ca_certificates_issued_total{kind="session"}`, atLeast(3))
	expect("ca", ca, `teleport_ca_certificates_issued_total{kind="host"}`, atLeast(3))
	expect("ca", ca, `teleport_ca_audit_events_total{result="success",type="token.add"}`, atLeast(3))
	expect("ca", ca, `teleport_ca_http_requests_total{code="200",route="POST /v1/proxies/session-cert"}`, atLeast(3))

	expect("proxy", proxy, `teleport_proxy_tunnels_connected`, equal(2))
	expect("proxy", proxy, `teleport_proxy_sessions_active`, equal(0))
	expect("proxy", proxy, `teleport_proxy_audit_events_total{result="success",type="session.start"}`, atLeast(3))
	expect("proxy", proxy, `teleport_proxy_audit_events_total{result="failure",type="proxy.auth"}`, atLeast(1))
	expect("proxy", proxy, `teleport_proxy_policy_last_success_timestamp_seconds`, recent)
	expect("proxy", proxy, `teleport_proxy_host_cert_expiry_timestamp_seconds`, future)
	expect("proxy", proxy, `teleport_proxy_recording_free_bytes`, atLeast(1))

	expect("node", node, `teleport_node_tunnels_connected`, equal(1))
	expect("node", node, `teleport_node_tunnels_configured`, equal(1))
	expect("node", node, `teleport_node_policy_users`, atLeast(2))
	expect("node", node, `teleport_node_policy_last_success_timestamp_seconds`, recent)
	expect("node", node, `teleport_node_host_cert_expiry_timestamp_seconds`, future)

	rules, err := os.ReadFile("../contrib/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	exposed := names(ca)
	for k := range names(proxy) {
		exposed[k] = true
	}
	for k := range names(node) {
		exposed[k] = true
	}
	used := regexp.MustCompile(`\bteleport_[a-z_]+`).FindAllString(string(rules), -1)
	if len(used) < 10 {
		t.Fatalf("found only %d metric names in alerts.yml", len(used))
	}
	for _, name := range used {
		if !exposed[name] {
			t.Errorf("contrib/prometheus/alerts.yml uses %s, which no daemon exposes", name)
		}
	}
	if t.Failed() {
		t.Logf("ca:\n%v\nproxy:\n%v\nnode:\n%v", ca, proxy, node)
	}
}
