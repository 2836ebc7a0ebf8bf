package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/keyhelper"
)

func (a *app) logoutCmd() *ffcli.Command {
	var server, home string
	fs := newFlagSet("logout")
	fs.StringVar(&server, "server", "", "the cluster's CA, https://`HOST[:PORT]` (default: every cluster logged in to)")
	homeFlag(fs, &home)
	return &ffcli.Command{
		Name:       "logout",
		ShortUsage: "teleport-keyhelper logout [--server URL]",
		ShortHelp:  "Remove the certificate and end the sign-in",
		LongHelp: strings.TrimSpace(`
Removes the cluster's certificates from ssh-agent, ends the sign-in on the
CA, and removes the cluster's files under ~/.teleport (and a certificate
written next to a --key-path key, never the key itself). Without --server
it logs out of every cluster.

Local state is removed even when the CA cannot be reached; the command
then says so and exits 1, and the sign-in ends by itself when it expires.

Example:
  teleport-keyhelper logout --server https://ca.example.com:3080`),
		FlagSet: fs,
		Options: envOptions(),
		Exec: noArgs(fs, func(ctx context.Context) error {
			failed := false
			err := a.forEach(fs, home, server, func(h *keyhelper.Home, s keyhelper.Server, _ int) error {
				r, err := h.Logout(ctx, s, a.getenv(keyhelper.AgentEnv))
				if r != nil {
					failed = a.reportLogout(r) || failed
				}
				return err
			})
			if err == nil && failed {
				err = errReported
			}
			return err
		}),
	}
}

// reportLogout prints what a logout did and reports whether part of it
// failed.
func (a *app) reportLogout(r *keyhelper.LogoutResult) (failed bool) {
	var done []string
	if r.AgentRemoved > 0 {
		done = append(done, "removed "+plural(r.AgentRemoved, "ssh-agent entry", "ssh-agent entries"))
	}
	done = append(done, "removed "+plural(len(r.Removed), "file", "files"))
	if r.SessionEnded {
		done = append(done, "ended the sign-in")
	}
	fmt.Fprintf(a.stdout, "Logged out of %s (%s): %s.\n", r.Server, r.User, strings.Join(done, ", "))
	if r.Device != "" {
		fmt.Fprintf(a.stderr, "The sign-in on the web page goes on, and teleport-keyhelper daemon (device %s) brings the certificate back "+
			"at its next renewal: sign out on the web page to end it, or stop the daemon.\n", r.Device)
	}
	if r.AgentErr != nil && !errors.Is(r.AgentErr, keyhelper.ErrNoAgent) {
		fmt.Fprintf(a.stderr, "teleport-keyhelper: could not remove the certificates of %s from ssh-agent: %s; they leave it when they expire\n",
			r.Server, keyhelper.Describe(r.AgentErr))
		failed = true
	}
	if r.ServerErr != nil {
		until := "when it expires"
		if !r.SessionExpires.IsZero() {
			until = "at " + r.SessionExpires.Local().Format(timeLayout)
		}
		fmt.Fprintf(a.stderr, "teleport-keyhelper: could not end the sign-in on the CA (%s); the local state is removed, and the sign-in ends by itself %s\n",
			keyhelper.Describe(r.ServerErr), until)
		failed = true
	}
	return failed
}

// plural returns "1 file" or "n files".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
