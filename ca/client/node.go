package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// JoinNode exchanges a node token for a node identity. It needs no client
// certificate; the later node calls present the one it returns.
func (c *Client) JoinNode(ctx context.Context, req api.NodeJoinRequest) (api.NodeIdentity, error) {
	var out api.NodeIdentity
	err := c.do(ctx, http.MethodPost, api.PathNodeJoin, req, &out)
	return out, err
}

// RenewNode asks for new host and TLS certificates for the node whose
// client certificate the client presents.
func (c *Client) RenewNode(ctx context.Context, req api.NodeRenewRequest) (api.NodeIdentity, error) {
	var out api.NodeIdentity
	err := c.do(ctx, http.MethodPost, api.PathNodeRenew, req, &out)
	return out, err
}

// NodePolicy returns the node's policy as soon as its hash differs from
// have, or after wait (capped at 25 s by the server) when it does not.
// Options.Timeout must be longer than wait.
func (c *Client) NodePolicy(ctx context.Context, have string, wait time.Duration) (api.NodePolicy, error) {
	q := url.Values{}
	setNonEmpty(q, "hash", have)
	q.Set("wait", max(wait, 0).String())
	var out api.NodePolicy
	err := c.do(ctx, http.MethodGet, withQuery(api.PathNodePolicy, q), nil, &out)
	return out, err
}

// Nodes lists the joined nodes (admin).
func (c *Client) Nodes(ctx context.Context) ([]api.Node, error) {
	var out []api.Node
	err := c.do(ctx, http.MethodGet, api.PathAdminNodes, nil, &out)
	return out, err
}

// RemoveNode removes a node (admin): its identity stops working at once.
func (c *Client) RemoveNode(ctx context.Context, name string) error {
	p, err := segment("node name", api.PathAdminNode, name, "")
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodDelete, p, nil, nil)
}

// Revoke revokes an issued certificate by serial (admin).
func (c *Client) Revoke(ctx context.Context, req api.RevokeRequest) (api.RevokedCert, error) {
	var out api.RevokedCert
	err := c.do(ctx, http.MethodPost, api.PathAdminRevoke, req, &out)
	return out, err
}

// Revoked lists the revoked certificates that have not expired (admin).
func (c *Client) Revoked(ctx context.Context) ([]api.RevokedCert, error) {
	var out []api.RevokedCert
	err := c.do(ctx, http.MethodGet, api.PathAdminRevoked, nil, &out)
	return out, err
}

// NodeAudit reports login denials made on the node (node identity only).
func (c *Client) NodeAudit(ctx context.Context, evs []api.NodeDenial) error {
	return c.do(ctx, http.MethodPost, api.PathNodeAudit, evs, nil)
}
