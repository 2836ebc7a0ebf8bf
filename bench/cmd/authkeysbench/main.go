// Command authkeysbench measures the exec time of teleport-authkeys with a
// warm cache next to the stock OpenSSH paths; see package
// bench/authkeysbench and docs/BENCHMARKS.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/opensshca/suite/bench/authkeysbench"
)

func main() {
	var o authkeysbench.Options
	flag.IntVar(&o.Runs, "runs", 300, "runs per row")
	flag.IntVar(&o.Users, "users", 10000, "users in the large cache")
	cgo := flag.Bool("cgo", true, "also measure a build linked with cgo (go build's default, not what make build ships)")
	flag.Parse()
	dir, err := os.MkdirTemp("", "authkeysbench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	o.Dir = dir
	// The rows measure the binary as make build and the packages ship it,
	// linked statically (CGO_ENABLED=0); -cgo adds a row for go build's
	// default, cgo-linked build.
	o.Authkeys = filepath.Join(dir, "teleport-authkeys")
	if err := build(o.Authkeys, "CGO_ENABLED=0"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *cgo {
		o.AuthkeysCgo = filepath.Join(dir, "teleport-authkeys-cgo")
		if err := build(o.AuthkeysCgo, "CGO_ENABLED=1"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	rows, err := authkeysbench.Run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("teleport-authkeys exec time, warm cache (GOMAXPROCS %d, %s)\n\n", runtime.GOMAXPROCS(0), runtime.Version())
	authkeysbench.Write(os.Stdout, rows)
	code := 0
	for _, r := range rows {
		if r.Err != nil {
			code = 1
		}
	}
	os.Exit(code)
}

// build builds teleport-authkeys to out, with env added to the
// environment.
func build(out, env string) error {
	cmd := exec.Command("go", "build", "-o", out, "github.com/opensshca/suite/cmd/teleport-authkeys")
	cmd.Env = os.Environ()
	if env != "" {
		cmd.Env = append(cmd.Env, env)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building teleport-authkeys %s: %v\n%s", env, err, b)
	}
	return nil
}
