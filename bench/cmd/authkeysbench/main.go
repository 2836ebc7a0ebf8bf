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
	flag.Parse()
	dir, err := os.MkdirTemp("", "authkeysbench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	o.Dir = dir
	o.Authkeys = filepath.Join(dir, "teleport-authkeys")
	if out, err := exec.Command("go", "build", "-o", o.Authkeys, "github.com/opensshca/suite/cmd/teleport-authkeys").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building teleport-authkeys: %v\n%s", err, out)
		os.Exit(1)
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
