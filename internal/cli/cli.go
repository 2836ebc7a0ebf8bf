// Package cli holds the command-line plumbing the suite's programs share on
// top of ffcli: usage errors that name the subcommand and point at its
// help, and sending every subcommand's flag output to one writer. A
// program exits 2 on a *UsageError and 1 on any other failure.
package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// UsageError is a command line that makes no sense.
type UsageError struct {
	// Cmd is the flag set's name: the program and subcommand path, such
	// as "caadm users add".
	Cmd string
	Msg string
}

func (e *UsageError) Error() string {
	msg := e.Msg
	if f := strings.Fields(e.Cmd); len(f) > 1 {
		msg = strings.Join(f[1:], " ") + ": " + msg
	}
	return fmt.Sprintf("%s (see '%s -h')", msg, e.Cmd)
}

// Usagef returns a *UsageError for the command whose flag set is fs.
func Usagef(fs *flag.FlagSet, format string, args ...any) error {
	return &UsageError{Cmd: fs.Name(), Msg: fmt.Sprintf(format, args...)}
}

// SetOutput sends the usage and flag errors of cmd and its subcommands to w.
func SetOutput(cmd *ffcli.Command, w io.Writer) {
	cmd.FlagSet.SetOutput(w)
	for _, sub := range cmd.Subcommands {
		SetOutput(sub, w)
	}
}

// ParseError turns a parse failure into a usage error of the deepest
// command that got parsed, which is the one that failed.
func ParseError(root *ffcli.Command, err error) error {
	cmd := root
	for next := cmd; next != nil; {
		cmd, next = next, nil
		for _, sub := range cmd.Subcommands {
			if sub.FlagSet.Parsed() {
				next = sub
			}
		}
	}
	if inner := errors.Unwrap(err); inner != nil {
		err = inner // drop ff's "error parsing commandline arguments"
	}
	return Usagef(cmd.FlagSet, "%v", err)
}

// Execute parses args and runs root. Flag errors become usage errors of
// the command that failed; usage text goes to helpOut only when asked for
// with -h (Execute then returns nil), so that a failure stays one line.
func Execute(ctx context.Context, root *ffcli.Command, args []string, helpOut io.Writer) error {
	var help bytes.Buffer
	SetOutput(root, &help)
	err := root.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = help.WriteTo(helpOut)
		return nil
	case err != nil:
		return ParseError(root, err)
	}
	err = root.Run(ctx)
	if errors.Is(err, flag.ErrHelp) {
		_, _ = help.WriteTo(helpOut)
		return nil
	}
	return err
}
