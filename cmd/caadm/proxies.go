package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"
)

func newProxiesCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("proxies")
	cmd := &ffcli.Command{
		Name:       "proxies",
		ShortUsage: "caadm proxies <ls|rm> [flags]",
		ShortHelp:  "List and remove joined proxies",
		LongHelp: strings.TrimSpace(`
A proxy joins with a proxy token (caadm tokens add --role proxy) and
registers the address users reach it at and the address nodes dial for
their reverse tunnels. Removing a proxy stops its identity at once; nodes
drop their tunnels to it at their next policy update.

Examples:
  caadm proxies ls
  caadm proxies rm proxy1`),
		FlagSet: fs,
		Subcommands: []*ffcli.Command{
			{
				Name: "ls", ShortUsage: "caadm proxies ls [--json]", ShortHelp: "List joined proxies",
				LongHelp: "Lists the joined proxies: the addresses users and nodes reach them at,\nwhen they joined and when they were last seen.\n\nExample:\n  caadm proxies ls",
				FlagSet:  root.flagSet("proxies ls"),
			},
			{
				Name: "rm", ShortUsage: "caadm proxies rm NAME", ShortHelp: "Remove a proxy",
				LongHelp: "Removes a proxy: its identity is refused from now on.\n\nExample:\n  caadm proxies rm proxy1",
				FlagSet:  root.flagSet("proxies rm"),
			},
		},
	}
	ls, rm := cmd.Subcommands[0], cmd.Subcommands[1]
	ls.Exec = withArgs(ls.FlagSet, nil, func(ctx context.Context, _ []string) error {
		ps, err := root.admin().Proxies(ctx)
		if err != nil {
			return err
		}
		if root.json {
			return printJSON(stdout, nonNil(ps))
		}
		t := newTable(stdout, "NAME", "PUBLIC", "TUNNEL", "JOINED", "LAST-SEEN", "FROM")
		for _, p := range ps {
			t.row(p.Name, p.PublicAddr, p.TunnelAddr, when(p.Joined), when(p.LastSeen), p.Remote)
		}
		return t.flush()
	})
	rm.Exec = withArgs(rm.FlagSet, []string{"NAME"}, func(ctx context.Context, args []string) error {
		if err := root.admin().RemoveProxy(ctx, args[0]); err != nil {
			return err
		}
		return confirm(root, stdout, "Removed proxy %s.", args[0])
	})
	cmd.Exec = groupExec(fs, cmd)
	return cmd
}

func newSessionsCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("sessions")
	ls := &ffcli.Command{
		Name: "ls", ShortUsage: "caadm sessions ls [--json]", ShortHelp: "List sessions running through the proxies",
		LongHelp: strings.TrimSpace(`
Lists the SSH sessions running through every proxy now: who is logged in
as which login on which node, since when, from where, and what runs in the
session (shell, exec, sftp, port forwards). A proxy reports its sessions
every few seconds; a proxy that goes silent stops being listed after a
minute.

Example:
  caadm sessions ls`),
		FlagSet: root.flagSet("sessions ls"),
	}
	ls.Exec = withArgs(ls.FlagSet, nil, func(ctx context.Context, _ []string) error {
		ss, err := root.admin().Sessions(ctx)
		if err != nil {
			return err
		}
		if root.json {
			return printJSON(stdout, nonNil(ss))
		}
		t := newTable(stdout, "SESSION", "USER", "LOGIN", "NODE", "PROXY", "STARTED", "FROM", "RECORDED", "RUNNING")
		for _, s := range ss {
			t.row(s.ID, s.User, s.Login, s.Node, s.Proxy, when(s.Started), s.ClientAddr, yesNo(s.Recorded), strings.Join(s.Channels, "; "))
		}
		return t.flush()
	})
	cmd := &ffcli.Command{
		Name: "sessions", ShortUsage: "caadm sessions ls", ShortHelp: "Show active SSH sessions",
		LongHelp: "The SSH sessions running through the proxies now.\n\nExample:\n  caadm sessions ls",
		FlagSet:  fs, Subcommands: []*ffcli.Command{ls},
	}
	cmd.Exec = groupExec(fs, cmd)
	return cmd
}

func newRecordingsCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("recordings")
	ls := &ffcli.Command{
		Name: "ls", ShortUsage: "caadm recordings ls [--json]", ShortHelp: "List stored session recordings",
		LongHelp: "Lists the recordings the CA holds, one per PTY channel: id, user, login,\nnode, proxy, start and size.\n\nExample:\n  caadm recordings ls --json",
		FlagSet:  root.flagSet("recordings ls"),
	}
	ls.Exec = withArgs(ls.FlagSet, nil, func(ctx context.Context, _ []string) error {
		rs, err := root.admin().Recordings(ctx)
		if err != nil {
			return err
		}
		if root.json {
			return printJSON(stdout, nonNil(rs))
		}
		t := newTable(stdout, "ID", "USER", "LOGIN", "NODE", "PROXY", "STARTED", "SIZE")
		for _, r := range rs {
			t.row(r.ID, r.User, r.Login, r.Node, r.Proxy, when(r.Started), fmt.Sprint(r.Size))
		}
		return t.flush()
	})
	export := &ffcli.Command{
		Name: "export", ShortUsage: "caadm recordings export ID > FILE.cast", ShortHelp: "Write a recording (asciicast v2) to stdout",
		LongHelp: strings.TrimSpace(`
Writes the recording as the asciicast v2 file the proxy made, for
asciinema play or any asciicast player.

Example:
  caadm recordings export 6f1c...-0 > session.cast && asciinema play session.cast`),
		FlagSet: root.flagSet("recordings export"),
	}
	export.Exec = withArgs(export.FlagSet, []string{"ID"}, func(ctx context.Context, args []string) error {
		return root.admin().ExportRecording(ctx, args[0], stdout)
	})
	play := &ffcli.Command{
		Name: "play", ShortUsage: "caadm recordings play ID", ShortHelp: "Play a recording in this terminal with asciinema",
		LongHelp: strings.TrimSpace(`
Fetches the recording and runs "asciinema play" on it (Debian package
asciinema). Keys: space pauses, "." steps, Ctrl-C stops.

Example:
  caadm recordings play 6f1c...-0`),
		FlagSet: root.flagSet("recordings play"),
	}
	play.Exec = withArgs(play.FlagSet, []string{"ID"}, func(ctx context.Context, args []string) error {
		player, err := exec.LookPath("asciinema")
		if err != nil {
			return errors.New("asciinema is not installed (apt-get install asciinema); or export the recording with caadm recordings export ID > FILE.cast")
		}
		dir, err := os.MkdirTemp("", "caadm-play-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "recording.cast")
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if err := root.admin().ExportRecording(ctx, args[0], f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		c := exec.CommandContext(ctx, player, "play", path)
		c.Stdin, c.Stdout, c.Stderr = os.Stdin, stdout, os.Stderr
		return c.Run()
	})
	cmd := &ffcli.Command{
		Name: "recordings", ShortUsage: "caadm recordings <ls|export|play> [flags]", ShortHelp: "List, export and play session recordings",
		LongHelp: strings.TrimSpace(`
In recording mode "proxy" the proxies record every PTY channel as an
asciicast v2 file and upload it to the CA when the channel ends.

Examples:
  caadm recordings ls
  caadm recordings export ID > session.cast
  caadm recordings play ID`),
		FlagSet: fs, Subcommands: []*ffcli.Command{ls, export, play},
	}
	cmd.Exec = groupExec(fs, cmd)
	return cmd
}
