package cli

import (
	"errors"
	"flag"
	"testing"

	"github.com/peterbourgon/ff/v3/ffcli"
)

func TestUsageError(t *testing.T) {
	tests := []struct{ cmd, want string }{
		{"caadm", "bad (see 'caadm -h')"},
		{"caadm users add", "users add: bad (see 'caadm users add -h')"},
	}
	for _, tt := range tests {
		if got := Usagef(flag.NewFlagSet(tt.cmd, flag.ContinueOnError), "bad").Error(); got != tt.want {
			t.Errorf("%q: %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

func TestParseErrorNamesDeepestCommand(t *testing.T) {
	leaf := &ffcli.Command{Name: "add", FlagSet: flag.NewFlagSet("x users add", flag.ContinueOnError)}
	mid := &ffcli.Command{Name: "users", FlagSet: flag.NewFlagSet("x users", flag.ContinueOnError), Subcommands: []*ffcli.Command{leaf}}
	root := &ffcli.Command{FlagSet: flag.NewFlagSet("x", flag.ContinueOnError), Subcommands: []*ffcli.Command{mid}}
	mid.FlagSet.Parse(nil)
	leaf.FlagSet.Parse(nil)
	err := ParseError(root, errors.New("flag provided but not defined: -y"))
	var ue *UsageError
	if !errors.As(err, &ue) || ue.Cmd != "x users add" {
		t.Fatalf("ParseError = %v, want a usage error of x users add", err)
	}
}
