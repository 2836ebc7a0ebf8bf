package tunnel

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// wireTests are decodeDialRequest's cases; they also seed the fuzz target.
var wireTests = []struct {
	name    string
	in      []byte
	want    DialRequest
	wantErr error
}{
	{"typical", ssh.Marshal(DialRequest{"3f2a", "alice", "192.0.2.7:5555"}), DialRequest{"3f2a", "alice", "192.0.2.7:5555"}, nil},
	{"empty fields", ssh.Marshal(DialRequest{}), DialRequest{}, nil},
	{"longest", ssh.Marshal(DialRequest{strings.Repeat("s", 256), strings.Repeat("u", 256), strings.Repeat("c", 256)}),
		DialRequest{strings.Repeat("s", 256), strings.Repeat("u", 256), strings.Repeat("c", 256)}, nil},
	{"space and tilde", ssh.Marshal(DialRequest{"a b", "~", "[::1]:22"}), DialRequest{"a b", "~", "[::1]:22"}, nil},
	{"field too long", ssh.Marshal(DialRequest{User: strings.Repeat("u", 257)}), DialRequest{}, ErrBadDialRequest},
	{"newline", ssh.Marshal(DialRequest{User: "alice\nlevel=ERROR"}), DialRequest{}, ErrBadDialRequest},
	{"nul", ssh.Marshal(DialRequest{SessionID: "a\x00b"}), DialRequest{}, ErrBadDialRequest},
	{"escape", ssh.Marshal(DialRequest{ClientAddr: "\x1b[2J"}), DialRequest{}, ErrBadDialRequest},
	{"non-ASCII", ssh.Marshal(DialRequest{User: "jos\u00e9"}), DialRequest{}, ErrBadDialRequest},
	{"DEL", ssh.Marshal(DialRequest{User: "a\x7f"}), DialRequest{}, ErrBadDialRequest},
	{"trailing byte", append(ssh.Marshal(DialRequest{"s", "u", "c"}), 0), DialRequest{}, ErrBadDialRequest},
	{"two fields", ssh.Marshal(struct{ A, B string }{"s", "u"}), DialRequest{}, ErrBadDialRequest},
	{"truncated", ssh.Marshal(DialRequest{"s", "u", "c"})[:14], DialRequest{}, ErrBadDialRequest},
	{"length past end", []byte{0, 0, 0, 9, 'a', 0, 0, 0, 0, 0, 0, 0, 0}, DialRequest{}, ErrBadDialRequest},
	{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}, DialRequest{}, ErrBadDialRequest},
	{"empty", nil, DialRequest{}, ErrBadDialRequest},
	{"oversized", make([]byte, 1000), DialRequest{}, ErrBadDialRequest},
}

func TestDecodeDialRequest(t *testing.T) {
	t.Parallel()
	for _, tt := range wireTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeDialRequest(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("decode = %+v, %v; want error %v", got, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("decode = %+v, want %+v", got, tt.want)
			}
			if err != nil {
				return
			}
			again, err := encodeDialRequest(got)
			if err != nil || !bytes.Equal(again, tt.in) {
				t.Errorf("re-encode = %x, %v; want %x", again, err, tt.in)
			}
		})
	}
}

func TestEncodeDialRequestRefuses(t *testing.T) {
	t.Parallel()
	for _, r := range []DialRequest{
		{User: strings.Repeat("u", MaxFieldLen+1)},
		{SessionID: "a\rb"},
		{ClientAddr: "\u2028"},
	} {
		if _, err := encodeDialRequest(r); !errors.Is(err, ErrBadDialRequest) {
			t.Errorf("encode(%q) = %v, want ErrBadDialRequest", r, err)
		}
	}
}
