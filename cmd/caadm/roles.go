package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/cli"
)

func newRolesCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("roles")
	cmd := &ffcli.Command{
		Name:       "roles",
		ShortUsage: "caadm roles <ls|add|rm> [flags] [NAME]",
		ShortHelp:  "Manage roles",
		LongHelp: strings.TrimSpace(`
A role grants logins on the nodes whose labels it selects, and caps the
lifetime and permissions of the certificates issued through it.

Examples:
  caadm roles ls
  caadm roles add dev --logins '{user}',deploy --labels env=staging`),
		FlagSet: fs,
		Subcommands: []*ffcli.Command{
			newRolesLsCmd(root, stdout),
			newRolesAddCmd(root, stdout),
			newRolesRmCmd(root, stdout),
		},
	}
	cmd.Exec = groupExec(fs, cmd)
	return cmd
}

func newRolesLsCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("roles ls")
	return &ffcli.Command{
		Name:       "ls",
		ShortUsage: "caadm roles ls [--json]",
		ShortHelp:  "List roles",
		LongHelp: strings.TrimSpace(`
Lists the roles: logins, node labels, maximum certificate lifetime (- is
the server's default), permitted forwardings and source addresses.

Example:
  caadm roles ls`),
		FlagSet: fs,
		Exec: withArgs(fs, nil, func(ctx context.Context, _ []string) error {
			roles, err := root.admin().Roles(ctx)
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, nonNil(roles))
			}
			t := newTable(stdout, "NAME", "LOGINS", "LABELS", "MAX-TTL", "PERMITS", "SOURCE")
			for _, r := range roles {
				t.row(r.Name, list(r.Logins), nodeLabels(r.NodeLabels), maxTTL(r.MaxTTL), permits(r), list(r.SourceAddress))
			}
			return t.flush()
		}),
	}
}

// nodeLabels formats selectors as sorted key=value pairs.
func nodeLabels(m map[string][]string) string {
	var s []string
	for _, k := range sortedKeys(m) {
		for _, v := range m[k] {
			s = append(s, k+"="+v)
		}
	}
	return list(s)
}

func maxTTL(d api.Duration) string {
	if d == 0 {
		return ""
	}
	return time.Duration(d).String()
}

func permits(r api.Role) string {
	var p []string
	if r.PermitAgentForwarding {
		p = append(p, "agent")
	}
	if r.PermitPortForwarding {
		p = append(p, "port")
	}
	if r.PermitX11Forwarding {
		p = append(p, "x11")
	}
	return list(p)
}

type rolesAddConfig struct {
	logins, sources  listFlag
	groups           listFlag
	labels           labelsFlag
	maxTTL           durationFlag
	agent, port, x11 bool
}

func newRolesAddCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	var cfg rolesAddConfig
	fs := root.flagSet("roles add")
	fs.Var(&cfg.logins, "logins", "comma-separated `logins` the role allows; {user} is the user's own name")
	fs.Var(&cfg.labels, "labels", "comma-separated node `selectors` key=value; *=* selects every node")
	fs.Var(&cfg.maxTTL, "max-ttl", "longest certificate `lifetime` (e.g. 8h); default: the server's cap")
	fs.BoolVar(&cfg.agent, "agent-forwarding", false, "permit SSH agent forwarding")
	fs.BoolVar(&cfg.port, "port-forwarding", false, "permit port forwarding")
	fs.BoolVar(&cfg.x11, "x11-forwarding", false, "permit X11 forwarding")
	fs.Var(&cfg.sources, "source-address", "comma-separated `CIDRs` the certificates may be used from")
	fs.Var(&cfg.groups, "groups", "comma-separated supplementary `groups` (e.g. sudo) of the personal accounts ({user}) the role makes on nodes")
	return &ffcli.Command{
		Name:       "add",
		ShortUsage: "caadm roles add NAME --logins a,b --labels k=v,... [flags]",
		ShortHelp:  "Create a role",
		LongHelp: strings.TrimSpace(`
Creates a role. A node is selected when, for every label key of the role,
the node's value is one of the role's values for that key; the value *
matches any value, and *=* selects every node. Repeat a key to allow
several values: --labels env=prod,env=staging.

Examples:
  caadm roles add dev --logins '{user}' --labels env=staging --max-ttl 8h
  caadm roles add admins --logins '{user}' --groups sudo --labels env=prod
  caadm roles add ops --logins root --labels '*=*' --agent-forwarding --source-address 10.0.0.0/8`),
		FlagSet: fs,
		Exec: withArgs(fs, []string{"NAME"}, func(ctx context.Context, args []string) error {
			role, err := cfg.role(fs, args[0])
			if err != nil {
				return err
			}
			role, err = root.admin().AddRole(ctx, role)
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, role)
			}
			_, err = fmt.Fprintf(stdout, "Created role %s: logins %s on nodes %s.\n", role.Name, cell(list(role.Logins)), cell(nodeLabels(role.NodeLabels)))
			return err
		}),
	}
}

// role checks the flags and builds the role named name.
func (c *rolesAddConfig) role(fs *flag.FlagSet, name string) (api.Role, error) {
	if len(c.logins) == 0 {
		return api.Role{}, cli.Usagef(fs, "--logins is required")
	}
	if len(c.labels) == 0 {
		return api.Role{}, cli.Usagef(fs, "--labels is required (--labels '*=*' selects every node)")
	}
	labels, err := c.labels.multi()
	if err != nil {
		return api.Role{}, cli.Usagef(fs, "%v", err)
	}
	if err := checkCIDRs(c.sources); err != nil {
		return api.Role{}, cli.Usagef(fs, "%v", err)
	}
	return api.Role{
		Name:                  name,
		Logins:                c.logins,
		NodeLabels:            labels,
		MaxTTL:                c.maxTTL.api(),
		PermitAgentForwarding: c.agent,
		PermitPortForwarding:  c.port,
		PermitX11Forwarding:   c.x11,
		SourceAddress:         c.sources,
		Groups:                c.groups,
	}, nil
}

func newRolesRmCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("roles rm")
	return &ffcli.Command{
		Name:       "rm",
		ShortUsage: "caadm roles rm NAME",
		ShortHelp:  "Remove a role",
		LongHelp: strings.TrimSpace(`
Removes a role. Users who had it keep their other roles; certificates
already issued stay valid until they expire.

Example:
  caadm roles rm dev`),
		FlagSet: fs,
		Exec: withArgs(fs, []string{"NAME"}, func(ctx context.Context, args []string) error {
			if err := root.admin().RemoveRole(ctx, args[0]); err != nil {
				return err
			}
			return confirm(root, stdout, "Removed role %s.", args[0])
		}),
	}
}
