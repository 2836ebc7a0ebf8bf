package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/ca/api"
)

func newCACmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("ca")
	cmd := &ffcli.Command{
		Name:       "ca",
		ShortUsage: "caadm ca show",
		ShortHelp:  "Show the CA public keys and TLS pin",
		LongHelp: strings.TrimSpace(`
Shows what hosts and users need to trust this CA.

Example:
  caadm ca show`),
		FlagSet:     fs,
		Subcommands: []*ffcli.Command{newCAShowCmd(root, stdout)},
	}
	cmd.Exec = groupExec(fs, cmd)
	return cmd
}

func newCAShowCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("ca show")
	return &ffcli.Command{
		Name:       "show",
		ShortUsage: "caadm ca show [--json]",
		ShortHelp:  "Show the CA public keys and TLS pin",
		LongHelp: strings.TrimSpace(`
Prints the user CA key (trusted by the proxy, and by nodes' sshd
TrustedUserCAKeys when recording is off), the host CA key, the session CA key
(what nodes trust in recording mode "proxy", the default), the
@cert-authority line for known_hosts files, and the pin
of the CA's TLS root. Give the pin to whoever sets up a keyhelper, node or
proxy: it is how they check they talk to this CA. The pin is the last line.

Examples:
  caadm ca show
  caadm ca show | tail -n1`),
		FlagSet: fs,
		Exec: withArgs(fs, nil, func(ctx context.Context, _ []string) error {
			info, err := root.admin().AdminCA(ctx)
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, info)
			}
			return printCA(stdout, info)
		}),
	}
}

func printCA(w io.Writer, info api.CAInfo) error {
	userCA, sessionCA := "User CA (trusted by the proxy):", "Session CA (nodes' TrustedUserCAKeys):"
	if info.RecordingMode == "off" {
		userCA, sessionCA = "User CA (nodes' TrustedUserCAKeys; recording is off):", "Session CA (unused while recording is off):"
	}
	for _, item := range []struct{ label, value string }{
		{userCA, info.UserCA},
		{"Host CA:", info.HostCA},
		{sessionCA, info.SessionCA},
		{"known_hosts line (for /etc/ssh/ssh_known_hosts or ~/.ssh/known_hosts):", info.KnownHosts},
		{"Session recording:", info.RecordingMode},
		{"TLS pin:", info.Pin},
	} {
		value := item.value
		if value == "" {
			value = "(none)"
		}
		if _, err := fmt.Fprintf(w, "%s\n%s\n", item.label, value); err != nil {
			return err
		}
	}
	return nil
}
