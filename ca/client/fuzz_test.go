package client

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"unicode"

	"github.com/opensshca/suite/ca/api"
)

// The fuzz targets cover what a client reads from a CA, which may be
// broken or hostile: nodes, proxies and keyhelpers must turn any answer
// into a value or an error, never a crash, and an error they print must
// not carry control characters to a terminal or a log line.

// answer is an http.RoundTripper that returns one canned response.
type answer struct {
	status int
	reason string
	body   []byte
}

func (a answer) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: a.status, Status: fmt.Sprintf("%d %s", a.status, a.reason),
		Body: io.NopCloser(strings.NewReader(string(a.body))), Header: http.Header{}, Request: r,
	}, nil
}

// FuzzClientResponse: any status and body the CA answers become a
// decoded value or an error; a non-2xx answer is an *api.Error with that
// status, a code and a printable message.
func FuzzClientResponse(f *testing.F) {
	for _, s := range []struct {
		status int
		reason string
		body   string
	}{
		{200, "OK", `{"node":"web1","hash":"ab","users":[{"name":"alice","logins":["root"]}],"revoked":[]}`},
		{200, "OK", ``},
		{200, "OK", `{"hash":1}`},
		{400, "Bad Request", `{"code":"bad_request","message":"name \"x\" is not valid"}`},
		{403, "Forbidden", `{"code":"forbidden","message":"\u001b]0;pwned\u0007\u001b[2J"}`},
		{502, "Bad Gateway", "<html>\r\n<title>502 \x1b[31m</title>"},
		{500, "\x1b[31mboom", `{}`},
		{999, "", `null`},
		{100, "Continue", ``},
	} {
		f.Add(s.status, s.reason, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, status int, reason string, body []byte) {
		if status < 100 || status > 999 || strings.ContainsAny(reason, "\r\n") {
			return // net/http reads no such status line
		}
		c := &Client{base: "https://ca.test", where: "https://ca.test", hc: &http.Client{Transport: answer{status, reason, body}}}
		ctx := context.Background()
		var errs []error
		_, err := c.NodePolicy(ctx, "ab", 0)
		errs = append(errs, err)
		_, err = c.ProxyPolicy(ctx, "", 0)
		errs = append(errs, err)
		_, err = c.SignUser(ctx, "session", api.SignUserRequest{PublicKey: "k"})
		errs = append(errs, err)
		errs = append(errs, c.PutSessions(ctx, api.ActiveSessions{}))
		for _, err := range errs {
			if status >= 200 && status <= 299 {
				continue
			}
			var ae *api.Error
			if !errors.As(err, &ae) {
				t.Fatalf("status %d: error %v (%T) is not an *api.Error", status, err, err)
			}
			if ae.Status != status || ae.Code == "" || ae.Message == "" {
				t.Fatalf("status %d: %+v", status, ae)
			}
			if i := strings.IndexFunc(ae.Message, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }); i >= 0 {
				t.Fatalf("status %d: message %q holds a control character at %d", status, ae.Message, i)
			}
		}
	})
}

// FuzzParsePin: a pin ParsePin accepts is written exactly as PinOf
// writes pins, since pins are also compared as text (a node checks the
// TLS root the CA sends against --ca-pin with PinOfPEM).
func FuzzParsePin(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("ab", 32))
	f.Add("sha256:" + strings.Repeat("AB", 32))
	f.Add("SHA256:" + strings.Repeat("ab", 32))
	f.Add("sha256:" + strings.Repeat("a", 63))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParsePin(s)
		if err != nil {
			if b != nil {
				t.Fatalf("ParsePin(%q) refused (%v) but returned %x", s, err, b)
			}
			return
		}
		if len(b) != 32 || s != pinPrefix+hex.EncodeToString(b) {
			t.Fatalf("ParsePin(%q) = %x, which PinOf writes differently", s, b)
		}
	})
}
