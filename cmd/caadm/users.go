package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/cli"
)

func newUsersCmd(root *rootConfig, stdin io.Reader, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("users")
	cmd := &ffcli.Command{
		Name:       "users",
		ShortUsage: "caadm users <ls|add|update|reset|rm|lock|unlock> [flags] [NAME]",
		ShortHelp:  "Manage user accounts",
		LongHelp: strings.TrimSpace(`
Users sign in with a password and a one-time code, then get short-lived
SSH certificates for the logins their roles allow.

Examples:
  caadm users ls
  caadm users add alice --logins alice,deploy`),
		FlagSet: fs,
		Subcommands: []*ffcli.Command{
			newUsersLsCmd(root, stdout),
			newUsersAddCmd(root, stdin, stdout),
			newUsersUpdateCmd(root, stdout),
			newUsersResetCmd(root, stdin, stdout),
			newUsersRmCmd(root, stdout),
			newUsersLockCmd(root, stdout),
			newUsersUnlockCmd(root, stdout),
		},
	}
	cmd.Exec = groupExec(fs, cmd)
	return cmd
}

func newUsersLsCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("users ls")
	return &ffcli.Command{
		Name:       "ls",
		ShortUsage: "caadm users ls [--json]",
		ShortHelp:  "List users",
		LongHelp: strings.TrimSpace(`
Lists the accounts with their status (active, pending enrollment, or
locked), roles, failed sign-ins since the last success, and last sign-in.

Example:
  caadm users ls`),
		FlagSet: fs,
		Exec: withArgs(fs, nil, func(ctx context.Context, _ []string) error {
			users, err := root.admin().Users(ctx)
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, nonNil(users))
			}
			t := newTable(stdout, "NAME", "STATUS", "ROLES", "FAILED", "LAST-LOGIN", "CREATED")
			for _, u := range users {
				t.row(u.Name, userStatus(u), list(u.Roles), fmt.Sprint(u.FailedLogins), whenPtr(u.LastLogin), when(u.Created))
			}
			return t.flush()
		}),
	}
}

func userStatus(u api.User) string {
	s := u.Status
	if u.LockedUntil != nil {
		s += " until " + when(*u.LockedUntil)
	}
	if u.LockReason != "" {
		s += " (" + u.LockReason + ")"
	}
	return s
}

type usersAddConfig struct {
	logins, roles listFlag
	passwordStdin bool
}

func newUsersAddCmd(root *rootConfig, stdin io.Reader, stdout io.Writer) *ffcli.Command {
	var cfg usersAddConfig
	fs := root.flagSet("users add")
	fs.Var(&cfg.logins, "logins", "comma-separated `logins` of the user's personal role user:NAME")
	fs.Var(&cfg.roles, "roles", "comma-separated `roles` to grant")
	fs.BoolVar(&cfg.passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	return &ffcli.Command{
		Name:       "add",
		ShortUsage: "caadm users add NAME [--logins a,b] [--roles r1,r2] [--password-stdin]",
		ShortHelp:  "Create a user",
		LongHelp: strings.TrimSpace(`
Creates a user. --logins makes the user's personal role, user:NAME, with
those logins; --roles grants existing roles (see "caadm roles ls").

Without --password-stdin the user is pending, and caadm prints a one-time
enrollment link where the user chooses a password and sets up the
authenticator app. Send the link over a channel you trust.

With --password-stdin the password is the first line of standard input
(only the line ending is removed), the account is active at once, and
caadm prints the otpauth:// URI to scan into the user's authenticator app.

Examples:
  caadm users add alice --logins alice --roles dev
  printf '%s\n' "$PASSWORD" | caadm users add bot --roles deploy --password-stdin`),
		FlagSet: fs,
		Exec: withArgs(fs, []string{"NAME"}, func(ctx context.Context, args []string) error {
			req := api.AddUserRequest{Name: args[0], Logins: cfg.logins, Roles: cfg.roles}
			if cfg.passwordStdin {
				pw, err := readPassword(stdin)
				if err != nil {
					return err
				}
				req.Password = pw
			}
			resp, err := root.admin().AddUser(ctx, req)
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, resp)
			}
			return printNewUser(stdout, resp)
		}),
	}
}

