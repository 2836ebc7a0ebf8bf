package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// AuditFilter selects audit events; zero fields do not filter.
type AuditFilter struct {
	User  string
	Type  string    // e.g. "user.login"
	Since time.Time // events at or after
	Limit int       // at most this many; zero means the server default
}

// CertFilter selects issued certificates; zero fields do not filter.
type CertFilter struct {
	User   string
	Serial string // decimal
}

// Users lists the accounts.
func (c *Client) Users(ctx context.Context) ([]api.User, error) {
	var out []api.User
	err := c.do(ctx, http.MethodGet, api.PathAdminUsers, nil, &out)
	return out, err
}

// AddUser creates an account.
func (c *Client) AddUser(ctx context.Context, req api.AddUserRequest) (api.AddUserResponse, error) {
	var out api.AddUserResponse
	err := c.do(ctx, http.MethodPost, api.PathAdminUsers, req, &out)
	return out, err
}

// RemoveUser deletes an account.
func (c *Client) RemoveUser(ctx context.Context, name string) error {
	p, err := segment("user name", api.PathAdminUser, name, "")
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p, nil, nil)
}

// LockUser locks an account.
func (c *Client) LockUser(ctx context.Context, name string, req api.LockRequest) error {
	p, err := segment("user name", api.PathAdminUser, name, "/lock")
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, p, req, nil)
}

// UnlockUser unlocks an account and clears its failed sign-ins.
func (c *Client) UnlockUser(ctx context.Context, name string) error {
	p, err := segment("user name", api.PathAdminUser, name, "/unlock")
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, p, nil, nil)
}

// UpdateUser changes a user's roles or personal logins.
func (c *Client) UpdateUser(ctx context.Context, name string, req api.UpdateUserRequest) (api.User, error) {
	var out api.User
	p, err := segment("user name", api.PathAdminUser, name, "")
	if err != nil {
		return out, err
	}
	err = c.do(ctx, http.MethodPatch, p, req, &out)
	return out, err
}

// ResetUser replaces a user's credentials; see api.ResetUserRequest.
func (c *Client) ResetUser(ctx context.Context, name string, req api.ResetUserRequest) (api.AddUserResponse, error) {
	var out api.AddUserResponse
	p, err := segment("user name", api.PathAdminUser, name, "/reset")
	if err != nil {
		return out, err
	}
	err = c.do(ctx, http.MethodPost, p, req, &out)
	return out, err
}

// Roles lists the roles.
func (c *Client) Roles(ctx context.Context) ([]api.Role, error) {
	var out []api.Role
	err := c.do(ctx, http.MethodGet, api.PathAdminRoles, nil, &out)
	return out, err
}

// AddRole creates a role and returns it as stored.
func (c *Client) AddRole(ctx context.Context, role api.Role) (api.Role, error) {
	var out api.Role
	err := c.do(ctx, http.MethodPost, api.PathAdminRoles, role, &out)
	return out, err
}

// RemoveRole deletes a role.
func (c *Client) RemoveRole(ctx context.Context, name string) error {
	p, err := segment("role name", api.PathAdminRole, name, "")
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p, nil, nil)
}

// Tokens lists the live tokens.
func (c *Client) Tokens(ctx context.Context) ([]api.Token, error) {
	var out []api.Token
	err := c.do(ctx, http.MethodGet, api.PathAdminTokens, nil, &out)
	return out, err
}

// AddToken creates a token; the response holds its secret, shown only once.
func (c *Client) AddToken(ctx context.Context, req api.AddTokenRequest) (api.AddTokenResponse, error) {
	var out api.AddTokenResponse
	err := c.do(ctx, http.MethodPost, api.PathAdminTokens, req, &out)
	return out, err
}

// RemoveToken deletes a token by ID.
func (c *Client) RemoveToken(ctx context.Context, id string) error {
	p, err := segment("token ID", api.PathAdminToken, id, "")
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p, nil, nil)
}

// Sign issues a user or host certificate by hand.
func (c *Client) Sign(ctx context.Context, req api.AdminSignRequest) (api.Cert, error) {
	var out api.Cert
	err := c.do(ctx, http.MethodPost, api.PathAdminSign, req, &out)
	return out, err
}

// AdminCA returns the public keys of the authority.
func (c *Client) AdminCA(ctx context.Context) (api.CAInfo, error) {
	var out api.CAInfo
	err := c.do(ctx, http.MethodGet, api.PathAdminCA, nil, &out)
	return out, err
}

// Audit returns the audit events f selects.
func (c *Client) Audit(ctx context.Context, f AuditFilter) ([]api.AuditEvent, error) {
	q := url.Values{}
	setNonEmpty(q, "user", f.User)
	setNonEmpty(q, "type", f.Type)
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out []api.AuditEvent
	err := c.do(ctx, http.MethodGet, withQuery(api.PathAdminAudit, q), nil, &out)
	return out, err
}

// Certs returns the records of the issued certificates f selects.
func (c *Client) Certs(ctx context.Context, f CertFilter) ([]api.IssuedCert, error) {
	q := url.Values{}
	setNonEmpty(q, "user", f.User)
	setNonEmpty(q, "serial", f.Serial)
	var out []api.IssuedCert
	err := c.do(ctx, http.MethodGet, withQuery(api.PathAdminCerts, q), nil, &out)
	return out, err
}

// segment returns prefix + escaped value + suffix, refusing values that
// would not stay one path segment.
func segment(what, prefix, value, suffix string) (string, error) {
	switch value {
	case "":
		return "", fmt.Errorf("client: empty %s", what)
	case ".", "..":
		return "", fmt.Errorf("client: bad %s %q", what, value)
	}
	return prefix + url.PathEscape(value) + suffix, nil
}

func setNonEmpty(q url.Values, key, value string) {
	if value != "" {
		q.Set(key, value)
	}
}

func withQuery(path string, q url.Values) string {
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}

// Devices lists registered keyhelper devices, of one user or all.
func (c *Client) Devices(ctx context.Context, user string) ([]api.Device, error) {
	var out []api.Device
	p := api.PathAdminDevices
	if user != "" {
		p += "?user=" + url.QueryEscape(user)
	}
	err := c.do(ctx, http.MethodGet, p, nil, &out)
	return out, err
}

// RevokeDevice revokes a device: its identity stops working at once.
func (c *Client) RevokeDevice(ctx context.Context, user, id string) error {
	p, err := segment("user name", api.PathAdminDevice, user, "/")
	if err != nil {
		return err
	}
	p2, err := segment("device id", p, id, "/revoke")
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, p2, nil, nil)
}

// Backup fetches a consistent snapshot of the store (admin); withKeys adds
// the CA key files of a CA on bbolt.
func (c *Client) Backup(ctx context.Context, withKeys bool) (*api.Backup, error) {
	path := api.PathAdminBackup
	if withKeys {
		path += "?keys=1"
	}
	var out api.Backup
	if err := c.do(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
