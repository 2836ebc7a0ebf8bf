package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/internal/cli"
	"github.com/opensshca/suite/keyhelper"
)

// timeLayout is how times are shown.
const timeLayout = "2006-01-02 15:04:05 MST"

func (a *app) configCmd() *ffcli.Command {
	var server, hosts, home string
	fs := newFlagSet("config")
	fs.StringVar(&server, "server", "", "the cluster's CA, https://`HOST[:PORT]` (default: every cluster logged in to)")
	fs.StringVar(&hosts, "hosts", "", "ssh_config host `patterns` to print the block with instead of the login's")
	homeFlag(fs, &home)
	return &ffcli.Command{
		Name:       "config",
		ShortUsage: "teleport-keyhelper config [--server URL] [--hosts PATTERNS]",
		ShortHelp:  "Print the ssh_config block again",
		LongHelp: strings.TrimSpace(`
Prints the ssh_config block of the last login (of every cluster logged in
to, or the one --server names), as login printed it, from what that login
learned: it does not ask the CA. Log in again after the cluster gets a
proxy. --hosts prints it for other host patterns without remembering them
(login --hosts remembers).

With a proxy, the block has two parts. The proxy's own Host block (its
port, your cluster user, the certificate, and the cluster's host CA as
the only trust) serves ssh to the proxy itself, which lists the nodes you
may log in to, and the one-hop form, where the login and the node go in
the user name and ssh splits it at the last "@":
  ssh -p 3023 LOGIN@NODE@PROXY
  scp -P 3023 FILE LOGIN@NODE@PROXY:PATH
  sftp -P 3023 LOGIN@NODE@PROXY
(the block sets the port, so -p and -P may be left out). The block of the
cluster's hosts (--hosts) reaches them with ProxyJump, as ssh -J does:
ssh LOGIN@HOST. The block's comments give the commands for the cluster.

Example:
  teleport-keyhelper config >> ~/.ssh/config
  ssh root@node1@bastion.prod.example.com`),
		FlagSet: fs,
		Options: envOptions(),
		Exec: noArgs(fs, func(context.Context) error {
			var hs []string
			if hosts != "" {
				var err error
				if hs, err = keyhelper.ParseHosts(hosts); err != nil {
					return cli.Usagef(fs, "%s", strings.TrimPrefix(err.Error(), "keyhelper: "))
				}
			}
			return a.forEach(fs, home, server, func(h *keyhelper.Home, s keyhelper.Server, i int) error {
				p, err := h.LoadProfile(s)
				if err != nil {
					return err
				}
				block, err := p.SSHConfig(hs)
				if err != nil {
					return err
				}
				if i > 0 {
					fmt.Fprintln(a.stdout)
				}
				_, err = fmt.Fprint(a.stdout, block)
				return err
			})
		}),
	}
}

func (a *app) statusCmd() *ffcli.Command {
	var server, home string
	fs := newFlagSet("status")
	fs.StringVar(&server, "server", "", "the cluster's CA, https://`HOST[:PORT]` (default: every cluster logged in to)")
	homeFlag(fs, &home)
	return &ffcli.Command{
		Name:       "status",
		ShortUsage: "teleport-keyhelper status [--server URL]",
		ShortHelp:  "Show the certificate and sign-in",
		LongHelp: strings.TrimSpace(`
Shows, for every cluster logged in to (or the one --server names), the
certificate's user, logins and expiry, the sign-in's expiry, and whether
ssh-agent holds the certificate. It reads local state only. Exits 1 when
not logged in anywhere.

Example:
  teleport-keyhelper status --server https://ca.example.com:3080`),
		FlagSet: fs,
		Options: envOptions(),
		Exec: noArgs(fs, func(context.Context) error {
			now := time.Now()
			return a.forEach(fs, home, server, func(h *keyhelper.Home, s keyhelper.Server, i int) error {
				st, err := h.Status(s, a.getenv(keyhelper.AgentEnv))
				if err != nil {
					return err
				}
				if i > 0 {
					fmt.Fprintln(a.stdout)
				}
				return writeStatus(a.stdout, st, now)
			})
		}),
	}
}

// forEach runs fn for the cluster named by server, or for every cluster.
func (a *app) forEach(fs *flag.FlagSet, home, server string, fn func(*keyhelper.Home, keyhelper.Server, int) error) error {
	h, err := a.home(home, false)
	if err != nil {
		return err
	}
	list, err := servers(h, fs, server)
	if err != nil {
		return err
	}
	for i, s := range list {
		if err := fn(h, s, i); err != nil {
			return err
		}
	}
	return nil
}

func writeStatus(w io.Writer, st *keyhelper.Status, now time.Time) error {
	p := st.Profile
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("Cluster:", st.Server.Addr())
	row("User:", p.User)
	if st.Cert == nil {
		row("Certificate:", fmt.Sprintf("none (%s); run teleport-keyhelper login", keyhelper.Describe(st.CertErr)))
	} else {
		row("Logins:", strings.Join(st.Cert.ValidPrincipals, ", "))
		end := keyhelper.CertEnd(st.Cert)
		if end.After(now) {
			row("Certificate:", fmt.Sprintf("valid until %s (%v left), serial %d", end.Local().Format(timeLayout), end.Sub(now).Round(time.Second), st.Cert.Serial))
		} else {
			row("Certificate:", fmt.Sprintf("expired at %s; run teleport-keyhelper login", end.Local().Format(timeLayout)))
		}
		row("", p.CertFile)
	}
	switch {
	case p.Device != "" && p.SessionExpires.After(now):
		row("Sign-in:", fmt.Sprintf("on the web page, valid until %s (%v left); teleport-keyhelper daemon (device %s) renews the certificate",
			p.SessionExpires.Local().Format(timeLayout), p.SessionExpires.Sub(now).Round(time.Second), p.Device))
	case p.Device != "":
		row("Sign-in:", fmt.Sprintf("none; sign in on the web page, and teleport-keyhelper daemon (device %s) gets the certificate", p.Device))
	case p.Session == "":
		row("Sign-in:", "none; the next login asks for your password and code")
	case p.SessionExpires.After(now):
		row("Sign-in:", fmt.Sprintf("valid until %s (%v left)", p.SessionExpires.Local().Format(timeLayout), p.SessionExpires.Sub(now).Round(time.Second)))
	default:
		row("Sign-in:", fmt.Sprintf("ended at %s; the next login asks for your password and code", p.SessionExpires.Local().Format(timeLayout)))
	}
	if st.Cert != nil {
		row("ssh-agent:", agentState(st))
	}
	if p.ProxyAddr != "" {
		row("Proxy:", p.ProxyAddr)
	} else {
		row("Proxy:", "none registered yet (hosts are reached directly)")
	}
	return tw.Flush()
}

func agentState(st *keyhelper.Status) string {
	switch {
	case errors.Is(st.AgentErr, keyhelper.ErrNoAgent):
		return "none ($SSH_AUTH_SOCK is not set)"
	case st.AgentErr != nil:
		return "cannot tell: " + keyhelper.Describe(st.AgentErr)
	case st.InAgent:
		return "holds the certificate"
	}
	return "does not hold the certificate (expired, removed, or another agent); log in again to add it"
}
