package tunnel

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// The names this package puts on the wire.
const (
	// ChannelType is the type of the channel a proxy opens on a node's
	// tunnel to ask for a connection to the node's sshd. Its extra data is a
	// DialRequest.
	ChannelType = "teleport-dial@opensshca"

	// keepaliveRequest is the global request both ends send as a keepalive,
	// with want-reply set, as ssh(1) does for ServerAliveInterval.
	keepaliveRequest = "keepalive@openssh.com"
)

// MaxFieldLen is the longest value, in bytes, of each DialRequest field.
const MaxFieldLen = 256

// ErrBadDialRequest is returned, wrapped, for a DialRequest that cannot be
// encoded or decoded.
var ErrBadDialRequest = errors.New("bad dial request")

// DialRequest describes the session a proxy opens a channel for. The node
// logs it; it never decides where the node connects. Each field is at most
// MaxFieldLen bytes of printable ASCII (space to tilde); any may be empty.
type DialRequest struct {
	SessionID  string
	User       string
	ClientAddr string
}

// encodeDialRequest returns r in wire format: three SSH strings, in field
// order (the ssh.Marshal of the struct).
func encodeDialRequest(r DialRequest) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	return ssh.Marshal(&r), nil
}

// decodeDialRequest parses and validates a channel's extra data. It refuses
// trailing bytes, so an accepted input re-encodes to itself.
func decodeDialRequest(b []byte) (DialRequest, error) {
	var r DialRequest
	// Three length words and three fields: refuse anything larger before
	// parsing, whatever the length words claim.
	if len(b) > 3*(4+MaxFieldLen) {
		return DialRequest{}, fmt.Errorf("%w: %d bytes", ErrBadDialRequest, len(b))
	}
	if err := ssh.Unmarshal(b, &r); err != nil {
		return DialRequest{}, fmt.Errorf("%w: %v", ErrBadDialRequest, err)
	}
	if err := r.validate(); err != nil {
		return DialRequest{}, err
	}
	return r, nil
}

func (r DialRequest) validate() error {
	for _, f := range []struct{ name, v string }{
		{"session id", r.SessionID},
		{"user", r.User},
		{"client address", r.ClientAddr},
	} {
		if len(f.v) > MaxFieldLen {
			return fmt.Errorf("%w: %s longer than %d bytes", ErrBadDialRequest, f.name, MaxFieldLen)
		}
		for i := 0; i < len(f.v); i++ {
			if c := f.v[i]; c < ' ' || c > '~' {
				return fmt.Errorf("%w: %s has byte %#02x at %d", ErrBadDialRequest, f.name, c, i)
			}
		}
	}
	return nil
}
