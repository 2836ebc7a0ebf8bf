package keyhelper

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// Standard input that is not a terminal gives the password and the code
// as two lines, and nothing is prompted.
func TestPromptLines(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     Credentials
		wantErr  string
		leftover string // what must still be unread
	}{
		{name: "two lines", in: "s3cret pass\n123456\n", want: Credentials{"s3cret pass", "123456"}},
		{name: "crlf", in: "pw\r\n654321\r\n", want: Credentials{"pw", "654321"}},
		{name: "no final newline", in: "pw\n000111", want: Credentials{"pw", "000111"}},
		{name: "spaced code", in: "pw\n 123 456 \n", want: Credentials{"pw", "123456"}},
		{name: "rest unread", in: "pw\n123456\nmore\n", want: Credentials{"pw", "123456"}, leftover: "more\n"},
		{name: "password keeps spaces", in: " pw \n123456\n", want: Credentials{" pw ", "123456"}},
		{name: "empty input", in: "", wantErr: "reading the password"},
		{name: "no code line", in: "pw\n", wantErr: "the second line"},
		{name: "empty password", in: "\n123456\n", wantErr: "password is empty"},
		{name: "short code", in: "pw\n12345\n", wantErr: "6 digits"},
		{name: "letters in code", in: "pw\n12345a\n", wantErr: "6 digits"},
		{name: "long code", in: "pw\n1234567\n", wantErr: "6 digits"},
		{name: "overlong line", in: strings.Repeat("x", maxLine+1) + "\n123456\n", wantErr: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := strings.NewReader(tt.in)
			var out strings.Builder
			got, err := Prompt{In: in, Out: &out}.Read(context.Background(), "alice")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Read = %+v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Read = %q, %v; want %q", got, err, tt.want)
			}
			if out.Len() != 0 {
				t.Errorf("prompted %q on a non-terminal", out.String())
			}
			rest, _ := io.ReadAll(in)
			if string(rest) != tt.leftover {
				t.Errorf("left %q unread, want %q", rest, tt.leftover)
			}
		})
	}
}

// A prompt waiting for input that never comes returns when the context
// ends (an interrupt), instead of hanging.
func TestPromptCancel(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := Prompt{In: r, Out: io.Discard}.Read(ctx, "alice")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Read = %v, want context.Canceled", err)
	}
}
