package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/internal/cli"
	"github.com/opensshca/suite/keyhelper"
)

// envPrefix makes flag --ca-pin settable as TELEPORT_CA_PIN.
const envPrefix = "TELEPORT"

// app is one run of the program, with its input, output and environment.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// getenv reads variables the program uses itself (HOME,
	// SSH_AUTH_SOCK); flags come from TELEPORT_* through ff.
	getenv func(string) string
}

func (a *app) run(ctx context.Context, args []string) int {
	root := &ffcli.Command{
		Name:       "teleport-keyhelper",
		ShortUsage: "teleport-keyhelper <command> [flags]",
		LongHelp: strings.TrimSpace(`
teleport-keyhelper gets short-lived SSH certificates from a teleport-ca
and sets up stock OpenSSH to use them: the certificate goes into ssh-agent
and ~/.teleport, and an ssh_config block sends the cluster's hosts through
its proxy and trusts them only through the cluster's host CA.

Every flag can also come from the environment as TELEPORT_<FLAG>, with
"-" as "_": --ca-pin from TELEPORT_CA_PIN, --home from TELEPORT_HOME.

The daemon command instead waits for you to sign in on the CA's web page
and keeps the certificate renewed while that sign-in lasts.

A node is reached through the proxy with ProxyJump (the ssh_config block
does it for the cluster's host names), or in one hop with the login and
the node in the user name: ssh -p 3023 LOGIN@NODE@PROXY. The sessions
command shows who is logged in to the nodes you can log in to.

Example:
  teleport-keyhelper login --server https://ca.example.com:3080 --user alice \
      --ca-pin sha256:...
  ssh root@node1.prod.example.com
  ssh root@node1@bastion.prod.example.com
  teleport-keyhelper sessions
  teleport-keyhelper logout`),
		FlagSet: newFlagSet(""),
	}
	root.Subcommands = []*ffcli.Command{
		a.loginCmd(),
		a.configCmd(),
		a.statusCmd(),
		a.sessionsCmd(),
		a.logoutCmd(),
		a.daemonCmd(),
	}
	root.Exec = groupExec(root)
	err := cli.Execute(ctx, root, args, a.stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errReported):
		return 1
	}
	var ue *cli.UsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(a.stderr, "teleport-keyhelper: %s\n", ue)
		return 2
	}
	fmt.Fprintf(a.stderr, "teleport-keyhelper: %s\n", keyhelper.Describe(err))
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// errReported is a failure whose explanation is already on stderr.
var errReported = errors.New("failure reported")

// newFlagSet returns the flag set of the command at path ("login").
func newFlagSet(path string) *flag.FlagSet {
	fs := flag.NewFlagSet(strings.TrimSpace("teleport-keyhelper "+path), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// envOptions make a command's flags settable from TELEPORT_*.
func envOptions() []ff.Option { return []ff.Option{ff.WithEnvVarPrefix(envPrefix)} }

// homeFlag adds --home to fs.
func homeFlag(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "home", "", "state `directory` (default ~/.teleport)")
}

// home opens the state directory named by flag (or the default).
func (a *app) home(flagValue string, create bool) (*keyhelper.Home, error) {
	dir, err := keyhelper.DefaultHome(flagValue, a.getenv)
	if err != nil {
		return nil, err
	}
	return keyhelper.OpenHome(dir, create)
}

// servers returns the cluster named by flagValue, or every cluster with
// state in h when it is empty.
func servers(h *keyhelper.Home, fs *flag.FlagSet, flagValue string) ([]keyhelper.Server, error) {
	if flagValue != "" {
		s, err := keyhelper.ParseServer(flagValue)
		if err != nil {
			return nil, cli.Usagef(fs, "%s", strings.TrimPrefix(err.Error(), "keyhelper: "))
		}
		return []keyhelper.Server{s}, nil
	}
	list, err := h.Servers()
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, keyhelper.ErrNotLoggedIn
	}
	return list, nil
}

// groupExec runs when the program is given no command, or an unknown one.
func groupExec(cmd *ffcli.Command) func(context.Context, []string) error {
	return func(_ context.Context, args []string) error {
		var names []string
		for _, sub := range cmd.Subcommands {
			names = append(names, sub.Name)
		}
		want := strings.Join(names, ", ")
		if len(args) == 0 {
			return cli.Usagef(cmd.FlagSet, "missing command, want one of %s", want)
		}
		return cli.Usagef(cmd.FlagSet, "unknown command %q, want one of %s", args[0], want)
	}
}

// noArgs wraps fn for a command that takes no positional arguments.
func noArgs(fs *flag.FlagSet, fn func(context.Context) error) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		if len(args) > 0 {
			return cli.Usagef(fs, "unexpected argument %q (every value is a flag, such as --server)", args[0])
		}
		return fn(ctx)
	}
}
