package nss

import (
	"errors"
	"fmt"
)

// Errors wrapped by [EntryError], for errors.Is.
var (
	// ErrInvalidName is a user, group or member name that does not match
	// ^[a-z_][a-z0-9_-]{0,31}$.
	ErrInvalidName = errors.New("invalid name")
	// ErrInvalidField is a GECOS, home or shell field that could not be
	// written safely.
	ErrInvalidField = errors.New("invalid field")
	// ErrReservedID is a UID or GID that may not be assigned: one below
	// [MinID], root's 0 included, or 65535 or 4294967295 (both mean "no
	// ID" to some programs).
	ErrReservedID = errors.New("reserved id")
	// ErrDuplicate is a name or ID already used by another entry, including
	// a group named like a user, whose private group has that name.
	ErrDuplicate = errors.New("duplicate")
)

// EntryError is an entry that [Files] refused.
type EntryError struct {
	Kind string // "user" or "group"
	Name string // the entry's name, as given
	Err  error  // wraps one of the Err* values above
}

func (e *EntryError) Error() string {
	// %q: the name may be the very injection that was refused.
	return fmt.Sprintf("nss: %s %q: %v", e.Kind, e.Name, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }
