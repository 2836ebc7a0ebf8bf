package ca

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

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
			return v, err
		}
		if errors.Is(err, io.EOF) {
			return v, invalidf("request body is empty; send a JSON object")
		}
		return v, invalidf("request body is not valid: %v", err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return v, invalidf("request body has data after the JSON object")
	}
	return v, nil
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
