package config_test

import (
	"errors"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/opensshca/suite/internal/config"
)

// listFlag is a repeatable flag: each Set appends.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

var errRejected = errors.New("rejected")

// pickyFlag rejects every value.
type pickyFlag struct{}

func (pickyFlag) String() string     { return "" }
func (pickyFlag) Set(s string) error { return errRejected }

type settings struct {
	Config     string
	DataDir    string
	Port       int
	Ratio      float64
	Verbose    bool
	Timeout    time.Duration
	TLSCert    string
	Principals listFlag
}

// newFlagSet returns a flag set like a daemon's, with the config flag
// defaulting to configDefault, and the settings it fills in. It clears the
// environment variables for its flags, so the caller's environment does not
// leak into the test.
func newFlagSet(t *testing.T, configDefault string) (*flag.FlagSet, *settings) {
	t.Helper()
	s := new(settings)
	fs := flag.NewFlagSet("teleport-test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&s.Config, "config", configDefault, "configuration `file`")
	fs.StringVar(&s.DataDir, "data-dir", "/default", "state `directory`")
	fs.IntVar(&s.Port, "port", 22, "listen port")
	fs.Float64Var(&s.Ratio, "ratio", 0, "a ratio")
	fs.BoolVar(&s.Verbose, "verbose", false, "log more")
	fs.DurationVar(&s.Timeout, "timeout", time.Minute, "timeout")
	fs.StringVar(&s.TLSCert, "tls-cert", "", "certificate `file`")
	fs.Var(&s.Principals, "principal", "allowed principal (repeatable)")
	fs.Var(pickyFlag{}, "picky", "rejects everything")
	clearEnv(t, fs)
	return fs, s
}

// clearEnv empties the environment variable of every flag in fs. Parse
// treats empty variables as unset.
func clearEnv(t *testing.T, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		t.Setenv("TELEPORT_"+strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_")), "")
	})
}

// writeConfig writes contents to a file in a temporary directory and returns
// its name.
func writeConfig(t *testing.T, contents string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "teleport-ca.toml")
	if err := os.WriteFile(path, []byte(contents), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPrecedence(t *testing.T) {
	tests := []struct {
		name string
		file string // contents, if non-empty
		env  string // TELEPORT_DATA_DIR, if non-empty
		args []string
		want string
	}{
		{name: "default", want: "/default"},
		{name: "file", file: `data-dir = "/file"`, want: "/file"},
		{name: "env", env: "/env", want: "/env"},
		{name: "flag", args: []string{"-data-dir=/flag"}, want: "/flag"},
		{name: "env over file", file: `data-dir = "/file"`, env: "/env", want: "/env"},
		{name: "flag over file", file: `data-dir = "/file"`, args: []string{"-data-dir", "/flag"}, want: "/flag"},
		{name: "flag over env", env: "/env", args: []string{"--data-dir=/flag"}, want: "/flag"},
		{name: "flag over all", file: `data-dir = "/file"`, env: "/env", args: []string{"-data-dir=/flag"}, want: "/flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, s := newFlagSet(t, "")
			args := tt.args
			if tt.file != "" {
				args = append([]string{"-config", writeConfig(t, tt.file)}, args...)
			}
			if tt.env != "" {
				t.Setenv("TELEPORT_DATA_DIR", tt.env)
			}
			if err := config.Parse(fs, args); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if s.DataDir != tt.want {
				t.Errorf("data-dir = %q, want %q", s.DataDir, tt.want)
			}
		})
	}
}

// TestRepeatablePrecedence checks that a repeatable flag given on the command
// line is not also appended to from the file.
func TestRepeatablePrecedence(t *testing.T) {
	fs, s := newFlagSet(t, writeConfig(t, `principal = ["file1", "file2"]`))
	if err := config.Parse(fs, []string{"-principal=flag"}); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if want := (listFlag{"flag"}); !reflect.DeepEqual(s.Principals, want) {
		t.Errorf("principals = %q, want %q", s.Principals, want)
	}
}

