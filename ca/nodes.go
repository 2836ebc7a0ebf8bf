package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// Nodes join with a single-use node token: the node makes an ed25519 host
// key and a TLS key, and the CA returns a host certificate for the node's
// name, FQDN and addresses and an X.509 client certificate naming the node
// (URI SAN teleport://node/<name>). Labels come from the token. The client
// certificate authenticates the node's later calls (renewal, policy) as
// long as its node record exists and holds the same TLS key.

const (
	nodeCertLifetime = 30 * 24 * time.Hour
	nodeURIHost      = "node"
)

// nodeRecord is stored under "nodes/<name>".
type nodeRecord struct {
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels,omitempty"`
	Principals []string          `json:"principals"`
	// HostKey is the SHA256 fingerprint of the host key: renewal keeps it.
	HostKey string `json:"host_key"`
	// SPKI is the hex SHA-256 of the TLS key's SubjectPublicKeyInfo.
	SPKI     string    `json:"spki"`
	TokenID  string    `json:"token_id"`
	Joined   time.Time `json:"joined"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	Remote   string    `json:"remote,omitempty"`
	// SSHAddr is where proxies may dial the node's sshd directly.
	SSHAddr string `json:"ssh_addr,omitempty"`
}

func nodeKey(name string) string { return "nodes/" + name }

// ErrBadNode: the client certificate names no joined node. One error for
// every reason, so a caller learns nothing about other nodes.
var ErrBadNode = errors.New("node identity is not valid (the node was removed, or its TLS key changed); join again with a new token (caadm tokens add --role node)")

// ValidateNodeName checks a node's cluster name: a lower-case DNS name,
// not an IP address.
func ValidateNodeName(s string) error {
	if err := ValidateHostPrincipal(s); err != nil {
		return err
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return invalidf("node name %q is an IP address; give a name and pass the address with --address", s)
	}
	if strings.ToLower(s) != s || strings.HasSuffix(s, ".") {
		return invalidf("node name %q must be lower case without a trailing dot", s)
	}
	return nil
}

// JoinNode exchanges a node token for a node identity.
func (a *Authority) JoinNode(ctx context.Context, req api.NodeJoinRequest, remote string) (api.NodeIdentity, error) {
	if err := ValidateNodeName(req.Name); err != nil {
		return api.NodeIdentity{}, err
	}
	principals := []string{req.Name}
	for _, p := range append([]string{req.FQDN}, req.Addresses...) {
		if p == "" || slices.Contains(principals, p) {
			continue
		}
		if err := ValidateHostPrincipal(p); err != nil {
			return api.NodeIdentity{}, err
		}
		principals = append(principals, p)
	}
	if req.SSHAddr != "" {
		if _, err := proxyAddrHost("sshd address", req.SSHAddr); err != nil {
			return api.NodeIdentity{}, err
		}
	}
	hostPub, err := ParsePublicKey(req.HostPublicKey)
	if err != nil {
		return api.NodeIdentity{}, err
	}
	if hostPub.Type() != ssh.KeyAlgoED25519 {
		return api.NodeIdentity{}, invalidf("node host keys must be ed25519, not %s", hostPub.Type())
	}
	tlsPub, der, err := parseDevicePublicKey(req.TLSPublicKey)
	if err != nil {
		return api.NodeIdentity{}, err
	}
	if err := a.checkPrincipalsFree(ctx, "node/"+req.Name, principals); err != nil {
		a.auditNode(ctx, "node.join", req.Name, remote, false, err.Error())
		return api.NodeIdentity{}, err
	}
	tok, err := a.ConsumeToken(ctx, req.Token, TokenNode)
	if err != nil {
		a.auditNode(ctx, "node.join", req.Name, remote, false, "bad token")
		return api.NodeIdentity{}, err
	}
	now := a.now()
	rec := nodeRecord{
		Name: req.Name, Labels: tok.Labels, Principals: principals,
		HostKey: ssh.FingerprintSHA256(hostPub), SPKI: spkiHash(der), TokenID: tok.ID,
		Joined: now.UTC(), LastSeen: now.UTC(), Remote: remote, SSHAddr: req.SSHAddr,
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return api.NodeIdentity{}, err
	}
	// The record claims the name: of two joins under one name, one wins.
	if _, err := a.store.Create(ctx, nodeKey(rec.Name), b); errors.Is(err, store.ErrExists) {
		a.auditNode(ctx, "node.join", req.Name, remote, false, "name taken")
		return api.NodeIdentity{}, fmt.Errorf("ca: node %q is already joined; remove it first (caadm nodes rm %s): %w", req.Name, req.Name, ErrExists)
	} else if err != nil {
		return api.NodeIdentity{}, err
	}
	id, err := a.nodeIdentity(ctx, rec, hostPub, tlsPub, now)
	if err != nil {
		_ = a.store.Delete(ctx, nodeKey(rec.Name))
		return api.NodeIdentity{}, err
	}
	a.auditNode(ctx, "node.join", req.Name, remote, true, "")
	return id, nil
}

// checkPrincipalsFree refuses names another node or proxy holds: a node
// must not get a host certificate that lets it pose as another host. IP
// addresses may be shared (NAT, several sshd on one host). self names the
// caller's own record ("node/NAME" or "proxy/NAME"), which may keep its
// names; a new node whose own record exists is refused as already joined.
func (a *Authority) checkPrincipalsFree(ctx context.Context, self string, principals []string) error {
	held, err := a.heldNames(ctx)
	if err != nil {
		return err
	}
	if name, isNode := strings.CutPrefix(self, "node/"); isNode && held[name] == self {
		return fmt.Errorf("ca: node %q is already joined; remove it first (caadm nodes rm %s): %w", name, name, ErrExists)
	}
	for _, p := range principals {
		if _, err := netip.ParseAddr(p); err == nil {
			continue
		}
		if owner, ok := held[p]; ok && owner != self {
			kind, name, _ := strings.Cut(owner, "/")
			// Proxies may share a public name (proxy.example.com in front
			// of several, through DNS or a load balancer): they are
			// equally trusted. A node's names and a proxy's own cluster
			// name are never shared.
			if kind == "proxy" && strings.HasPrefix(self, "proxy/") && p != name && p != strings.TrimPrefix(self, "proxy/") {
				continue
			}
			return invalidf("the name %q belongs to %s %q; choose another name or remove that %s", p, kind, name, kind)
		}
	}
	return nil
}

// heldNames maps every non-IP principal of every node and proxy to its
// holder, "node/NAME" or "proxy/NAME".
func (a *Authority) heldNames(ctx context.Context) (map[string]string, error) {
	held := map[string]string{}
	items, _, err := a.store.List(ctx, "nodes/")
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		n, err := decodeItem[nodeRecord](&a.decoded, it)
		if err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		for _, p := range n.Principals {
			held[p] = "node/" + n.Name
		}
	}
	proxies, err := a.proxies(ctx)
	if err != nil {
		return nil, err
	}
	for _, pr := range proxies {
		for _, p := range pr.Principals {
			if _, taken := held[p]; !taken {
				held[p] = "proxy/" + pr.Name
			}
		}
	}
	return held, nil
}

// nodeIdentity signs the host and TLS client certificates of a node.
func (a *Authority) nodeIdentity(ctx context.Context, rec nodeRecord, hostPub ssh.PublicKey, tlsPub crypto.PublicKey, now time.Time) (api.NodeIdentity, error) {
	m, err := a.machineCerts(ctx, nodeURIHost, rec.Name, rec.Principals, hostPub, tlsPub, now)
	if err != nil {
		return api.NodeIdentity{}, err
	}
	return api.NodeIdentity{
		Name: rec.Name, Labels: rec.Labels, HostCertificate: m.host,
		TLSCertificate: m.tls, TLSExpires: m.tlsExpires, CA: a.Info(),
	}, nil
}

// machineCerts are a node's or proxy's host and TLS client certificates.
type machineCerts struct {
	host, tls  string
	tlsExpires time.Time
}

// machineCerts signs a host certificate for principals (the first is the
// name) and a TLS client certificate naming teleport://<kind>/<name>.
func (a *Authority) machineCerts(ctx context.Context, kind, name string, principals []string, hostPub ssh.PublicKey, tlsPub crypto.PublicKey, now time.Time) (machineCerts, error) {
	cert, err := a.IssueHostCert(ctx, HostCertRequest{
		Name: name, Principals: principals[1:], PublicKey: hostPub, Requester: kind + ":" + name,
	})
	if err != nil {
		return machineCerts{}, err
	}
	uri := &url.URL{Scheme: deviceURIScheme, Host: kind, Path: "/" + name}
	tlsPEM, notAfter, err := a.signClientCert(tlsPub, pkix.Name{CommonName: name, OrganizationalUnit: []string{kind}}, uri, now, nodeCertLifetime)
	if err != nil {
		return machineCerts{}, err
	}
	return machineCerts{host: trimNL(ssh.MarshalAuthorizedKey(cert)), tls: tlsPEM, tlsExpires: notAfter}, nil
}

// signClientCert issues an X.509 client certificate from the TLS root.
func (a *Authority) signClientCert(pub crypto.PublicKey, subject pkix.Name, uri *url.URL, now time.Time, life time.Duration) (string, time.Time, error) {
	serial, err := randomSerial(a.rand)
	if err != nil {
		return "", time.Time{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		URIs:         []*url.URL{uri},
		NotBefore:    now.Add(-5 * time.Minute),
		NotAfter:     now.Add(life),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(a.rand, tmpl, a.keys.tls.cert, pub, a.keys.tls.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("ca: issuing client certificate for %s: %w", uri, err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), tmpl.NotAfter.UTC(), nil
}

func (a *Authority) auditNode(ctx context.Context, typ, node, remote string, ok bool, reason string) {
	a.auditMachine(ctx, "node", typ, node, remote, ok, reason)
}

// auditMachine records a join or renewal of a node or proxy (kind).
func (a *Authority) auditMachine(ctx context.Context, kind, typ, name, remote string, ok bool, reason string) {
	ev := a.newEvent(typ, a.now())
	ev.Actor, ev.Success, ev.Remote = kind, ok, remote
	ev.Fields = map[string]string{}
	if ValidateNodeName(name) == nil {
		ev.Fields[kind] = name
	}
	if reason != "" {
		ev.Fields["reason"] = reason
	}
	if err := a.writeEvent(ctx, ev); err != nil {
		a.log.Error("audit write failed", "err", err, "type", typ)
	}
}

// authenticatedNode is a node whose client certificate checked out.
type authenticatedNode struct {
	rec nodeRecord
	rev int64
	pub crypto.PublicKey
}

// authenticateNode checks a verified client certificate against the node
// records.
func (a *Authority) authenticateNode(ctx context.Context, leaf *x509.Certificate) (*authenticatedNode, error) {
	rec, rev, err := loadMachine(a, ctx, leaf, nodeURIHost, nodeKey, ErrBadNode, func(r nodeRecord) string { return r.SPKI })
	if err != nil {
		return nil, err
	}
	return &authenticatedNode{rec: rec, rev: rev, pub: leaf.PublicKey}, nil
}

// loadMachine authenticates a node or proxy: the client certificate (URI
// teleport://<host>/<name>, CommonName <name>) must name a record under
// key(name) whose SPKI hash is the certificate's key. Every failure is
// bad, so a caller learns nothing about other machines.
func loadMachine[T any](a *Authority, ctx context.Context, leaf *x509.Certificate, host string, key func(string) string, bad error, spki func(T) string) (T, int64, error) {
	var zero T
	if leaf == nil || len(leaf.URIs) != 1 {
		return zero, 0, bad
	}
	u := leaf.URIs[0]
	name := strings.TrimPrefix(u.Path, "/")
	if u.Scheme != deviceURIScheme || u.Host != host || ValidateNodeName(name) != nil || leaf.Subject.CommonName != name {
		return zero, 0, bad
	}
	it, err := a.store.Get(ctx, key(name))
	if errors.Is(err, store.ErrNotFound) {
		return zero, 0, bad
	}
	if err != nil {
		return zero, 0, err
	}
	rec, err := decodeItem[T](&a.decoded, it)
	if err != nil {
		return zero, 0, fmt.Errorf("ca: damaged %s record: %w", host, err)
	}
	if spki(rec) != spkiHash(leaf.RawSubjectPublicKeyInfo) {
		return zero, 0, bad
	}
	return rec, it.Revision, nil
}

// RenewNode reissues an authenticated node's host and TLS certificates
// for the same keys and the principals recorded at join.
func (a *Authority) RenewNode(ctx context.Context, leaf *x509.Certificate, req api.NodeRenewRequest, remote string) (api.NodeIdentity, error) {
	n, err := a.authenticateNode(ctx, leaf)
	if err != nil {
		return api.NodeIdentity{}, err
	}
	hostPub, err := ParsePublicKey(req.HostPublicKey)
	if err != nil {
		return api.NodeIdentity{}, err
	}
	if ssh.FingerprintSHA256(hostPub) != n.rec.HostKey {
		a.auditNode(ctx, "node.renew", n.rec.Name, remote, false, "host key changed")
		return api.NodeIdentity{}, &PolicyError{Reason: "the host key differs from the one the node joined with; join again to change it"}
	}
	now := a.now()
	id, err := a.nodeIdentity(ctx, n.rec, hostPub, n.pub, now)
	if err != nil {
		return api.NodeIdentity{}, err
	}
	a.touchNode(ctx, n, remote, now)
	a.auditNode(ctx, "node.renew", n.rec.Name, remote, true, "")
	return id, nil
}

// touchNodeEvery is how stale a node's LastSeen may get before a call
// rewrites it. Nodes poll their policy every 25 s, and a write to nodes/
// wakes every node waiting on its policy: writing on every poll would
// make each poll cost a policy rebuild on every other node.
const touchNodeEvery = 5 * time.Minute

// touchNode records when and from where a node was last seen, at most
// once per touchNodeEvery unless its address changed; losing the race to
// another write is harmless.
func (a *Authority) touchNode(ctx context.Context, n *authenticatedNode, remote string, now time.Time) {
	if n.rec.Remote == remote && now.Sub(n.rec.LastSeen) < touchNodeEvery {
		return
	}
	rec := n.rec
	rec.LastSeen, rec.Remote = now.UTC(), remote
	if b, err := json.Marshal(rec); err == nil {
		_, _ = a.store.CompareAndSwap(ctx, nodeKey(rec.Name), n.rev, b)
	}
}

// Nodes lists the joined nodes.
func (a *Authority) Nodes(ctx context.Context) ([]api.Node, error) {
	items, _, err := a.store.List(ctx, "nodes/")
	if err != nil {
		return nil, err
	}
	out := []api.Node{}
	for _, it := range items {
		var n nodeRecord
		if err := json.Unmarshal(it.Value, &n); err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		out = append(out, api.Node{Name: n.Name, Labels: n.Labels, Principals: n.Principals, Joined: n.Joined, LastSeen: n.LastSeen, Remote: n.Remote})
	}
	return out, nil
}

// RemoveNode deletes a node: its client certificate stops working at once
// and its name is free for a new join.
func (a *Authority) RemoveNode(ctx context.Context, name, actor string) error {
	if err := ValidateNodeName(name); err != nil {
		return err
	}
	if err := a.store.Delete(ctx, nodeKey(name)); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("ca: node %q: %w", name, ErrNotFound)
	} else if err != nil {
		return err
	}
	return a.auditAdmin(ctx, "node.remove", "", actor, map[string]string{"node": name})
}
