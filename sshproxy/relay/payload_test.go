package relay

import (
	"errors"
	"reflect"
	"testing"

	"golang.org/x/crypto/ssh"
)

// parsers are the payload parsers under test, by request name.
var parsers = map[string]func([]byte) (any, error){
	"pty-req":             wrap(parsePTYRequest),
	"window-change":       wrap(parseWindowChange),
	"exec":                wrap(parseExec),
	"subsystem":           wrap(parseSubsystem),
	"exit-status":         wrap(parseExitStatus),
	"exit-signal":         wrap(parseExitSignal),
	"x11-req":             wrap(parseX11Request),
	"tcpip-forward":       wrap(parseForwardRequest),
	"tcpip-forward reply": wrap(parseForwardReply),
	"tcpip channel":       wrap(parseTCPIPChannel),
	"x11 channel":         wrap(parseX11Channel),
	"direct-streamlocal":  wrap(parseStreamLocalChannel),
	"streamlocal-forward": wrap(parseStreamLocalForward),
}

func wrap[T any](f func([]byte) (T, error)) func([]byte) (any, error) {
	return func(p []byte) (any, error) {
		v, err := f(p)
		return v, err
	}
}

var (
	validPTY = ssh.Marshal(&ptyRequest{Term: "xterm-256color", Cols: 80, Rows: 24, Width: 640, Height: 480,
		Modes: "\x81\x00\x00\x96\x00\x00"}) // TTY_OP_ISPEED 38400, TTY_OP_END
	validExec       = ssh.Marshal(&execRequest{Command: "echo hi; exit 7"})
	validExitStatus = ssh.Marshal(&exitStatus{Status: 7})
	validWindow     = ssh.Marshal(&windowChange{Cols: 120, Rows: 50})
	validExitSignal = ssh.Marshal(&exitSignal{Signal: "TERM", Message: "killed", Lang: ""})
)

