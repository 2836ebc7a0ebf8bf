package main

import (
	"context"
	"io"
	"sort"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"
)

func newNodesCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("nodes")
	cmd := &ffcli.Command{
		Name:       "nodes",
		ShortUsage: "caadm nodes <ls|rm> [flags]",
		ShortHelp:  "List and remove joined nodes",
		LongHelp: strings.TrimSpace(`
A node joins with a node token (caadm tokens add --role node) and gets a
host certificate and a TLS identity; its labels come from the token.
Removing a node stops its identity at once and frees its name for a new
join.

Examples:
  caadm nodes ls
  caadm nodes rm web1`),
		FlagSet: fs,
		Subcommands: []*ffcli.Command{
			newNodesLsCmd(root, stdout),
			newNodesRmCmd(root, stdout),
		},
	}
	cmd.Exec = groupExec(fs, cmd)
	return cmd
}

func newNodesLsCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("nodes ls")
	return &ffcli.Command{
		Name:       "ls",
		ShortUsage: "caadm nodes ls [--json]",
		ShortHelp:  "List joined nodes",
		LongHelp: strings.TrimSpace(`
Lists the joined nodes: name, labels (from their join tokens), the
principals of their host certificates, when they joined and when and from
where they were last seen.

Example:
  caadm nodes ls --json`),
		FlagSet: fs,
		Exec: withArgs(fs, nil, func(ctx context.Context, _ []string) error {
			nodes, err := root.admin().Nodes(ctx)
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, nonNil(nodes))
			}
			t := newTable(stdout, "NAME", "LABELS", "PRINCIPALS", "JOINED", "LAST-SEEN", "FROM")
			for _, n := range nodes {
				var labels []string
				for k, v := range n.Labels {
					labels = append(labels, k+"="+v)
				}
				sort.Strings(labels)
				t.row(n.Name, list(labels), list(n.Principals), when(n.Joined), when(n.LastSeen), n.Remote)
			}
			return t.flush()
		}),
	}
}

func newNodesRmCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("nodes rm")
	return &ffcli.Command{
		Name:       "rm",
		ShortUsage: "caadm nodes rm NAME",
		ShortHelp:  "Remove a node",
		LongHelp: strings.TrimSpace(`
Removes a node: its TLS identity is refused from now on, so it can no
longer renew its host certificate or fetch its login policy, and teleport-
authkeys on it denies logins once its cache is older than the cache limit.

Example:
  caadm nodes rm web1`),
		FlagSet: fs,
		Exec: withArgs(fs, []string{"NAME"}, func(ctx context.Context, args []string) error {
			if err := root.admin().RemoveNode(ctx, args[0]); err != nil {
				return err
			}
			return confirm(root, stdout, "Removed node %s.", args[0])
		}),
	}
}