// readPassword reads the first line of r, without its line ending.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", errors.New("empty password on standard input")
	}
	return line, nil
}

func printNewUser(w io.Writer, resp api.AddUserResponse) error {
	return printCredentials(w, "Created", resp)
}

func printCredentials(w io.Writer, verb string, resp api.AddUserResponse) error {
	u := resp.User
	fmt.Fprintf(w, "%s user %s, %s, roles: %s.\n", verb, u.Name, u.Status, cell(list(u.Roles)))
	switch {
	case resp.OTPAuthURI != "":
		fmt.Fprintln(w, "Scan this URI into an authenticator app; it holds the user's TOTP secret, so do not keep a copy:")
		fmt.Fprintln(w, resp.OTPAuthURI)
	case resp.EnrollURL != "":
		fmt.Fprintf(w, "Send this one-time enrollment link to %s; it expires %s:\n", u.Name, expiry(resp.EnrollExpires))
		fmt.Fprintln(w, resp.EnrollURL)
	}
	return nil
}

func newUsersRmCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("users rm")
	return &ffcli.Command{
		Name:       "rm",
		ShortUsage: "caadm users rm NAME",
		ShortHelp:  "Remove a user",
		LongHelp: strings.TrimSpace(`
Removes a user. Certificates already issued to the user stay valid until
they expire; they are short-lived.

Example:
  caadm users rm alice`),
		FlagSet: fs,
		Exec: withArgs(fs, []string{"NAME"}, func(ctx context.Context, args []string) error {
			if err := root.admin().RemoveUser(ctx, args[0]); err != nil {
				return err
			}
			return confirm(root, stdout, "Removed user %s.", args[0])
		}),
	}
}

type usersLockConfig struct {
	until  timeFlag
	reason string
}

func newUsersLockCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	cfg := usersLockConfig{until: timeFlag{ahead: true}}
	fs := root.flagSet("users lock")
	fs.Var(&cfg.until, "until", "lock until this `time` (RFC 3339) or for this duration (2h); default: until unlocked")
	fs.StringVar(&cfg.reason, "reason", "", "why, for the audit log and users ls")
	return &ffcli.Command{
		Name:       "lock",
		ShortUsage: "caadm users lock NAME [--until T] [--reason TEXT]",
		ShortHelp:  "Lock a user out",
		LongHelp: strings.TrimSpace(`
Locks a user: sign-in and certificate requests are refused until the lock
ends or "caadm users unlock" lifts it. --until takes a time such as
2025-01-02T15:04:05Z, or a duration such as 2h counted from now.

Examples:
  caadm users lock alice --reason "laptop stolen"
  caadm users lock bob --until 2h`),
		FlagSet: fs,
		Exec: withArgs(fs, []string{"NAME"}, func(ctx context.Context, args []string) error {
			req := api.LockRequest{Reason: cfg.reason}
			if !cfg.until.t.IsZero() {
				req.Until = &cfg.until.t
			}
			if err := root.admin().LockUser(ctx, args[0], req); err != nil {
				return err
			}
			if req.Until == nil {
				return confirm(root, stdout, "Locked user %s until unlocked.", args[0])
			}
			return confirm(root, stdout, "Locked user %s until %s.", args[0], when(*req.Until))
		}),
	}
}

func newUsersUnlockCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("users unlock")
	return &ffcli.Command{
		Name:       "unlock",
		ShortUsage: "caadm users unlock NAME",
		ShortHelp:  "Lift a user's lock",
		LongHelp: strings.TrimSpace(`
Unlocks a user, whether locked by an administrator or after too many
failed sign-ins, and clears the failed sign-in count.

Example:
  caadm users unlock alice`),
		FlagSet: fs,
		Exec: withArgs(fs, []string{"NAME"}, func(ctx context.Context, args []string) error {
			if err := root.admin().UnlockUser(ctx, args[0]); err != nil {
				return err
			}
			return confirm(root, stdout, "Unlocked user %s.", args[0])
		}),
	}
}

