// Command caadm administers a teleport-ca over its root-only admin socket.
//
// It manages users, roles and join tokens, signs keys by hand, shows the
// CA public keys and pin, and reads the audit log and the record of issued
// certificates. Run "caadm -h" for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/internal/cli"
)

// defaultSocket is where teleport-ca listens for admin requests.
const defaultSocket = "/run/teleport-ca/admin.sock"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes caadm with args and returns the exit code: 0, 1 on failure,
// 2 on a usage error.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root, cfg := newRootCmd()
	root.Subcommands = []*ffcli.Command{
		newUsersCmd(cfg, stdin, stdout),
		newRolesCmd(cfg, stdout),
		newTokensCmd(cfg, stdout),
		newSignCmd(cfg, stdout),
		newCACmd(cfg, stdout),
		newAuditCmd(cfg, stdout),
		newCertsCmd(cfg, stdout),
		newDevicesCmd(cfg, stdout),
		newNodesCmd(cfg, stdout),
		newProxiesCmd(cfg, stdout),
		newSessionsCmd(cfg, stdout),
		newRecordingsCmd(cfg, stdout),
		newBackupCmd(cfg, stdout),
		newRestoreCmd(cfg, stdout),
	}
	err := cli.Execute(ctx, root, args, stderr)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "caadm: %s\n", describe(err, cfg.socket))
	var ue *cli.UsageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// rootConfig holds the global flags and the admin client.
type rootConfig struct {
	socket string
	json   bool
	client *client.Client
}

func newRootCmd() (*ffcli.Command, *rootConfig) {
	cfg := &rootConfig{}
	fs := cfg.flagSet("")
	fs.StringVar(&cfg.socket, "socket", defaultSocket, "`path` of the teleport-ca admin socket (env TELEPORT_ADMIN_SOCKET)")
	cmd := &ffcli.Command{
		Name:       "caadm",
		ShortUsage: "caadm [--socket PATH] [--json] <command> [flags] [args]",
		LongHelp: strings.TrimSpace(`
caadm administers a teleport-ca over its admin socket. The socket is
reachable only by root and the admin group, so caadm needs no password:
run it on the CA host with sudo.

The global flags go before the command; --json also works after it and
switches every command to machine-readable output.

Examples:
  sudo caadm users add alice --logins alice --roles dev
  sudo caadm tokens add --role node --labels env=prod
  sudo caadm --socket /tmp/ca/admin.sock --json users ls`),
		FlagSet: fs,
		// The socket flag's environment variable is TELEPORT_ADMIN_SOCKET.
		Options: []ff.Option{ff.WithEnvVarPrefix("TELEPORT_ADMIN")},
	}
	cmd.Exec = groupExec(fs, cmd)
	return cmd, cfg
}

// admin returns the admin API client, made on first use so that it sees
// the parsed --socket.
func (c *rootConfig) admin() *client.Client {
	if c.client == nil {
		c.client = client.NewAdmin(c.socket)
	}
	return c.client
}

// flagSet returns the flag set of the command at path ("users add"), with
// its own --json flag.
func (c *rootConfig) flagSet(path string) *flag.FlagSet {
	fs := flag.NewFlagSet(strings.TrimSpace("caadm "+path), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&c.json, "json", false, "print JSON for scripts instead of text")
	return fs
}

// groupExec runs when a command that only holds subcommands is given none,
// or an unknown one.
func groupExec(fs *flag.FlagSet, cmd *ffcli.Command) func(context.Context, []string) error {
	return func(_ context.Context, args []string) error {
		var names []string
		for _, sub := range cmd.Subcommands {
			names = append(names, sub.Name)
		}
		want := strings.Join(names, ", ")
		if len(args) == 0 {
			return cli.Usagef(fs, "missing command, want one of %s", want)
		}
		return cli.Usagef(fs, "unknown command %q, want one of %s", args[0], want)
	}
}

// withArgs adapts fn to ffcli: flags may follow the positional arguments
// ("users add alice --logins alice"), and there must be exactly len(names)
// of those.
func withArgs(fs *flag.FlagSet, names []string, fn func(ctx context.Context, args []string) error) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		args, err := parseInterspersed(fs, args)
		if err != nil {
			return err
		}
		switch {
		case len(args) < len(names):
			return cli.Usagef(fs, "missing %s", strings.Join(names[len(args):], " "))
		case len(args) > len(names):
			return cli.Usagef(fs, "unexpected argument %q", args[len(names)])
		}
		return fn(ctx, args)
	}
}

// parseInterspersed parses the flags left in args after the first
// positional argument and returns the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	out := fs.Output()
	fs.SetOutput(io.Discard) // ffcli prints the usage on ErrHelp
	defer fs.SetOutput(out)
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, cli.Usagef(fs, "%v", err)
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return pos, nil
}

// describe turns err into the one line caadm prints, with a hint when the
// admin socket cannot be reached.
func describe(err error, socket string) string {
	var ae *api.Error
	if errors.As(err, &ae) {
		return oneLine(ae.Error())
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		switch {
		case errors.Is(err, syscall.ENOENT):
			return fmt.Sprintf("admin socket not found; is teleport-ca running? (socket %s)", socket)
		case errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Sprintf("connection refused on the admin socket; is teleport-ca running? (socket %s)", socket)
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return fmt.Sprintf("permission denied on %s: caadm must run as root or a member of the admin group", socket)
		}
	}
	return oneLine(strings.TrimPrefix(err.Error(), "client: "))
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
