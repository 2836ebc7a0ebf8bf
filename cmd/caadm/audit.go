package main

import (
	"context"
	"io"
	"strconv"
	"strings"
	"unicode"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/internal/cli"
)

func newAuditCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("audit")
	cmd := &ffcli.Command{
		Name:       "audit",
		ShortUsage: "caadm audit ls [flags]",
		ShortHelp:  "Read the audit log",
		LongHelp: strings.TrimSpace(`
The audit log records sign-ins, issued certificates and every
administrative change, successful or not.

Example:
  caadm audit ls --since 24h`),
		FlagSet:     fs,
		Subcommands: []*ffcli.Command{newAuditLsCmd(root, stdout)},
	}
	cmd.Exec = groupExec(fs, cmd)
	return cmd
}

type auditLsConfig struct {
	user, typ string
	since     timeFlag
	limit     int
}

func newAuditLsCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	var cfg auditLsConfig
	fs := root.flagSet("audit ls")
	fs.StringVar(&cfg.user, "user", "", "only events about this `user`")
	fs.StringVar(&cfg.typ, "type", "", "only events of this `type`, such as user.login or cert.issue")
	fs.Var(&cfg.since, "since", "only events since this `time` (RFC 3339) or this long ago (24h)")
	fs.IntVar(&cfg.limit, "limit", 0, "at most this many `events`; default: the server's")
	return &ffcli.Command{
		Name:       "ls",
		ShortUsage: "caadm audit ls [--user U] [--type T] [--since DUR] [--limit N] [--json]",
		ShortHelp:  "List audit events",
		LongHelp: strings.TrimSpace(`
Lists audit events. DETAILS holds the event's fields as key=value.

Examples:
  caadm audit ls --user alice --since 24h
  caadm audit ls --type user.login --limit 50 --json`),
		FlagSet: fs,
		Exec: withArgs(fs, nil, func(ctx context.Context, _ []string) error {
			if cfg.limit < 0 {
				return cli.Usagef(fs, "--limit must not be negative")
			}
			events, err := root.admin().Audit(ctx, client.AuditFilter{
				User: cfg.user, Type: cfg.typ, Since: cfg.since.t, Limit: cfg.limit,
			})
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, nonNil(events))
			}
			t := newTable(stdout, "TIME", "TYPE", "USER", "ACTOR", "OK", "DETAILS")
			for _, e := range events {
				t.row(when(e.Time), e.Type, e.User, e.Actor, yesNo(e.Success), details(e.Fields))
			}
			return t.flush()
		}),
	}
}

// details formats fields as sorted key=value pairs, quoting values that
// would not read as one word.
func details(fields map[string]string) string {
	s := make([]string, 0, len(fields))
	for _, k := range sortedKeys(fields) {
		v := fields[k]
		if v == "" || strings.IndexFunc(v, needsQuote) >= 0 {
			v = strconv.Quote(v)
		}
		s = append(s, k+"="+v)
	}
	return strings.Join(s, " ")
}

func needsQuote(r rune) bool {
	return r == ' ' || r == '"' || r == '=' || !unicode.IsGraphic(r)
}

func newCertsCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("certs")
	cmd := &ffcli.Command{
		Name:       "certs",
		ShortUsage: "caadm certs <ls|revoke|revoked> [flags]",
		ShortHelp:  "List issued certificates",
		LongHelp: strings.TrimSpace(`
Every certificate the CA issues is recorded before it is handed out.

Example:
  caadm certs ls --user alice`),
		FlagSet:     fs,
		Subcommands: []*ffcli.Command{newCertsLsCmd(root, stdout), newCertsRevokeCmd(root, stdout), newCertsRevokedCmd(root, stdout)},
	}
	cmd.Exec = groupExec(fs, cmd)
	return cmd
}

type certsLsConfig struct{ user, serial string }

func newCertsLsCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	var cfg certsLsConfig
	fs := root.flagSet("certs ls")
	fs.StringVar(&cfg.user, "user", "", "only certificates issued to this `user`")
	fs.StringVar(&cfg.serial, "serial", "", "only the certificate with this decimal `serial`")
	return &ffcli.Command{
		Name:       "ls",
		ShortUsage: "caadm certs ls [--user U] [--serial S] [--json]",
		ShortHelp:  "List issued certificates",
		LongHelp: strings.TrimSpace(`
Lists issued certificates. The serial is decimal, as "ssh-keygen -L -f
FILE-cert.pub" prints it; --json adds validity start, key fingerprint and
requester.

Examples:
  caadm certs ls --user alice
  caadm certs ls --serial 1234567890`),
		FlagSet: fs,
		Exec: withArgs(fs, nil, func(ctx context.Context, _ []string) error {
			certs, err := root.admin().Certs(ctx, client.CertFilter{User: cfg.user, Serial: cfg.serial})
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, nonNil(certs))
			}
			t := newTable(stdout, "SERIAL", "TYPE", "KEYID", "PRINCIPALS", "VALID-BEFORE")
			for _, c := range certs {
				t.row(c.Serial, c.Type, c.KeyID, list(c.Principals), when(c.ValidBefore))
			}
			return t.flush()
		}),
	}
}

func newCertsRevokeCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	var reason string
	fs := root.flagSet("certs revoke")
	fs.StringVar(&reason, "reason", "", "why, for the audit log (`text`)")
	return &ffcli.Command{
		Name:       "revoke",
		ShortUsage: "caadm certs revoke SERIAL [--reason TEXT]",
		ShortHelp:  "Revoke an issued certificate",
		LongHelp: strings.TrimSpace(`
Revokes a certificate this CA issued, by its decimal serial (caadm certs ls
shows it). Nodes publish the revoked serials in the KRL sshd checks
(RevokedKeys) within seconds; the revocation is kept until the certificate
expires.

Example:
  caadm certs revoke 1234567890 --reason "laptop stolen"`),
		FlagSet: fs,
		Exec: withArgs(fs, []string{"SERIAL"}, func(ctx context.Context, args []string) error {
			rc, err := root.admin().Revoke(ctx, api.RevokeRequest{Serial: args[0], Reason: reason})
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, rc)
			}
			return confirm(root, stdout, "Revoked %s certificate %s (%s), valid until %s.", rc.Type, rc.Serial, rc.KeyID, when(rc.Expires))
		}),
	}
}

func newCertsRevokedCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("certs revoked")
	return &ffcli.Command{
		Name:       "revoked",
		ShortUsage: "caadm certs revoked [--json]",
		ShortHelp:  "List revoked certificates that have not expired",
		LongHelp: strings.TrimSpace(`
Lists the revocations whose certificates have not expired yet: nodes
publish them in their KRL (RevokedKeys) and the proxies refuse them.
Expired ones are swept.

Example:
  caadm certs revoked --json`),
		FlagSet: fs,
		Exec: withArgs(fs, nil, func(ctx context.Context, _ []string) error {
			rs, err := root.admin().Revoked(ctx)
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, nonNil(rs))
			}
			t := newTable(stdout, "SERIAL", "TYPE", "KEYID", "EXPIRES", "REVOKED", "REASON")
			for _, r := range rs {
				t.row(r.Serial, r.Type, r.KeyID, when(r.Expires), when(r.Revoked), r.Reason)
			}
			return t.flush()
		}),
	}
}
