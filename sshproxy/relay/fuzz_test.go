package relay

import (
	"errors"
	"reflect"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzParseRequests feeds the same bytes to every payload parser: none may
// panic, every error must be errMalformed, and whatever parses must survive
// a marshal and parse round trip unchanged.
func FuzzParseRequests(f *testing.F) {
	for _, tt := range parseTests {
		f.Add(tt.payload)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		for name, parse := range parsers {
			v, err := parse(p)
			if err != nil {
				if !errors.Is(err, errMalformed) {
					t.Errorf("%s(%x): error %v does not wrap errMalformed", name, p, err)
				}
				continue
			}
			// Marshal wants a pointer to the struct; v holds it by value.
			ptr := reflect.New(reflect.TypeOf(v))
			ptr.Elem().Set(reflect.ValueOf(v))
			again, err := parse(ssh.Marshal(ptr.Interface()))
			if err != nil {
				t.Fatalf("%s(%x) = %+v, which does not parse again once marshalled: %v", name, p, v, err)
			}
			if !reflect.DeepEqual(again, v) {
				t.Fatalf("%s(%x) = %+v, round trip gives %+v", name, p, v, again)
			}
		}
	})
}
