package reference_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/opensshca/suite/internal/testbin"
)

var update = flag.Bool("update", false, "rewrite docs/reference.md")

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.RemoveAll()
	os.Exit(code)
}

// programs in the order the reference lists them.
var programs = []struct{ pkg, name, what string }{
	{testbin.TeleportCA, "teleport-ca", "the authority (docs/teleport-ca.md); also reads --config TOML"},
	{testbin.Caadm, "caadm", "administration over the admin socket (docs/caadm.md)"},
	{testbin.Proxy, "teleport-proxy", "the recording jump proxy (docs/proxy.md); also reads --config TOML"},
	{testbin.Node, "teleport-node", "the node agent (docs/node.md)"},
	{testbin.Authkeys, "teleport-authkeys", "run by sshd on every login (docs/node.md)"},
	{"github.com/opensshca/suite/cmd/teleport-keyhelper", "teleport-keyhelper", "for users (docs/keyhelper.md)"},
}

var subcommandsRE = regexp.MustCompile(`(?m)^SUBCOMMANDS\n((?:  \S.*\n)+)`)

// help runs bin with args and --help and returns what it printed. No
// default may depend on the machine (the programs resolve the host name
// at run time), so the file is the same everywhere.
func help(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, append(args, "--help")...)
	cmd.Env = append(testbin.Environ(), "HOME=/home/USER")
	out, _ := cmd.CombinedOutput() // some programs exit non-zero after help
	s := string(out)
	return strings.TrimRight(s, "\n") + "\n"
}

// walk appends the help of a command and, recursively, of its
// subcommands.
func walk(t *testing.T, b *bytes.Buffer, bin, name string, path []string) {
	text := help(t, bin, path...)
	title := strings.Join(append([]string{name}, path...), " ")
	fmt.Fprintf(b, "\n## %s\n\n```\n%s```\n", title, text)
	m := subcommandsRE.FindStringSubmatch(text)
	if m == nil {
		return
	}
	for _, line := range strings.Split(strings.TrimRight(m[1], "\n"), "\n") {
		sub := strings.Fields(line)[0]
		walk(t, b, bin, name, append(append([]string(nil), path...), sub))
	}
}

func TestReferenceUpToDate(t *testing.T) {
	var pkgs []string
	for _, p := range programs {
		pkgs = append(pkgs, p.pkg)
	}
	bins := testbin.Build(t, pkgs...)
	var b bytes.Buffer
	b.WriteString("# Command and configuration reference\n\n" +
		"Generated from the programs' own --help by `go test ./internal/reference -update`;\n" +
		"a test fails when this file and the code differ. Every flag can also be set\n" +
		"as TELEPORT_<FLAG> in the environment (upper case, \"-\" as \"_\"), and, for\n" +
		"teleport-ca and teleport-proxy, as a key of the --config TOML file (keys are\n" +
		"the flag names; an unknown key is an error). Precedence: flags, then the\n" +
		"environment, then the file.\n\n")
	for _, p := range programs {
		fmt.Fprintf(&b, "- [%s](#%s): %s\n", p.name, p.name, p.what)
	}
	for _, p := range programs {
		walk(t, &b, bins[p.name], p.name, nil)
	}
	// Every command says what it does with an example (the packaging
	// issue's rule for --help).
	for _, sec := range strings.Split(b.String(), "\n## ")[1:] {
		title, _, _ := strings.Cut(sec, "\n")
		if !strings.Contains(strings.ToLower(sec), "example") {
			t.Errorf("%s --help has no example", title)
		}
	}
	path := filepath.Join("..", "..", "docs", "reference.md")
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it with go test ./internal/reference -update)", err)
	}
	if !bytes.Equal(want, b.Bytes()) {
		t.Fatalf("docs/reference.md is out of date with the programs' --help; run go test ./internal/reference -update and review the diff")
	}
}