// parseTests are valid and malformed payloads; the fuzz target starts
// from them too.
var parseTests = []struct {
	name    string
	parser  string
	payload []byte
	want    any
	wantErr error
}{
	{
		name: "pty-req", parser: "pty-req", payload: validPTY,
		want: ptyRequest{Term: "xterm-256color", Cols: 80, Rows: 24, Width: 640, Height: 480, Modes: "\x81\x00\x00\x96\x00\x00"},
	},
	{name: "pty-req truncated", parser: "pty-req", payload: validPTY[:len(validPTY)-1], wantErr: errMalformed},
	{name: "pty-req trailing byte", parser: "pty-req", payload: append(validPTY[:len(validPTY):len(validPTY)], 0), wantErr: errMalformed},
	{name: "pty-req term longer than payload", parser: "pty-req", payload: []byte{0xff, 0xff, 0xff, 0xff, 'x'}, wantErr: errMalformed},
	{name: "pty-req empty", parser: "pty-req", payload: nil, wantErr: errMalformed},
	{
		name: "pty-req huge size", parser: "pty-req",
		payload: ssh.Marshal(&ptyRequest{Term: "", Cols: 1<<32 - 1, Rows: 1<<32 - 1}),
		want:    ptyRequest{Cols: 1<<32 - 1, Rows: 1<<32 - 1},
	},

	{name: "exec", parser: "exec", payload: validExec, want: execRequest{Command: "echo hi; exit 7"}},
	{name: "exec empty command", parser: "exec", payload: []byte{0, 0, 0, 0}, want: execRequest{}},
	{name: "exec truncated length", parser: "exec", payload: []byte{0, 0, 0}, wantErr: errMalformed},
	{name: "exec truncated command", parser: "exec", payload: validExec[:len(validExec)-3], wantErr: errMalformed},
	{name: "exec oversized length", parser: "exec", payload: []byte{0x7f, 0xff, 0xff, 0xff, 'l', 's'}, wantErr: errMalformed},
	{name: "exec trailing bytes", parser: "exec", payload: append(validExec[:len(validExec):len(validExec)], "junk"...), wantErr: errMalformed},

	{name: "exit-status", parser: "exit-status", payload: validExitStatus, want: exitStatus{Status: 7}},
	{name: "exit-status 255", parser: "exit-status", payload: []byte{0, 0, 0, 255}, want: exitStatus{Status: 255}},
	{name: "exit-status short", parser: "exit-status", payload: []byte{0, 7}, wantErr: errMalformed},
	{name: "exit-status long", parser: "exit-status", payload: []byte{0, 0, 0, 7, 0}, wantErr: errMalformed},
	{name: "exit-status empty", parser: "exit-status", payload: []byte{}, wantErr: errMalformed},

	{name: "window-change", parser: "window-change", payload: validWindow, want: windowChange{Cols: 120, Rows: 50}},
	{name: "window-change truncated", parser: "window-change", payload: validWindow[:15], wantErr: errMalformed},
	{name: "window-change oversized", parser: "window-change", payload: append(validWindow[:16:16], 1, 2, 3, 4), wantErr: errMalformed},

	{name: "exit-signal", parser: "exit-signal", payload: validExitSignal, want: exitSignal{Signal: "TERM", Message: "killed"}},
	{
		name: "exit-signal core dumped", parser: "exit-signal",
		payload: ssh.Marshal(&exitSignal{Signal: "SEGV", CoreDumped: true}),
		want:    exitSignal{Signal: "SEGV", CoreDumped: true},
	},
	{name: "exit-signal no language tag", parser: "exit-signal", payload: validExitSignal[:len(validExitSignal)-4], wantErr: errMalformed},
	{name: "exit-signal signal name overruns", parser: "exit-signal", payload: []byte{0, 0, 1, 0, 'T', 'E', 'R', 'M'}, wantErr: errMalformed},

	{name: "subsystem", parser: "subsystem", payload: ssh.Marshal(&subsystemRequest{Name: "sftp"}), want: subsystemRequest{Name: "sftp"}},
	{name: "subsystem truncated", parser: "subsystem", payload: []byte{0, 0, 0, 4, 's', 'f'}, wantErr: errMalformed},

	{
		name: "tcpip channel", parser: "tcpip channel",
		payload: ssh.Marshal(&tcpipChannel{Host: "db.internal", Port: 5432, OrigHost: "127.0.0.1", OrigPort: 40000}),
		want:    tcpipChannel{Host: "db.internal", Port: 5432, OrigHost: "127.0.0.1", OrigPort: 40000},
	},
	{name: "tcpip channel truncated", parser: "tcpip channel", payload: ssh.Marshal(&forwardRequest{Addr: "h", Port: 1}), wantErr: errMalformed},
	{name: "tcpip-forward", parser: "tcpip-forward", payload: ssh.Marshal(&forwardRequest{Addr: "", Port: 0}), want: forwardRequest{}},
	{name: "tcpip-forward reply", parser: "tcpip-forward reply", payload: []byte{0, 0, 0x9c, 0x40}, want: forwardReply{Port: 40000}},
	{name: "tcpip-forward reply empty", parser: "tcpip-forward reply", payload: nil, wantErr: errMalformed},
}

func TestParsers(t *testing.T) {
	t.Parallel()
	for _, tt := range parseTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parsers[tt.parser](tt.payload)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("%s(%x) error = %v, want %v", tt.parser, tt.payload, err, tt.wantErr)
			}
			if tt.wantErr == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s(%x) = %+v, want %+v", tt.parser, tt.payload, got, tt.want)
			}
		})
	}
}

func TestHostPort(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]string{
		"127.0.0.1": "127.0.0.1:22",
		"::1":       "[::1]:22",
		"":          ":22",
		"localhost": "localhost:22",
	} {
		if got := hostPort(host, 22); got != want {
			t.Errorf("hostPort(%q, 22) = %q, want %q", host, got, want)
		}
	}
}
