// Package reference keeps docs/reference.md, the command and
// configuration reference, in step with the programs: its test runs every
// command and subcommand of the suite's binaries with --help and compares
// the result with the file, so the reference cannot drift from the code.
// Regenerate it with
//
//	go test ./internal/reference -update
//
// Every flag is also a TELEPORT_<FLAG> environment variable and, for the
// daemons that take --config, a key of their TOML file (internal/config).
package reference
