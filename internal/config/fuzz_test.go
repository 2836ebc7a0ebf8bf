package config

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fuzzList is a repeatable flag: each Set appends.
type fuzzList []string

func (l *fuzzList) String() string     { return strings.Join(*l, "\x00") }
func (l *fuzzList) Set(s string) error { *l = append(*l, s); return nil }

// fuzzFlags is a flag set like a daemon's, with every kind of flag.
func fuzzFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("teleport-fuzz", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String(FileFlag, "", "configuration `file`")
	fs.String("data-dir", "/default", "state directory")
	fs.String("tls-cert", "", "certificate file")
	fs.Int("port", 22, "listen port")
	fs.Float64("ratio", 0, "a ratio")
	fs.Bool("verbose", false, "log more")
	fs.Duration("timeout", time.Minute, "timeout")
	fs.Var(new(fuzzList), "principal", "repeatable")
	return fs
}

// values is every flag's value as text.
func values(fs *flag.FlagSet) map[string]string {
	m := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != FileFlag {
			m[f.Name] = f.Value.String()
		}
	})
	return m
}

// FuzzConfigFile: a configuration file either is refused or sets flags
// that exist (never the config flag itself), each from one key, to what
// the same values give on the command line; and Parse reading it from
// disk agrees.
func FuzzConfigFile(f *testing.F) {
	for _, s := range []string{
		"data-dir = \"/var/lib/x\"\nport = 2222\nverbose = true\ntimeout = \"15m\"\nprincipal = [\"a\", \"b\"]\n",
		"data_dir = \"/x\"\n[tls]\ncert = \"/etc/c\"\n",
		"data-dir = \"/x\"\ndata_dir = \"/y\"\n",
		"config = \"/etc/other.toml\"\n",
		"nosuch = 1\n",
		"port = 1.5\nratio = 1e400\n",
		"[[principal]]\nx = 1\n",
		"principal = [[\"a\"]]\n",
		"t = 1979-05-27T07:32:00Z\n",
		"tls = { cert = \"/c\" }\n",
		"\"data-dir\" = \"a\\nb\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := fuzzFlags()
		p := &fileParser{fs: fs}
		var args []string
		set := func(name, value string) error {
			if fs.Lookup(name) == nil || name == FileFlag {
				t.Fatalf("the file set %q", name)
			}
			args = append(args, "--"+name+"="+value)
			return fs.Set(name, value)
		}
		if err := p.setAll(bytes.NewReader(data), set); err != nil {
			return
		}
		cli := fuzzFlags()
		if err := cli.Parse(args); err != nil {
			t.Fatalf("the file's values %q fail on the command line: %v", args, err)
		}
		got, want := values(fs), values(cli)
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("flag %s: file gives %q, command line %q", k, got[k], v)
			}
		}
		// Parse reads the same file from disk to the same values.
		path := filepath.Join(t.TempDir(), "c.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"CONFIG", "DATA_DIR", "TLS_CERT", "PORT", "RATIO", "VERBOSE", "TIMEOUT", "PRINCIPAL"} {
			if os.Getenv(EnvPrefix+"_"+k) != "" {
				t.Skipf("%s_%s is set", EnvPrefix, k)
			}
		}
		full := fuzzFlags()
		if err := Parse(full, []string{"--" + FileFlag, path}); err != nil {
			t.Fatalf("Parse refuses a file setAll accepts: %v", err)
		}
		for k, v := range values(full) {
			if got[k] != v {
				t.Fatalf("flag %s: Parse gives %q, setAll %q", k, v, got[k])
			}
		}
	})
}
