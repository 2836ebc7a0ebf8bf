package logging_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opensshca/suite/internal/logging"
)

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    slog.Level
		wantErr error
	}{
		{in: "debug", want: slog.LevelDebug},
		{in: "info", want: slog.LevelInfo},
		{in: "warn", want: slog.LevelWarn},
		{in: "error", want: slog.LevelError},
		{in: "WARN", want: slog.LevelWarn},
		{in: "Debug", want: slog.LevelDebug},
		{in: "", wantErr: logging.ErrUnknownLevel},
		{in: "warning", wantErr: logging.ErrUnknownLevel},
		{in: "info+2", wantErr: logging.ErrUnknownLevel},
		{in: " info", wantErr: logging.ErrUnknownLevel},
	}
	for _, tt := range tests {
		got, err := logging.ParseLevel(tt.in)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("ParseLevel(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), `"`+tt.in+`"`) {
				t.Errorf("ParseLevel(%q) error %q does not quote the input", tt.in, err)
			}
			continue
		}
		if got != tt.want {
			t.Errorf("ParseLevel(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestNewJSON(t *testing.T) {
	var buf bytes.Buffer
	log := logging.New(&buf, slog.LevelInfo)
	log.Debug("hidden")
	log.Info("issued certificate", "serial", 42)

	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("output %q is not one JSON record: %v", buf.String(), err)
	}
	for k, want := range map[string]any{"level": "INFO", "msg": "issued certificate", "serial": 42.0} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %v", k, rec[k], want)
		}
	}
}

func TestNewLevel(t *testing.T) {
	var buf bytes.Buffer
	log := logging.New(&buf, slog.LevelWarn)
	log.Info("hidden")
	log.Warn("shown")
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Errorf("got %d records, want 1:\n%s", n, buf.String())
	}
}

func TestNewHandler(t *testing.T) {
	file, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	// /dev/null is a character device, like a terminal.
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()

	tests := []struct {
		name     string
		w        io.Writer
		wantText bool
	}{
		{name: "buffer", w: new(bytes.Buffer)},
		{name: "regular file", w: file},
		{name: "character device", w: devNull, wantText: true},
	}
	for _, tt := range tests {
		h := logging.New(tt.w, slog.LevelInfo).Handler()
		switch h.(type) {
		case *slog.TextHandler:
			if !tt.wantText {
				t.Errorf("%s: got a text handler, want JSON", tt.name)
			}
		case *slog.JSONHandler:
			if tt.wantText {
				t.Errorf("%s: got a JSON handler, want text", tt.name)
			}
		default:
			t.Errorf("%s: unexpected handler %T", tt.name, h)
		}
	}
}
