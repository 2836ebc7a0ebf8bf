// Command teleport-keyhelper runs on a user's machine: it signs in to
// teleport-ca with a password and a one-time code, puts the short-lived
// SSH certificate it gets into ssh-agent and files under ~/.teleport, and
// prints the ssh_config block with which stock ssh reaches the cluster's
// hosts through its proxy, verifying them by their host certificates. Its
// daemon command does the same in the background whenever the user signs
// in on the CA's web page, and keeps the certificate renewed.
//
// Run "teleport-keyhelper -h" for the commands; docs/keyhelper.md is the
// user guide. The work is done by package keyhelper.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// An interrupt cancels ctx, so a password prompt can put the
	// terminal's echo back before the process ends.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes teleport-keyhelper with args and returns the exit code: 0,
// 1 on failure, 2 on a usage error.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	return a.run(ctx, args)
}
