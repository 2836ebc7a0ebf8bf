package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/internal/cli"
	"github.com/opensshca/suite/keyhelper"
)

func (a *app) sessionsCmd() *ffcli.Command {
	var server, home string
	var asJSON bool
	fs := newFlagSet("sessions")
	fs.StringVar(&server, "server", "", "the cluster's CA, https://`HOST[:PORT]` (default: every cluster logged in to)")
	fs.BoolVar(&asJSON, "json", false, "print the sessions as a JSON array (needs --server when logged in to several clusters)")
	homeFlag(fs, &home)
	return &ffcli.Command{
		Name:       "sessions",
		ShortUsage: "teleport-keyhelper sessions [--server URL] [--json]",
		ShortHelp:  "Show who is logged in to the nodes you can log in to",
		LongHelp: strings.TrimSpace(`
Shows the active SSH sessions, through any of the cluster's proxies, on
the nodes where you have a login: to see whether someone else is on a node
before you work on it. For each: the session, the cluster user, the login,
the node, the proxy, when it started, where from, and what runs in it
(shell, commands, sftp, forwards).

It asks the cluster's proxy (the one the last login learned from the CA)
over SSH, as your cluster user, with the certificate and key of that
login (or the agent's copy of the key, after login --confirm). The proxy
is trusted only through a host certificate from the cluster's host CA,
as ssh trusts it with the ssh_config block; nothing is sent with a
certificate that has expired. With the block, plain ssh shows the same
list: ssh PROXY sessions.

--json prints a JSON array of objects with the fields id, proxy, user,
login, node, client_addr, started, recorded and channels. Without
--server it asks every cluster logged in to.

Examples:
  teleport-keyhelper sessions
  teleport-keyhelper sessions --server https://ca.example.com:3080 --json | jq '.[].node'`),
		FlagSet: fs,
		Options: envOptions(),
		Exec: noArgs(fs, func(ctx context.Context) error {
			h, err := a.home(home, false)
			if err != nil {
				return err
			}
			list, err := servers(h, fs, server)
			if err != nil {
				return err
			}
			if asJSON && len(list) > 1 {
				return cli.Usagef(fs, "--json needs --server: you are logged in to %d clusters", len(list))
			}
			return a.sessions(ctx, h, list, asJSON)
		}),
	}
}

// sessions prints the sessions of each cluster in list. With one cluster
// its failure is the command's; with several, each failure is reported
// and the others still shown.
func (a *app) sessions(ctx context.Context, h *keyhelper.Home, list []keyhelper.Server, asJSON bool) error {
	failed := false
	for i, s := range list {
		sessions, err := keyhelper.ListSessions(ctx, keyhelper.SessionsConfig{
			Home: h, Server: s, AgentSocket: a.getenv(keyhelper.AgentEnv),
		})
		if len(list) == 1 {
			if err != nil {
				return err
			}
			if asJSON {
				return keyhelper.WriteSessionsJSON(a.stdout, sessions)
			}
			return keyhelper.WriteSessionsTable(a.stdout, sessions, time.Local)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if i > 0 {
			fmt.Fprintln(a.stdout)
		}
		fmt.Fprintf(a.stdout, "Cluster %s:\n", s)
		if err != nil {
			fmt.Fprintf(a.stderr, "teleport-keyhelper: %s: %s\n", s, keyhelper.Describe(err))
			failed = true
			continue
		}
		if err := keyhelper.WriteSessionsTable(a.stdout, sessions, time.Local); err != nil {
			return err
		}
	}
	if failed {
		return errReported
	}
	return nil
}