func TestFile(t *testing.T) {
	defaults := func() settings {
		return settings{DataDir: "/default", Port: 22, Timeout: time.Minute}
	}
	tests := []struct {
		name string
		file string
		want func(*settings)
	}{
		{
			name: "empty",
			want: func(*settings) {},
		},
		{
			name: "underscores",
			file: `data_dir = "/x"`,
			want: func(s *settings) { s.DataDir = "/x" },
		},
		{
			name: "nested table",
			file: "[tls]\ncert = \"/etc/tls.crt\"\n",
			want: func(s *settings) { s.TLSCert = "/etc/tls.crt" },
		},
		{
			name: "dotted key",
			file: `tls.cert = "/etc/tls.crt"`,
			want: func(s *settings) { s.TLSCert = "/etc/tls.crt" },
		},
		{
			name: "inline table",
			file: `tls = { cert = "/etc/tls.crt" }`,
			want: func(s *settings) { s.TLSCert = "/etc/tls.crt" },
		},
		{
			name: "types",
			file: "port = 0x8ae\nratio = 0.25\nverbose = true\ntimeout = \"15m\"\n",
			want: func(s *settings) {
				s.Port = 2222
				s.Ratio = 0.25
				s.Verbose = true
				s.Timeout = 15 * time.Minute
			},
		},
		{
			name: "array",
			file: `principal = ["alice", "bob", "carol"]`,
			want: func(s *settings) { s.Principals = listFlag{"alice", "bob", "carol"} },
		},
		{
			name: "mixed array",
			file: `principal = ["alice", 7, 1.5, false]`,
			want: func(s *settings) { s.Principals = listFlag{"alice", "7", "1.5", "false"} },
		},
		{
			name: "empty array",
			file: `principal = []`,
			want: func(*settings) {},
		},
		{
			name: "array for plain flag",
			file: `data-dir = ["/a", "/b"]`,
			want: func(s *settings) { s.DataDir = "/b" },
		},
		{
			name: "scalar for repeatable flag",
			file: `principal = "alice"`,
			want: func(s *settings) { s.Principals = listFlag{"alice"} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.file)
			fs, s := newFlagSet(t, path)
			if err := config.Parse(fs, nil); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := defaults()
			want.Config = path
			tt.want(&want)
			if !reflect.DeepEqual(*s, want) {
				t.Errorf("settings = %+v\nwant       %+v", *s, want)
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		wantIs  error    // if non-nil, an error the result must wrap
		wantMsg []string // substrings of the message after "config: <path>: "
	}{
		{
			name:    "unknown key",
			file:    `listen_adress = ":22"`,
			wantIs:  config.ErrUnknownKey,
			wantMsg: []string{`unknown key "listen_adress" (no such setting; see --help)`},
		},
		{
			name:    "unknown nested key",
			file:    "[tls]\nkey = \"x\"\n",
			wantIs:  config.ErrUnknownKey,
			wantMsg: []string{`unknown key "tls.key"`},
		},
		{
			name:    "env var name as key",
			file:    `TELEPORT_DATA_DIR = "/x"`,
			wantIs:  config.ErrUnknownKey,
			wantMsg: []string{`unknown key "TELEPORT_DATA_DIR"`},
		},
		{
			name:    "bad integer",
			file:    `port = "twenty-two"`,
			wantMsg: []string{`key "port": invalid value "twenty-two": parse error`},
		},
		{
			name:    "float for integer",
			file:    `port = 22.5`,
			wantMsg: []string{`key "port": invalid value "22.5"`},
		},
		{
			name:    "bad duration",
			file:    `timeout = 15`,
			wantMsg: []string{`key "timeout": invalid value "15": parse error`},
		},
		{
			name:    "rejected value",
			file:    `picky = "x"`,
			wantIs:  errRejected,
			wantMsg: []string{`key "picky": invalid value "x": rejected`},
		},
		{
			name:    "syntax",
			file:    "port = 22\ndata-dir = \n",
			wantIs:  toml.ParseError{},
			wantMsg: []string{"line 2"},
		},
		{
			name:    "duplicate",
			file:    "data-dir = \"/a\"\ndata_dir = \"/b\"\n",
			wantMsg: []string{`key "data_dir": setting already given by key "data-dir"`},
		},
		{
			name:    "config key",
			file:    `config = "/other.toml"`,
			wantMsg: []string{`key "config": cannot be set`},
		},
		{
			name:    "datetime",
			file:    `timeout = 1979-05-27T07:32:00Z`,
			wantMsg: []string{`key "timeout": datetimes are not supported`},
		},
		{
			name:    "array of tables",
			file:    "[[tls]]\ncert = \"a\"\n",
			wantMsg: []string{`key "tls": arrays of tables are not supported`},
		},
		{
			name:    "nested array",
			file:    `principal = ["a", ["b"]]`,
			wantMsg: []string{`key "principal": element 1: nested arrays are not supported`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.file)
			fs, _ := newFlagSet(t, path)
			err := config.Parse(fs, nil)
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			msg, ok := strings.CutPrefix(err.Error(), "config: "+path+": ")
			if !ok {
				t.Fatalf("error %q does not start with %q", err, "config: "+path+": ")
			}
			for _, want := range tt.wantMsg {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			switch want := tt.wantIs.(type) {
			case nil:
			case toml.ParseError:
				if !errors.As(err, &want) {
					t.Errorf("error %v does not wrap a toml.ParseError", err)
				}
			default:
				if !errors.Is(err, want) {
					t.Errorf("error %v does not wrap %v", err, want)
				}
			}
		})
	}
}

// TestUnknownKeyMessage checks the whole message, since users will see it.
func TestUnknownKeyMessage(t *testing.T) {
	path := writeConfig(t, "verbose = true\nlisten_adress = \":22\"\n")
	fs, _ := newFlagSet(t, "")
	err := config.Parse(fs, []string{"-config", path})
	want := `config: ` + path + `: unknown key "listen_adress" (no such setting; see --help)`
	if err == nil || err.Error() != want {
		t.Errorf("Parse = %v, want %s", err, want)
	}
}

func TestEnv(t *testing.T) {
	fs, s := newFlagSet(t, "")
	t.Setenv("TELEPORT_DATA_DIR", "/env")
	t.Setenv("TELEPORT_TLS_CERT", "/env.crt")
	t.Setenv("TELEPORT_VERBOSE", "true")
	t.Setenv("TELEPORT_CONFIG", writeConfig(t, `port = 2222`))
	if err := config.Parse(fs, nil); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	got := []any{s.DataDir, s.TLSCert, s.Verbose, s.Port}
	want := []any{"/env", "/env.crt", true, 2222}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("data-dir, tls-cert, verbose, port = %v, want %v", got, want)
	}
}

func TestEnvBadValue(t *testing.T) {
	fs, _ := newFlagSet(t, "")
	t.Setenv("TELEPORT_PICKY", "x")
	err := config.Parse(fs, nil)
	if !errors.Is(err, errRejected) {
		t.Fatalf("Parse = %v, want error wrapping %v", err, errRejected)
	}
	if !strings.Contains(err.Error(), "TELEPORT_PICKY") {
		t.Errorf("error %q does not name the variable", err)
	}
}

func TestMissingFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.toml")
	tests := []struct {
		name    string
		def     string // default of the config flag
		args    []string
		env     string // TELEPORT_CONFIG
		opts    []config.Option
		wantErr bool
	}{
		{name: "flag", args: []string{"-config", missing}, wantErr: true},
		{name: "env", env: missing, wantErr: true},
		{name: "default", def: missing, wantErr: true},
		{name: "flag allowing default", args: []string{"-config", missing}, opts: []config.Option{config.AllowMissingDefault()}, wantErr: true},
		{name: "env allowing default", env: missing, opts: []config.Option{config.AllowMissingDefault()}, wantErr: true},
		{name: "default allowed", def: missing, opts: []config.Option{config.AllowMissingDefault()}},
		{name: "none", def: ""},
		{name: "disabled on command line", def: missing, args: []string{"-config="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flags, _ := newFlagSet(t, tt.def)
			if tt.env != "" {
				t.Setenv("TELEPORT_CONFIG", tt.env)
			}
			err := config.Parse(flags, tt.args, tt.opts...)
			if !tt.wantErr {
				if err != nil {
					t.Errorf("Parse: %v", err)
				}
				return
			}
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Parse = %v, want error wrapping fs.ErrNotExist", err)
			}
			if err != nil && !strings.Contains(err.Error(), missing) {
				t.Errorf("error %q does not name %s", err, missing)
			}
		})
	}
}

// TestNoConfigFlag checks that without a config flag, Parse reads the
// environment but no file.
func TestNoConfigFlag(t *testing.T) {
	var dataDir string
	fs := flag.NewFlagSet("caadm", flag.ContinueOnError)
	fs.StringVar(&dataDir, "data-dir", "/default", "")
	clearEnv(t, fs)
	t.Setenv("TELEPORT_DATA_DIR", "/env")
	t.Setenv("TELEPORT_CONFIG", writeConfig(t, `data-dir = "/file"`))
	if err := config.Parse(fs, nil); err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if dataDir != "/env" {
		t.Errorf("data-dir = %q, want %q", dataDir, "/env")
	}
}

func TestHelp(t *testing.T) {
	fs, _ := newFlagSet(t, "")
	if err := config.Parse(fs, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("Parse(-h) = %v, want error wrapping flag.ErrHelp", err)
	}
}
