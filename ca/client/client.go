// Package client is the client for the teleport-ca HTTPS and admin APIs.
//
// New connects to the public HTTPS API that keyhelpers, nodes and proxies
// use; it can pin the server's TLS key instead of trusting a CA pool.
// NewAdmin talks to the root-only admin API over its Unix socket, as caadm
// does. Both return a *Client; each method maps to one endpoint of package
// api, and a server refusal comes back as an *api.Error.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/opensshca/suite/ca/api"
)

// DefaultTimeout bounds a whole request when Options.Timeout is zero, and
// every admin request.
const DefaultTimeout = 30 * time.Second

// maxErrorBody caps how much of an error response is read.
const maxErrorBody = 64 << 10

// Client calls one teleport-ca server. It is safe for concurrent use.
type Client struct {
	base  string // URL prefix the api paths are appended to
	where string // what to call the server in errors
	hc    *http.Client

	date atomic.Pointer[serverDate] // the last response's Date header
}

// Options configure an HTTPS client.
type Options struct {
	// Pin, when set, is the "sha256:<64 hex digits>" SubjectPublicKeyInfo
	// hash of a certificate in the server's chain (caadm ca show prints it).
	// The server is then trusted through that certificate only, and RootCAs
	// is ignored.
	Pin string
	// RootCAs verify the server without a pin; nil means the system pool.
	RootCAs *x509.CertPool
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
	// ClientCert, when set, is presented to the server.
	ClientCert *tls.Certificate
}

// NewAdmin returns a client of the admin API listening on the Unix socket
// at socketPath.
func NewAdmin(socketPath string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	return &Client{
		base:  "http://admin",
		where: socketPath,
		hc:    &http.Client{Transport: tr, Timeout: DefaultTimeout},
	}
}

// New returns a client of the HTTPS API at serverURL, such as
// "https://ca.example.com:3025".
func New(serverURL string, opts Options) (*Client, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("client: bad server URL %q: %w", serverURL, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("client: server URL %q must look like https://host[:port]", serverURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("client: server URL %q must not have a query or fragment", serverURL)
	}
	tc, err := tlsConfig(u.Hostname(), opts)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	base := strings.TrimSuffix(u.String(), "/")
	return &Client{
		base:  base,
		where: base,
		hc:    &http.Client{Transport: tr, Timeout: timeout},
	}, nil
}

func tlsConfig(host string, opts Options) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: opts.RootCAs}
	if opts.ClientCert != nil {
		tc.Certificates = []tls.Certificate{*opts.ClientCert}
	}
	if opts.Pin == "" {
		return tc, nil
	}
	pin, err := ParsePin(opts.Pin)
	if err != nil {
		return nil, err
	}
	// Chain verification is done by verifyPinned, against the pinned
	// certificate instead of a CA pool; it is never skipped.
	tc.InsecureSkipVerify = true
	tc.RootCAs = nil
	tc.VerifyConnection = func(cs tls.ConnectionState) error {
		return verifyPinned(cs.PeerCertificates, pin, host)
	}
	return tc, nil
}

// Ping checks that the server answers.
func (c *Client) Ping(ctx context.Context) (api.Ping, error) {
	var out api.Ping
	err := c.do(ctx, http.MethodGet, api.PathPing, nil, &out)
	return out, err
}

// CA returns the public keys of the authority.
func (c *Client) CA(ctx context.Context) (api.CAInfo, error) {
	var out api.CAInfo
	err := c.do(ctx, http.MethodGet, api.PathCA, nil, &out)
	return out, err
}

// Login signs in and returns the session to pass to SignUser and Logout.
func (c *Client) Login(ctx context.Context, req api.LoginRequest) (api.LoginResponse, error) {
	var out api.LoginResponse
	err := c.do(ctx, http.MethodPost, api.PathLogin, req, &out)
	return out, err
}

// Logout ends a sign-in session.
func (c *Client) Logout(ctx context.Context, session string) error {
	return c.call(ctx, session, http.MethodPost, api.PathLogout, nil, nil)
}

// SignUser asks for a user certificate within a sign-in session.
func (c *Client) SignUser(ctx context.Context, session string, req api.SignUserRequest) (api.Cert, error) {
	var out api.Cert
	err := c.call(ctx, session, http.MethodPost, api.PathUserCert, req, &out)
	return out, err
}

// RegisterDevice exchanges a keyhelper token and the device's public key
// for a device identity.
func (c *Client) RegisterDevice(ctx context.Context, req api.RegisterDeviceRequest) (api.DeviceIdentity, error) {
	var out api.DeviceIdentity
	err := c.do(ctx, http.MethodPost, api.PathDeviceRegister, req, &out)
	return out, err
}

// do sends in (if not nil) as JSON and decodes a 2xx answer into out (if
// not nil). A non-2xx answer is returned as an *api.Error.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.call(ctx, "", method, path, in, out)
}

// call is do with an optional bearer session.
func (c *Client) call(ctx context.Context, session, method, path string, in, out any) error {
	req, err := c.newRequest(ctx, session, method, path, in)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.netError(err)
	}
	defer resp.Body.Close()
	c.noteDate(resp)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("client: empty answer from teleport-ca to %s %s", method, path)
		}
		return fmt.Errorf("client: bad answer from teleport-ca to %s %s: %w", method, path, err)
	}
	return nil
}

func (c *Client) newRequest(ctx context.Context, session, method, path string, in any) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("client: encoding %s request: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if session != "" {
		req.Header.Set("Authorization", api.BearerPrefix+session)
	}
	return req, nil
}

// netError explains a failed round trip. A pin mismatch is returned as is:
// the server was reached, and it is not the one the pin names.
func (c *Client) netError(err error) error {
	var pe *PinMismatchError
	if errors.As(err, &pe) {
		return pe
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("client: cannot reach teleport-ca at %s: %w", c.where, err)
}

// readError turns a non-2xx response into an *api.Error.
func readError(resp *http.Response) *api.Error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var e api.Error
	if err := json.Unmarshal(b, &e); err != nil || (e.Code == "" && e.Message == "") {
		return &api.Error{
			Code:    api.CodeInternal,
			Message: printable(fmt.Sprintf("teleport-ca answered %s%s", resp.Status, snippet(b))),
			Status:  resp.StatusCode,
		}
	}
	if e.Code == "" {
		e.Code = api.CodeInternal
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("teleport-ca answered %s (%s)", resp.Status, e.Code)
	}
	e.Message = printable(e.Message)
	e.Status = resp.StatusCode
	return &e
}

// printable replaces the control characters of a message from the server
// but newlines, so that printing it cannot drive the user's terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && r != '\n' {
			return ' '
		}
		return r
	}, s)
}

// snippet returns the first line of a non-JSON body, shortened, for an
// error message.
func snippet(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	if s == "" {
		return ""
	}
	const maxLen = 120
	if r := []rune(s); len(r) > maxLen {
		s = string(r[:maxLen]) + "..."
	}
	return ": " + s
}
