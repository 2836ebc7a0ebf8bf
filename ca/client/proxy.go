package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// JoinProxy exchanges a proxy token for a proxy identity.
func (c *Client) JoinProxy(ctx context.Context, req api.ProxyJoinRequest) (api.ProxyIdentity, error) {
	var out api.ProxyIdentity
	err := c.do(ctx, http.MethodPost, api.PathProxyJoin, req, &out)
	return out, err
}

// RenewProxy renews the calling proxy's certificates (and re-registers
// its addresses).
func (c *Client) RenewProxy(ctx context.Context, req api.ProxyRenewRequest) (api.ProxyIdentity, error) {
	var out api.ProxyIdentity
	err := c.do(ctx, http.MethodPost, api.PathProxyRenew, req, &out)
	return out, err
}

// ProxyPolicy returns the login policy as soon as its hash differs from
// have, or after wait.
func (c *Client) ProxyPolicy(ctx context.Context, have string, wait time.Duration) (api.ProxyPolicy, error) {
	q := url.Values{}
	setNonEmpty(q, "hash", have)
	q.Set("wait", max(wait, 0).String())
	var out api.ProxyPolicy
	err := c.do(ctx, http.MethodGet, withQuery(api.PathProxyPolicy, q), nil, &out)
	return out, err
}

// SessionCert asks for a session-CA certificate (proxy identity only).
func (c *Client) SessionCert(ctx context.Context, req api.SessionCertRequest) (api.Cert, error) {
	var out api.Cert
	err := c.do(ctx, http.MethodPost, api.PathProxySessionCert, req, &out)
	return out, err
}

// TargetCert asks for a host certificate for a node's names (proxy
// identity only).
func (c *Client) TargetCert(ctx context.Context, req api.TargetCertRequest) (api.Cert, error) {
	var out api.Cert
	err := c.do(ctx, http.MethodPost, api.PathProxyTargetCert, req, &out)
	return out, err
}

// PutSessions replaces the calling proxy's list of active sessions.
func (c *Client) PutSessions(ctx context.Context, req api.ActiveSessions) error {
	return c.do(ctx, http.MethodPut, api.PathProxySessions, req, nil)
}

// AllSessions lists the sessions running through every proxy (proxy
// identity only).
func (c *Client) AllSessions(ctx context.Context) ([]api.Session, error) {
	var out []api.Session
	err := c.do(ctx, http.MethodGet, api.PathProxySessions, nil, &out)
	return out, err
}

// ProxyAudit reports a batch of audit events from a proxy.
func (c *Client) ProxyAudit(ctx context.Context, evs []api.ProxyEvent) error {
	return c.do(ctx, http.MethodPost, api.PathProxyAudit, evs, nil)
}

// UploadRecording sends a finished asciicast recording. Only ctx bounds
// it (a recording may be large); the CA answers success for an id it
// already has.
func (c *Client) UploadRecording(ctx context.Context, id string, body io.Reader, size int64) error {
	p, err := segment("recording id", api.PathProxyRecording, id, "")
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+p, body)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/x-asciicast")
	req.Header.Set("Accept", "application/json")
	return c.stream(req, io.Discard)
}

// Proxies lists the joined proxies (admin).
func (c *Client) Proxies(ctx context.Context) ([]api.Proxy, error) {
	var out []api.Proxy
	err := c.do(ctx, http.MethodGet, api.PathAdminProxies, nil, &out)
	return out, err
}

// RemoveProxy removes a proxy (admin).
func (c *Client) RemoveProxy(ctx context.Context, name string) error {
	p, err := segment("proxy name", api.PathAdminProxy, name, "")
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p, nil, nil)
}

// Sessions lists the sessions running through the proxies (admin).
func (c *Client) Sessions(ctx context.Context) ([]api.Session, error) {
	var out []api.Session
	err := c.do(ctx, http.MethodGet, api.PathAdminSessions, nil, &out)
	return out, err
}

// Recordings lists the stored recordings (admin).
func (c *Client) Recordings(ctx context.Context) ([]api.Recording, error) {
	var out []api.Recording
	err := c.do(ctx, http.MethodGet, api.PathAdminRecording, nil, &out)
	return out, err
}

// ExportRecording copies a stored recording's asciicast file to w
// (admin). Only ctx bounds it.
func (c *Client) ExportRecording(ctx context.Context, id string, w io.Writer) error {
	p, err := segment("recording id", api.PathAdminRecording+"/", id, "")
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+p, nil)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return c.stream(req, w)
}

// stream sends req without the client's overall timeout and copies a 2xx
// body to w.
func (c *Client) stream(req *http.Request, w io.Writer) error {
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return c.netError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readError(resp)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("client: reading %s from %s: %w", req.URL.Path, c.where, err)
	}
	return nil
}
