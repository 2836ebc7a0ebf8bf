// Command profproxy is teleport-proxy's profiling twin for proxybench
// -profile: it runs package sshproxy with the teleport-proxy flags the
// bench uses and writes CPU and heap profiles when the bench signals it
// (see package bench/proxybench). It is not for production use.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/opensshca/suite/bench/proxybench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := proxybench.RunProfiledProxy(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
