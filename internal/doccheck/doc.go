// Package doccheck enforces the rule that every package in this module,
// commands included, has a package doc comment: by convention "Package x
// ..." for a library and "Command x ..." for a main package.
//
// It has no code; the check is its test, which parses the package clause of
// every non-test Go file in the module and lists each package directory none
// of whose files has a doc comment. Only the presence of a comment is
// checked, not its wording.
package doccheck
