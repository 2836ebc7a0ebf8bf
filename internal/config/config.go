// Package config loads a program's settings into a [flag.FlagSet] from, in
// decreasing order of precedence, command-line flags, TELEPORT_* environment
// variables and a TOML configuration file.
//
// Every setting is a flag; the environment and the file are only other ways
// of setting flags, so --help documents all of them. Parse is built on
// [ff.Parse].
//
// # Environment
//
// A flag's environment variable is TELEPORT_ followed by its name in upper
// case with "-", "." and "/" replaced by "_": flag data-dir is set by
// TELEPORT_DATA_DIR. A variable that is set but empty is ignored, so the
// environment cannot set a flag to the empty string.
//
// # Configuration file
//
// The file is named by the flag "config" (which can itself come from the
// command line or from TELEPORT_CONFIG); if the flag set has no such flag, or
// it is empty, no file is read. A missing file is an error; see
// [AllowMissingDefault].
//
// Keys name flags, with "_" accepted in place of "-", and nested tables are
// flattened with "-". So both of
//
//	data-dir = "/var/lib/teleport-ca"
//	data_dir = "/var/lib/teleport-ca"
//
// set flag data-dir, and
//
//	[tls]
//	cert = "/etc/teleport-ca/tls.crt"
//
// sets flag tls-cert. Values are passed to the flag's Set method as text:
// strings as they are (so durations are written as strings, "15m"), integers
// and floats in decimal, and booleans as "true" or "false". An array calls
// Set once per element, in order, which suits repeatable flags that append
// each value; for an ordinary flag the last element wins. Datetimes, arrays
// of tables and nested arrays are not supported.
//
// Keys that name no flag are errors, as is setting the config flag itself.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/peterbourgon/ff/v3"
)

const (
	// EnvPrefix is the prefix of environment variables that set flags.
	EnvPrefix = "TELEPORT"

	// FileFlag is the name of the flag that names the configuration file.
	FileFlag = "config"
)

// ErrUnknownKey is returned, wrapped, by [Parse] when the configuration file
// has a key that names no flag.
var ErrUnknownKey = errors.New("unknown key")

// An Option changes the behaviour of [Parse].
type Option func(*options)

type options struct {
	allowMissingDefault bool
}

// AllowMissingDefault makes a missing configuration file acceptable if it is
// the config flag's default. A file named on the command line or in
// TELEPORT_CONFIG must still exist.
func AllowMissingDefault() Option {
	return func(o *options) { o.allowMissingDefault = true }
}

// Parse sets the flags in fs from args, the environment and the
// configuration file, as described in the package documentation.
//
// Like [flag.FlagSet.Parse], it returns an error wrapping [flag.ErrHelp] if
// args ask for help.
func Parse(fs *flag.FlagSet, args []string, opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	p := &fileParser{fs: fs}
	err := ff.Parse(fs, args,
		ff.WithEnvVarPrefix(EnvPrefix),
		ff.WithConfigFileFlag(FileFlag),
		ff.WithConfigFileParser(p.parse),
		ff.WithAllowMissingConfigFile(o.allowMissingDefault),
	)
	if err == nil && o.allowMissingDefault && !p.read {
		err = checkExplicitFile(fs)
	}
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// checkExplicitFile returns an error if the config flag was set explicitly
// and names a file that does not exist. With [AllowMissingDefault], ff.Parse
// accepts any missing file, so Parse checks again afterwards.
func checkExplicitFile(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if f.Name == FileFlag && f.Value.String() != "" {
			_, err = os.Stat(f.Value.String())
		}
	})
	return err
}

// fileParser is an [ff.ConfigFileParser] for TOML files.
type fileParser struct {
	fs   *flag.FlagSet
	read bool // whether parse was called, i.e. the file existed
}

func (p *fileParser) parse(r io.Reader, set func(name, value string) error) error {
	p.read = true
	file := p.fs.Lookup(FileFlag).Value.String()
	if err := p.setAll(r, set); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// setAll decodes TOML from r and sets flags from its keys, in the order they
// appear in the file.
func (p *fileParser) setAll(r io.Reader, set func(name, value string) error) error {
	var doc map[string]any
	md, err := toml.NewDecoder(r).Decode(&doc)
	if err != nil {
		return err
	}
	setBy := make(map[string]toml.Key) // flag name → key that set it
	for _, key := range md.Keys() {
		if err := p.setKey(key, lookup(doc, key), setBy, set); err != nil {
			return err
		}
	}
	return nil
}

func (p *fileParser) setKey(key toml.Key, v any, setBy map[string]toml.Key, set func(name, value string) error) error {
	switch v.(type) {
	case map[string]any, nil:
		// A table, whose keys follow; or a key in an array of tables,
		// which was rejected when its array was seen.
		return nil
	case []map[string]any:
		return fmt.Errorf("key %q: arrays of tables are not supported", key)
	}
	name, err := p.flagName(key)
	if err != nil {
		return err
	}
	if prev, ok := setBy[name]; ok {
		return fmt.Errorf("key %q: setting already given by key %q", key, prev)
	}
	setBy[name] = key
	values, err := texts(v)
	if err != nil {
		return fmt.Errorf("key %q: %w", key, err)
	}
	for _, s := range values {
		if err := set(name, s); err != nil {
			return fmt.Errorf("key %q: invalid value %q: %w", key, s, flagError(err))
		}
	}
	return nil
}

// flagName returns the name of the flag set by key.
func (p *fileParser) flagName(key toml.Key) (string, error) {
	name := strings.Join(key, "-")
	if p.fs.Lookup(name) == nil {
		name = strings.ReplaceAll(name, "_", "-")
	}
	switch {
	case p.fs.Lookup(name) == nil:
		return "", fmt.Errorf("%w %q (no such setting; see --help)", ErrUnknownKey, key)
	case name == FileFlag:
		return "", fmt.Errorf("key %q: cannot be set in the configuration file", key)
	}
	return name, nil
}

// flagError returns the flag's own error from an error returned by the set
// function that ff.Parse passes to a config file parser, which wraps it in
// words that repeat what the caller says better.
func flagError(err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		return inner
	}
	return err
}

// lookup returns the value of key in doc, or nil if there is none.
func lookup(doc map[string]any, key toml.Key) any {
	var v any = doc
	for _, k := range key {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// texts returns the text of a scalar value, or of each element of an array of
// scalars.
func texts(v any) ([]string, error) {
	elems, ok := v.([]any)
	if !ok {
		s, err := text(v)
		return []string{s}, err
	}
	out := make([]string, len(elems))
	for i, e := range elems {
		s, err := text(e)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		out[i] = s
	}
	return out, nil
}

func text(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case bool:
		return strconv.FormatBool(v), nil
	case []any, []map[string]any:
		return "", errors.New("nested arrays are not supported")
	case map[string]any:
		return "", errors.New("tables are not supported here")
	default: // time.Time and the toml.Local* types
		return "", errors.New("datetimes are not supported; write a string")
	}
}
