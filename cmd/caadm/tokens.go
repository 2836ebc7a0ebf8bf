package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/cli"
)

func newTokensCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("tokens")
	cmd := &ffcli.Command{
		Name:       "tokens",
		ShortUsage: "caadm tokens <ls|add|rm> [flags] [ID]",
		ShortHelp:  "Manage join and device tokens",
		LongHelp: strings.TrimSpace(`
A token lets a node or proxy join the CA and get its host certificate, or
binds a user's keyhelper to the CA. Tokens expire, and are single-use
unless created with --reusable.

Examples:
  caadm tokens ls
  caadm tokens add --role node --labels env=prod`),
		FlagSet: fs,
		Subcommands: []*ffcli.Command{
			newTokensLsCmd(root, stdout),
			newTokensAddCmd(root, stdout),
			newTokensRmCmd(root, stdout),
		},
	}
	cmd.Exec = groupExec(fs, cmd)
	return cmd
}

func newTokensLsCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("tokens ls")
	return &ffcli.Command{
		Name:       "ls",
		ShortUsage: "caadm tokens ls [--json]",
		ShortHelp:  "List tokens",
		LongHelp: strings.TrimSpace(`
Lists the live tokens by ID; the secrets themselves are never shown again
after "caadm tokens add".

Example:
  caadm tokens ls`),
		FlagSet: fs,
		Exec: withArgs(fs, nil, func(ctx context.Context, _ []string) error {
			tokens, err := root.admin().Tokens(ctx)
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, nonNil(tokens))
			}
			t := newTable(stdout, "ID", "ROLE", "USER", "LABELS", "EXPIRES", "USES", "REUSABLE")
			for _, tk := range tokens {
				t.row(tk.ID, tk.Role, tk.User, tokenLabels(tk.Labels), when(tk.Expires), fmt.Sprint(tk.Uses), yesNo(tk.Reusable))
			}
			return t.flush()
		}),
	}
}

func tokenLabels(m map[string]string) string {
	s := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		s = append(s, k+"="+m[k])
	}
	return list(s)
}

type tokensAddConfig struct {
	role     string
	labels   labelsFlag
	user     string
	ttl      durationFlag
	reusable bool
}

func newTokensAddCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	var cfg tokensAddConfig
	fs := root.flagSet("tokens add")
	fs.StringVar(&cfg.role, "role", "", "what the token is for: `node`, proxy or keyhelper")
	fs.Var(&cfg.labels, "labels", "comma-separated `labels` key=value of the joining node")
	fs.StringVar(&cfg.user, "user", "", "the `user` a keyhelper token belongs to")
	fs.Var(&cfg.ttl, "ttl", "token `lifetime` (e.g. 1h); default: 15m")
	fs.BoolVar(&cfg.reusable, "reusable", false, "allow any number of uses until the token expires")
	return &ffcli.Command{
		Name:       "add",
		ShortUsage: "caadm tokens add --role node|proxy|keyhelper [--labels k=v,...] [--user NAME] [--ttl 15m] [--reusable]",
		ShortHelp:  "Create a token",
		LongHelp: strings.TrimSpace(`
Creates a token and prints its secret as the last line of output; the
secret is shown only this once. Node tokens carry the labels the node joins
with; keyhelper tokens need --user.

Examples:
  caadm tokens add --role node --labels env=prod,team=db
  TOKEN=$(caadm tokens add --role keyhelper --user alice | tail -n1)
  caadm tokens add --role node --ttl 1h --reusable --json`),
		FlagSet: fs,
		Exec: withArgs(fs, nil, func(ctx context.Context, _ []string) error {
			req, err := cfg.request(fs)
			if err != nil {
				return err
			}
			resp, err := root.admin().AddToken(ctx, req)
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, resp)
			}
			return printNewToken(stdout, resp)
		}),
	}
}

// request checks the flags and builds the request.
func (c *tokensAddConfig) request(fs *flag.FlagSet) (api.AddTokenRequest, error) {
	switch c.role {
	case "":
		return api.AddTokenRequest{}, cli.Usagef(fs, "--role is required (node, proxy or keyhelper)")
	case "node", "proxy":
	case "keyhelper":
		if c.user == "" {
			return api.AddTokenRequest{}, cli.Usagef(fs, "--user is required with --role keyhelper")
		}
	default:
		return api.AddTokenRequest{}, cli.Usagef(fs, "--role %q must be node, proxy or keyhelper", c.role)
	}
	labels, err := c.labels.single()
	if err != nil {
		return api.AddTokenRequest{}, cli.Usagef(fs, "%v", err)
	}
	return api.AddTokenRequest{
		Role:     c.role,
		Labels:   labels,
		User:     c.user,
		TTL:      c.ttl.api(),
		Reusable: c.reusable,
	}, nil
}

// printNewToken describes the token and ends with its secret alone on the
// last line, for "tail -n1".
func printNewToken(w io.Writer, resp api.AddTokenResponse) error {
	tk := resp.Token
	uses := "single use"
	if tk.Reusable {
		uses = "reusable"
	}
	fmt.Fprintf(w, "Created %s token %s, %s, expires %s.\n", tk.Role, tk.ID, uses, expiry(tk.Expires))
	if tk.User != "" {
		fmt.Fprintf(w, "User: %s\n", tk.User)
	}
	if len(tk.Labels) > 0 {
		fmt.Fprintf(w, "Labels: %s\n", tokenLabels(tk.Labels))
	}
	fmt.Fprintln(w, "Token (shown only once; keep it secret):")
	_, err := fmt.Fprintln(w, resp.Secret)
	return err
}

func newTokensRmCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("tokens rm")
	return &ffcli.Command{
		Name:       "rm",
		ShortUsage: "caadm tokens rm ID",
		ShortHelp:  "Remove a token",
		LongHelp: strings.TrimSpace(`
Removes a token so that it can no longer be used. ID is the first column of
"caadm tokens ls".

Example:
  caadm tokens rm 3f2a9c0d81b4e6a7`),
		FlagSet: fs,
		Exec: withArgs(fs, []string{"ID"}, func(ctx context.Context, args []string) error {
			if err := root.admin().RemoveToken(ctx, args[0]); err != nil {
				return err
			}
			return confirm(root, stdout, "Removed token %s.", args[0])
		}),
	}
}
