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
	static := flag.Bool("static", true, "also measure a statically linked build (CGO_ENABLED=0)")
	flag.Parse()
	dir, err := os.MkdirTemp("", "authkeysbench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	o.Dir = dir
	// The rows measure the binary as go build makes it by default, as
	// make build does; -static adds a row for a CGO_ENABLED=0 build.
	o.Authkeys = filepath.Join(dir, "teleport-authkeys")
	if err := build(o.Authkeys, ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *static {
		o.AuthkeysStatic = filepath.Join(dir, "teleport-authkeys-static")
		if err := build(o.AuthkeysStatic, "CGO_ENABLED=0"); err != nil {
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
