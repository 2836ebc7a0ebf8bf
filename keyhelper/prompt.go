package keyhelper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/term"
)

// maxLine bounds a line of credentials read.
const maxLine = 4096

// Credentials are what a sign-in asks for. They are never printed.
type Credentials struct {
	Password string
	// Code is the TOTP code, digits only.
	Code string
}

// Prompt reads credentials. On a terminal it asks on Out, reads the
// password without echo and then the code; otherwise it reads them
// from In as two lines, password first, without prompting.
type Prompt struct {
	In  io.Reader
	Out io.Writer
}

// fder is a file with a descriptor, such as *os.File.
type fder interface{ Fd() uintptr }

// Read asks for user's credentials. It returns ctx.Err() when ctx ends
// first, with the terminal's echo restored.
func (p Prompt) Read(ctx context.Context, user string) (Credentials, error) {
	if f, ok := p.In.(fder); ok && term.IsTerminal(int(f.Fd())) {
		return p.readTerminal(ctx, int(f.Fd()), user)
	}
	return p.readLines(ctx)
}

func (p Prompt) readTerminal(ctx context.Context, fd int, user string) (Credentials, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return Credentials{}, fmt.Errorf("keyhelper: terminal: %w", err)
	}
	return waitRead(ctx, func() { _ = term.Restore(fd, state) }, func() (Credentials, error) {
		fmt.Fprintf(p.Out, "Password for %s: ", user)
		pw, err := term.ReadPassword(fd)
		fmt.Fprintln(p.Out)
		if err != nil {
			return Credentials{}, fmt.Errorf("keyhelper: reading the password: %w", err)
		}
		fmt.Fprint(p.Out, "One-time code from your authenticator app: ")
		code, err := readLine(p.In)
		if err != nil {
			return Credentials{}, fmt.Errorf("keyhelper: reading the code: %w", err)
		}
		return checkCredentials(string(pw), code)
	})
}

func (p Prompt) readLines(ctx context.Context) (Credentials, error) {
	return waitRead(ctx, func() {}, func() (Credentials, error) {
		pw, err := readLine(p.In)
		if err != nil {
			return Credentials{}, fmt.Errorf("keyhelper: reading the password from standard input: %w", err)
		}
		code, err := readLine(p.In)
		if err != nil {
			return Credentials{}, fmt.Errorf("keyhelper: reading the code from standard input (the second line): %w", err)
		}
		return checkCredentials(pw, code)
	})
}

// waitRead runs read, which blocks on input that cannot be interrupted,
// and returns its result or, when ctx ends first, calls abort and
// returns ctx.Err(); the read is then abandoned.
func waitRead(ctx context.Context, abort func(), read func() (Credentials, error)) (Credentials, error) {
	type result struct {
		c   Credentials
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := read()
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.c, r.err
	case <-ctx.Done():
		abort()
		return Credentials{}, ctx.Err()
	}
}

// readLine reads one line from r a byte at a time, so that nothing after
// it is consumed, and returns it without its line ending. A last line
// without a newline is accepted; no input at all is io.ErrUnexpectedEOF.
func readLine(r io.Reader) (string, error) {
	var b strings.Builder
	var one [1]byte
	for {
		n, err := r.Read(one[:])
		if n == 1 {
			if one[0] == '\n' {
				return strings.TrimSuffix(b.String(), "\r"), nil
			}
			if b.Len() >= maxLine {
				return "", errors.New("line too long")
			}
			b.WriteByte(one[0])
		}
		if errors.Is(err, io.EOF) {
			if b.Len() == 0 {
				return "", io.ErrUnexpectedEOF
			}
			return strings.TrimSuffix(b.String(), "\r"), nil
		}
		if err != nil {
			return "", err
		}
	}
}

// checkCredentials refuses what the CA would refuse anyway, before a
// failed attempt counts towards the account's lockout.
func checkCredentials(pw, code string) (Credentials, error) {
	if pw == "" {
		return Credentials{}, errors.New("keyhelper: the password is empty")
	}
	code = strings.Join(strings.Fields(code), "") // "123 456" as some apps show it
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		return Credentials{}, errors.New("keyhelper: the one-time code must be the 6 digits your authenticator app shows")
	}
	return Credentials{Password: pw, Code: code}, nil
}
