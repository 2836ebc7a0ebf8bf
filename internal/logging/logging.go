// Package logging sets up the structured loggers the daemons write to
// standard error: JSON lines when the output goes to the journal, a file or a
// pipe, and human-readable text when it goes to a terminal.
package logging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// ErrUnknownLevel is returned, wrapped, by [ParseLevel] for a name that is
// not a level.
var ErrUnknownLevel = errors.New("unknown log level")

// New returns a logger that writes records at level or above to w, as text if
// w is a terminal and as JSON otherwise.
func New(w io.Writer, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if isTerminal(w) {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// ParseLevel returns the level named by s, which is one of debug, info, warn
// or error, in any case.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("logging: %w %q (want debug, info, warn or error)", ErrUnknownLevel, s)
}