// confirm prints a one-line confirmation for a human; with --json a
// command without an answer prints nothing, its exit status says it all.
func confirm(root *rootConfig, w io.Writer, format string, args ...any) error {
	if root.json {
		return nil
	}
	_, err := fmt.Fprintf(w, format+"\n", args...)
	return err
}

// setList is a comma-separated list flag that records whether it was
// given; an empty value means the empty list.
type setList struct {
	set   bool
	items []string
}

func (l *setList) String() string { return strings.Join(l.items, ",") }

func (l *setList) Set(s string) error {
	l.set, l.items = true, nil
	if s == "" {
		return nil
	}
	var items listFlag
	if err := items.Set(s); err != nil {
		return err
	}
	l.items = items
	return nil
}

func (l *setList) ptr() *[]string {
	if !l.set {
		return nil
	}
	items := append([]string{}, l.items...)
	return &items
}

func newUsersUpdateCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	var roles, logins setList
	fs := root.flagSet("users update")
	fs.Var(&roles, "roles", "replace the granted `roles` (comma-separated; \"\" for none)")
	fs.Var(&logins, "logins", "replace the `logins` of the personal role user:NAME (\"\" removes it)")
	return &ffcli.Command{
		Name:       "update",
		ShortUsage: "caadm users update NAME [--roles r1,r2] [--logins a,b]",
		ShortHelp:  "Change a user's roles or personal logins",
		LongHelp: strings.TrimSpace(`
Changes what a user may do without touching their password, authenticator
or sign-in sessions. --roles replaces the roles granted to the user;
--logins replaces the logins of the personal role user:NAME (an empty
value removes that role). New certificates follow at once; certificates
already issued keep their logins until they expire (they are short-lived).

Examples:
  caadm users update alice --roles dev,prod-ops
  caadm users update alice --logins alice,deploy
  caadm users update bob --roles "" --logins bob`),
		FlagSet: fs,
		Exec: withArgs(fs, []string{"NAME"}, func(ctx context.Context, args []string) error {
			req := api.UpdateUserRequest{Roles: roles.ptr(), Logins: logins.ptr()}
			if req.Roles == nil && req.Logins == nil {
				return cli.Usagef(fs, "give --roles, --logins or both")
			}
			u, err := root.admin().UpdateUser(ctx, args[0], req)
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, u)
			}
			_, err = fmt.Fprintf(stdout, "Updated user %s, roles: %s.\n", u.Name, cell(list(u.Roles)))
			return err
		}),
	}
}

func newUsersResetCmd(root *rootConfig, stdin io.Reader, stdout io.Writer) *ffcli.Command {
	var passwordStdin bool
	fs := root.flagSet("users reset")
	fs.BoolVar(&passwordStdin, "password-stdin", false, "set this password (first line of standard input) and print a new otpauth:// URI")
	return &ffcli.Command{
		Name:       "reset",
		ShortUsage: "caadm users reset NAME [--password-stdin]",
		ShortHelp:  "Replace a user's password and authenticator",
		LongHelp: strings.TrimSpace(`
For a lost phone or a forgotten password: replaces the user's password and
TOTP secret, ends every sign-in session of the user, and keeps their roles.
Codes from the old authenticator stop working at once.

Without --password-stdin the user is pending again and caadm prints a new
one-time enrollment link. With it, the password is the first line of
standard input and caadm prints the new otpauth:// URI.

Examples:
  caadm users reset alice
  printf '%s\n' "$PASSWORD" | caadm users reset bot --password-stdin`),
		FlagSet: fs,
		Exec: withArgs(fs, []string{"NAME"}, func(ctx context.Context, args []string) error {
			var req api.ResetUserRequest
			if passwordStdin {
				pw, err := readPassword(stdin)
				if err != nil {
					return err
				}
				req.Password = pw
			}
			resp, err := root.admin().ResetUser(ctx, args[0], req)
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, resp)
			}
			return printCredentials(stdout, "Reset", resp)
		}),
	}
}
