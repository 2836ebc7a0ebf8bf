package main

import (
	"context"
	"io"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"
)

func newDevicesCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("devices")
	cmd := &ffcli.Command{
		Name:       "devices",
		ShortUsage: "caadm devices <ls|revoke> [flags]",
		ShortHelp:  "List and revoke keyhelper devices",
		LongHelp: strings.TrimSpace(`
A keyhelper device is a teleport-keyhelper daemon registered with a
keyhelper token: it holds a TLS client identity bound to one user and gets
that user's certificates while the user is signed in. Revoke the device of
a lost or stolen laptop; its identity stops working at once.

Examples:
  caadm devices ls --user alice
  caadm devices revoke alice 3f2a9c0d1e4b5a6c`),
		FlagSet: fs,
		Subcommands: []*ffcli.Command{
			newDevicesLsCmd(root, stdout),
			newDevicesRevokeCmd(root, stdout),
		},
	}
	cmd.Exec = groupExec(fs, cmd)
	return cmd
}

func newDevicesLsCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	var user string
	fs := root.flagSet("devices ls")
	fs.StringVar(&user, "user", "", "only the devices of this `user`")
	return &ffcli.Command{
		Name:       "ls",
		ShortUsage: "caadm devices ls [--user U] [--json]",
		ShortHelp:  "List registered devices",
		LongHelp: strings.TrimSpace(`
Lists the keyhelper daemons registered with a device token: user, device
id, active or revoked, and when the device's TLS identity expires.

Example:
  caadm devices ls --user alice`),
		FlagSet: fs,
		Exec: withArgs(fs, nil, func(ctx context.Context, _ []string) error {
			devs, err := root.admin().Devices(ctx, user)
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, nonNil(devs))
			}
			t := newTable(stdout, "USER", "DEVICE", "STATUS", "REGISTERED", "IDENTITY-EXPIRES")
			for _, d := range devs {
				status := "active"
				if d.Revoked {
					status = "revoked"
				}
				t.row(d.User, d.ID, status, when(d.Created), when(d.Expires))
			}
			return t.flush()
		}),
	}
}

func newDevicesRevokeCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("devices revoke")
	return &ffcli.Command{
		Name:       "revoke",
		ShortUsage: "caadm devices revoke USER DEVICE",
		ShortHelp:  "Revoke a device's identity",
		LongHelp: strings.TrimSpace(`
Revokes a device: its TLS identity is refused from now on, whatever its
validity, so it can no longer get certificates for its user. Certificates
it already holds stay valid until they expire (they are short-lived); lock
the user too if that matters.

Example:
  caadm devices revoke alice 3f2a9c0d1e4b5a6c`),
		FlagSet: fs,
		Exec: withArgs(fs, []string{"USER", "DEVICE"}, func(ctx context.Context, args []string) error {
			if err := root.admin().RevokeDevice(ctx, args[0], args[1]); err != nil {
				return err
			}
			return confirm(root, stdout, "Revoked device %s of %s.", args[1], args[0])
		}),
	}
}
