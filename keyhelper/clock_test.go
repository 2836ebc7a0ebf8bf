package keyhelper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/internal/testbin"
)

// TestLoginClockSkew logs in against the real teleport-ca with this
// machine's clock moved: the CA's Date header and the certificate's
// validity show the difference, and the user is told in words that name
// the clocks. Two minutes work with a warning; an hour ahead fails (the
// certificate is over by this clock) and an hour behind warns.
func TestLoginClockSkew(t *testing.T) {
	t.Parallel()
	c := startCluster(t, testbin.Config{})
	const clockRE = `\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC`
	for i, tc := range []struct {
		name    string
		off     time.Duration
		wantErr string // regexp of Describe(err); "" for success
		warn    string // regexp of the notes; "" for no warning
	}{
		{"in step", 0, "", ""},
		{"2m ahead", 2 * time.Minute, "", `Warning: this machine's clock says ` + clockRE + `, but the CA's says ` + clockRE + `: this clock is 2m ahead of the CA's; .*fix the clock \(timedatectl; check NTP\)\.`},
		{"2m behind", -2 * time.Minute, "", `Warning: this machine's clock says ` + clockRE + `, but the CA's says ` + clockRE + `: this clock is 2m behind the CA's; `},
		{"1h behind", -time.Hour, "", `Warning: this machine's clock says ` + clockRE + `, but the CA's says ` + clockRE + `: this clock is 1h0m behind the CA's; ` +
			`certificates look not yet valid or expired here, and ssh-agent drops them at the wrong time: fix the clock \(timedatectl; check NTP\)\.`},
		{"1h ahead", time.Hour, `^the certificate expired at .* by this machine's clock, which is 1h0m ahead of the CA's; fix the clock \(timedatectl; check NTP\), then run teleport-keyhelper login again$`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := fmt.Sprintf("skew%d", i)
			secret := c.addUser(t, user)
			var notes bytes.Buffer
			_, err := Login(context.Background(), LoginConfig{
				Home: newHome(t), Server: c.server, User: user, Pin: c.ca.Pin, Notes: &notes,
				Clock: func() time.Time { return time.Now().Add(tc.off) },
				Credentials: func(context.Context) (Credentials, error) {
					return Credentials{Password: testPassword(user), Code: totp(t, secret, time.Now())}, nil
				},
			})
			if tc.wantErr != "" {
				var ee *ExpiredError
				if !errors.As(err, &ee) || !regexp.MustCompile(tc.wantErr).MatchString(Describe(err)) {
					t.Fatalf("login with the clock %v off: %v (%s), want /%s/", tc.off, err, Describe(err), tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("login with the clock %v off: %s", tc.off, Describe(err))
			}
			switch {
			case tc.warn == "" && strings.Contains(notes.String(), "Warning"):
				t.Errorf("a warning with the clocks in step:\n%s", &notes)
			case tc.warn != "" && !regexp.MustCompile(tc.warn).MatchString(notes.String()):
				t.Errorf("notes lack /%s/:\n%s", tc.warn, &notes)
			}
		})
	}
}
