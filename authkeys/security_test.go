package authkeys

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestSecurityNodeRefusals proves docs/SECURITY.md "Access: refused and
// audited" on a node: for each refusal teleport-authkeys makes for sshd,
// sshd gets nothing on stdout (so it refuses the login), the reason is
// the error Main writes to stderr as "teleport-authkeys: denied: ...",
// and the same reason goes to the log (syslog, authpriv, in the real
// command) as "denied login as ...". The user's ssh shows only
// "Permission denied (publickey)": sshd tells clients nothing more.
func TestSecurityNodeRefusals(t *testing.T) {
	t.Parallel()
	trusted, other := testSigner(t, seedTrustedCA), testSigner(t, seedOtherCA)
	keys := func(c *ssh.Certificate) (string, string) { return offered(c) }
	for _, tc := range []struct {
		name, mode, verb, login, a, b string
		want                          string
	}{
		{name: "removed user with a valid certificate", mode: ModeOff, verb: "principals", login: "root", a: "zed", b: "1",
			want: "user zed has no login on node web-1 (unknown, removed, or no role selects this node)"},
		{name: "locked user", mode: ModeOff, verb: "principals", login: "root", a: "bob", b: "1",
			want: "user bob is locked"},
		{name: "revoked serial", mode: ModeOff, verb: "principals", login: "root", a: "alice", b: "10",
			want: "certificate serial 10 of user alice is revoked"},
		{name: "revoked session serial", mode: ModeProxy, verb: "principals", login: "root", a: keyIDFor(ModeProxy, "alice"), b: "20",
			want: "certificate serial 20 of user alice is revoked"},
		{name: "a login the role does not give", mode: ModeOff, verb: "principals", login: "admin", a: "alice", b: "1",
			want: "user alice may not log in as admin on node web-1 (allowed: root,deploy)"},
		{name: "a node whose labels the role does not match", mode: ModeOff, verb: "principals", login: "root", a: "carol", b: "1",
			want: "user carol may not log in as root on node web-1"},
		{name: "user certificate where only the session CA is trusted", mode: ModeProxy, verb: "principals", login: "root", a: "alice", b: "1",
			want: "is not a session certificate's"},
		{name: "crafted login", mode: ModeOff, verb: "principals", login: `root,command="/bin/sh"`, a: "alice", b: "1",
			want: "is not a valid login"},
		{name: "crafted login with a line", mode: ModeOff, verb: "principals", login: "root\nPermitRootLogin yes", a: "alice", b: "1",
			want: "is not a valid login"},
		{name: "crafted user name in the key id", mode: ModeOff, verb: "principals", login: "root", a: "alice\" ssh-ed25519 AAAA", b: "1",
			want: "is not a cluster user name"},
		{name: "crafted serial", mode: ModeOff, verb: "principals", login: "root", a: "alice", b: "1 2",
			want: "is not a decimal number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			denied(t, tc.mode, tc.verb, tc.login, tc.a, tc.b, tc.want)
		})
	}
	for _, tc := range []struct {
		name, mode, login string
		cert              *ssh.Certificate
		want              string
	}{
		{"certificate from an unknown CA", ModeOff, "root", signCert(t, other, ssh.UserCert, "alice", 1), "is not signed by the CA this node trusts"},
		{"host certificate used as a user certificate", ModeOff, "root", signCert(t, trusted, ssh.HostCert, "alice", 1), "is a host certificate, not a user certificate"},
		{"removed user (keys)", ModeOff, "root", signCert(t, trusted, ssh.UserCert, "zed", 1), "user zed has no login"},
		{"crafted login (keys)", ModeOff, `root" ssh-ed25519 AAAA`, signCert(t, trusted, ssh.UserCert, "alice", 1), "is not a valid login"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			typ, key := keys(tc.cert)
			denied(t, tc.mode, "keys", tc.login, typ, key, tc.want)
		})
	}
}

// denied runs one teleport-authkeys decision from a fresh cache and
// checks the refusal: nothing for sshd, the reason as the error (the
// stderr line) and in the log.
func denied(t *testing.T, mode, verb, login, a, b, want string) {
	t.Helper()
	d := newNodeDir(t)
	c := policyCache(t, mode)
	now := c.Confirmed
	writeCache(t, d, c)
	var logged []string
	r := testRunner(d, &now, noFetch(t))
	r.Log = func(msg string) { logged = append(logged, msg) }
	out, err := r.Answer(verb, login, a, b)
	if out != "" {
		t.Fatalf("sshd was told %q", out)
	}
	wantDenied(t, err, want)
	if len(logged) != 1 || !strings.HasPrefix(logged[0], "denied login as ") || !strings.Contains(logged[0], want) {
		t.Errorf("log %q, want one \"denied login as ...\" line with %q", logged, want)
	}
	for _, l := range logged {
		if strings.ContainsAny(l, "\n\r") {
			t.Errorf("log line %q holds a line break: a crafted name could forge log lines", l)
		}
	}
}
