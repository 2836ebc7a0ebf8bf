package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// The device endpoints authenticate the keyhelper daemon by the TLS client
// certificate in Options.ClientCert (see RegisterDevice for how it gets
// one).

// RenewDevice asks for a new certificate for the key of the device
// certificate the client presents.
func (c *Client) RenewDevice(ctx context.Context) (api.DeviceIdentity, error) {
	var out api.DeviceIdentity
	err := c.do(ctx, http.MethodPost, api.PathDeviceRenew, nil, &out)
	return out, err
}

// SignInState returns the sign-in state of the device's user as soon as
// it differs from have, or after wait (the server caps it at 25 s) when it
// does not. Options.Timeout must be longer than wait: it bounds the whole
// request.
func (c *Client) SignInState(ctx context.Context, have api.SignInState, wait time.Duration) (api.SignInState, error) {
	q := url.Values{}
	q.Set("signed_in", strconv.FormatBool(have.SignedIn))
	if !have.Expires.IsZero() {
		q.Set("expires", have.Expires.Format(time.RFC3339Nano))
	}
	q.Set("wait", max(wait, 0).String())
	var out api.SignInState
	err := c.do(ctx, http.MethodGet, withQuery(api.PathDeviceSignIn, q), nil, &out)
	return out, err
}

// DeviceCert asks for a user certificate for the device's user, within
// that user's live sign-in.
func (c *Client) DeviceCert(ctx context.Context, req api.DeviceCertRequest) (api.Cert, error) {
	var out api.Cert
	err := c.do(ctx, http.MethodPost, api.PathDeviceCert, req, &out)
	return out, err
}

// CloseIdleConnections closes the client's idle keep-alive connections,
// as when it is about to be replaced by one with another client
// certificate.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }
