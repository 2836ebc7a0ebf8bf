package sshproxy_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca"
	"github.com/opensshca/suite/ca/api"
)

// TestClockSkew runs the CA and the proxy in-process on skewed clocks
// against a real node (teleport-node, real sshd) and the real ssh client,
// which keep the real clock. Two minutes of skew either way, between any
// two of CA, proxy and node, still log in: the CA backdates ValidAfter by
// api.CertBackdate and the proxy's session certificates last long enough.
// An hour is refused, and the user is told it is the clocks.
func TestClockSkew(t *testing.T) {
	ic := newInprocCluster(t, ca.ServerConfig{}, nil)
	ic.caadm("roles", "add", "all-root", "--logins", "root", "--labels", "*=*")
	if _, err := ic.ca.Admin().AddUser(context.Background(), api.AddUserRequest{Name: "alice", Roles: []string{"all-root"}, Password: "correct horse battery"}); err != nil {
		t.Fatal(err)
	}
	node := ic.startNode("node1", nil)
	waitTunnel(t, ic.user("alice"), "root", node, 20*time.Second)
	setSkew := func(t *testing.T, caOff, proxyOff time.Duration) {
		ic.caClock.set(caOff)
		ic.proxyClock.set(proxyOff)
		t.Cleanup(func() { ic.caClock.set(0); ic.proxyClock.set(0) })
	}

	for _, tc := range []struct {
		name      string
		ca, proxy time.Duration
	}{
		{"CA 2m ahead", 2 * time.Minute, 0},
		{"CA 2m behind", -2 * time.Minute, 0},
		{"proxy 2m ahead", 0, 2 * time.Minute},
		{"proxy 2m behind", 0, -2 * time.Minute},
		{"CA 2m ahead, proxy 2m behind", 2 * time.Minute, -2 * time.Minute},
		{"CA 2m behind, proxy 2m ahead", -2 * time.Minute, 2 * time.Minute},
	} {
		t.Run("works/"+tc.name, func(t *testing.T) {
			setSkew(t, tc.ca, tc.proxy)
			// A certificate signed now by the skewed CA, checked by the
			// skewed proxy; the session certificate, signed by the same
			// CA, checked by the node's sshd on the real clock.
			u := ic.user("alice")
			out, code := u.run(t, nil, "ssh", "root@node1", "echo skew-ok")
			if code != 0 || !strings.Contains(out, "skew-ok") {
				t.Fatalf("ssh -J with the CA %v and the proxy %v off: exit %d\n%s", tc.ca, tc.proxy, code, out)
			}
		})
	}

	// The user's certificate, by the proxy's clock: the message comes as
	// an authentication banner, before "Permission denied".
	t.Run("refused/user certificate from a CA 1h ahead", func(t *testing.T) {
		setSkew(t, time.Hour, 0)
		u := ic.user("alice")
		out, code := u.run(t, nil, "ssh", "root@node1", "true")
		wantRefusal(t, out, code,
			`teleport-proxy: your certificate is valid from \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, but this proxy's clock says [^:]+:\d\d:\d\d UTC: `+
				`the clocks of the CA and this proxy differ by about 1h0m; ask your administrator to check NTP \(timedatectl\) on both`)
	})
	t.Run("refused/user certificate from a CA 1h behind", func(t *testing.T) {
		setSkew(t, -time.Hour, 0)
		u := ic.user("alice") // 1 h lifetime: over by the real clock
		out, code := u.run(t, nil, "ssh", "root@node1", "true")
		wantRefusal(t, out, code,
			`teleport-proxy: your certificate expired at .* UTC by this proxy's clock, which says .* UTC; get a new one with teleport-keyhelper login. `+
				`If you got it just now, the clocks of the CA and this proxy differ by about 1h0m \(the CA signed it at .* UTC by its clock\): `+
				`ask your administrator to check NTP \(timedatectl\) on both`)
	})

	// The session certificate, by the proxy's clock: the user's own
	// certificate was signed while the clocks agreed.
	for _, off := range []time.Duration{time.Hour, -time.Hour} {
		t.Run("refused/session certificate from a CA "+api.SkewString(off)+map[bool]string{true: " ahead", false: " behind"}[off > 0], func(t *testing.T) {
			u := ic.user("alice")
			setSkew(t, off, 0)
			out, code := u.run(t, nil, "ssh", "root@node1", "true")
			window := "valid from"
			if off < 0 {
				window = "valid until"
			}
			wantRefusal(t, out, code,
				`teleport-proxy: the CA issued the session certificate for node node1 `+window+` .* UTC, but this proxy's clock says .* UTC: `+
					`the clocks of the CA and this proxy differ by about 1h0m; tell your administrator to check NTP \(timedatectl\) on both`)
		})
	}

	// CA and proxy agree with each other but not with the node: only the
	// node's sshd can see it, and it says "Certificate invalid: not yet
	// valid" in its own log; the user is told where to look.
	t.Run("refused/node 1h behind the CA and the proxy", func(t *testing.T) {
		setSkew(t, time.Hour, time.Hour)
		u := ic.user("alice")
		out, code := u.run(t, nil, "ssh", "root@node1", "true")
		wantRefusal(t, out, code,
			`teleport-proxy: node node1 refused the proxy's login \(does its sshd trust the session CA\? run teleport-node install-sshd-config there; `+
				`is its clock within a few minutes of the CA's\? check NTP there\)`)
		eventually(t, 5*time.Second, "sshd's own reason in its log", func() bool {
			return strings.Contains(node.sshd.Stderr.String(), "Certificate invalid: not yet valid")
		})
	})
}

// wantRefusal checks that ssh failed and printed a line matching re.
func wantRefusal(t *testing.T, out string, code int, re string) {
	t.Helper()
	if code == 0 {
		t.Fatalf("ssh succeeded:\n%s", out)
	}
	if !regexp.MustCompile(re).MatchString(out) {
		t.Fatalf("ssh output lacks /%s/:\n%s", re, out)
	}
}
