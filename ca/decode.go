package ca

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/opensshca/suite/ca/api"
)

// decodeJSON reads exactly one JSON value of type T from body, refusing
// unknown fields and trailing data, so that a typo in a request is an
// error rather than a silently ignored setting.
func decodeJSON[T any](body io.Reader) (T, error) {
	var v T
	d := json.NewDecoder(body)
	d.DisallowUnknownFields()
	if err := d.Decode(&v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return v, bodyTooLarge{mbe}
		}
		if errors.Is(err, io.EOF) {
			return v, invalidf("request body is empty; send a JSON object")
		}
		return v, invalidf("request body is not valid: %s", jsonProblem(err))
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return v, invalidf("request body has data after the JSON object")
	}
	return v, nil
}

// bodyTooLarge is a body over its cap, in words (classify finds the
// *http.MaxBytesError it wraps).
type bodyTooLarge struct{ err *http.MaxBytesError }

func (e bodyTooLarge) Error() string {
	return fmt.Sprintf("request body is larger than the %d bytes allowed", e.err.Limit)
}

func (e bodyTooLarge) Unwrap() error { return e.err }

// jsonProblem describes a decoding error in the request's terms: the
// encoding/json messages name Go types ("Go struct field
// LoginRequest.user of type string"), which are the CA's internals.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && err != error(te):
		// A field's own decoder wrapped it ("duration must be a string").
		return strings.Replace(err.Error(), te.Error(), "not "+te.Value, 1)
	case errors.As(err, &te):
		want := jsonKind(te.Type)
		if want == "number" && strings.HasPrefix(te.Value, "number") && te.Field != "" {
			return fmt.Sprintf("field %q: %s is out of range or not a whole number", te.Field, te.Value)
		}
		if te.Field == "" {
			return fmt.Sprintf("the body must be a JSON %s, not %s", want, te.Value)
		}
		return fmt.Sprintf("field %q must be a %s, not %s", te.Field, want, te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("not JSON at byte %d (%v)", se.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends early"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// jsonKind names the JSON form of a Go type.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "list"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "value"
}

// readRequest checks the content type, caps the body and decodes it.
func readRequest[T any](w http.ResponseWriter, r *http.Request) (T, error) {
	return readRequestLimit[T](w, r, api.MaxBodyBytes)
}

// readRequestLimit is readRequest with another cap, for the few bodies
// that are lists (a proxy's sessions and audit batches).
func readRequestLimit[T any](w http.ResponseWriter, r *http.Request, limit int64) (T, error) {
	var zero T
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return zero, invalidf("content type %q is not application/json", ct)
		}
	} else {
		return zero, invalidf("content type is missing; send application/json")
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	return decodeJSON[T](body)
}

// decodeBytes is decodeJSON over a byte slice, for fuzz targets.
func decodeBytes[T any](b []byte) (T, error) {
	if len(b) > api.MaxBodyBytes {
		var zero T
		return zero, fmt.Errorf("body of %d bytes exceeds %d", len(b), api.MaxBodyBytes)
	}
	return decodeJSON[T](bytes.NewReader(b))
}
