package tunnel

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeDialRequest checks that any channel extra data a proxy may send
// is either refused with ErrBadDialRequest or decodes to fields within the
// limits that re-encode to the same bytes.
func FuzzDecodeDialRequest(f *testing.F) {
	for _, tt := range wireTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := decodeDialRequest(in)
		if err != nil {
			if !errors.Is(err, ErrBadDialRequest) {
				t.Fatalf("error %v does not wrap ErrBadDialRequest", err)
			}
			return
		}
		if err := r.validate(); err != nil {
			t.Fatalf("accepted %+v, which does not validate: %v", r, err)
		}
		again, err := encodeDialRequest(r)
		if err != nil {
			t.Fatalf("accepted %+v, which does not encode: %v", r, err)
		}
		if !bytes.Equal(again, in) {
			t.Fatalf("re-encoded %x, want %x", again, in)
		}
	})
}
