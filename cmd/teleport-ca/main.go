// Command teleport-ca runs the certificate authority: it creates or opens
// the CA keys in its data dir, serves the HTTPS API on --listen and the
// admin API for caadm on --admin-socket. See docs/teleport-ca.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
