package node_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/nodedir"
	"github.com/opensshca/suite/internal/testbin"
	"github.com/opensshca/suite/node"
)

// TestRunWarnsOfClockSkew runs teleport-node's agent against the real
// teleport-ca with the node's clock moved: after each policy poll it
// compares its clock with the CA's Date header and warns, naming both
// clocks, when they differ by more than a minute; in step, it says
// nothing.
func TestRunWarnsOfClockSkew(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the node's cache directory is owned by the authkeys user; CI runs the tests as root")
	}
	ca := testbin.StartCA(t)
	for i, tc := range []struct {
		name string
		off  time.Duration
		want string // regexp; "" for no warning
	}{
		{"in step", 0, ""},
		{"1h behind", -time.Hour, `this node's clock is 1h0m behind the CA's: sshd checks certificates with this clock, so logins are refused once the difference passes a few minutes; check NTP \(timedatectl\)","node_clock":"[-0-9T:]+Z","ca_clock":"[-0-9T:]+Z"`},
		{"2m ahead", 2 * time.Minute, `this node's clock is 2m ahead of the CA's: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := ca.Admin().AddToken(context.Background(), api.AddTokenRequest{Role: "node"})
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "node")
			if err := node.Join(context.Background(), node.JoinConfig{Server: ca.URL(), Token: tok.Secret, Pin: ca.Pin, Dir: dir, Name: fmt.Sprintf("n%d", i), AuthkeysUser: "nobody"}); err != nil {
				t.Fatal(err)
			}
			logs := new(testbin.Buffer)
			r, err := node.NewRunner(node.RunConfig{
				Dir: nodedir.Dir(dir), NoTunnels: true, PolicyWait: 100 * time.Millisecond,
				Now: func() time.Time { return time.Now().Add(tc.off) },
				Log: slog.New(slog.NewJSONHandler(logs, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			defer func() { cancel(); <-done }()
			time.Sleep(time.Second) // several polls
			if tc.want == "" {
				if regexp.MustCompile(`clock`).MatchString(logs.String()) {
					t.Fatalf("a clock warning with the clocks in step:\n%s", logs)
				}
				return
			}
			if !regexp.MustCompile(`"level":"WARN","msg":"` + tc.want).MatchString(logs.String()) {
				t.Fatalf("log lacks /%s/:\n%s", tc.want, logs)
			}
		})
	}
}
