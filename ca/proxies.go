package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// Proxies join with a single-use proxy token, like nodes: the proxy makes
// an ed25519 host key and a TLS key; the CA returns a host certificate for
// the proxy's name and the hosts of its public and tunnel addresses, and a
// client certificate naming the proxy (URI teleport://proxy/<name>). With
// that identity, and only with it, a proxy may follow the login policy,
// ask for session-CA certificates and for host certificates of the nodes
// it terminates connections to, upload recordings and report sessions.

const proxyURIHost = "proxy"

// proxyRecord is stored under "proxies/<name>".
type proxyRecord struct {
	Name       string    `json:"name"`
	PublicAddr string    `json:"public_addr"`
	TunnelAddr string    `json:"tunnel_addr"`
	Principals []string  `json:"principals"`
	HostKey    string    `json:"host_key"`
	SPKI       string    `json:"spki"`
	TokenID    string    `json:"token_id"`
	Joined     time.Time `json:"joined"`
	LastSeen   time.Time `json:"last_seen,omitzero"`
	Remote     string    `json:"remote,omitempty"`
	// SessionSigner is the proxy's session-signing key (authorized_keys
	// form), which nodes trust beside the session CA in mode proxy.
	SessionSigner string `json:"session_signer,omitempty"`
}

func proxyKey(name string) string { return "proxies/" + name }

func (p proxyRecord) info() api.ProxyInfo {
	return api.ProxyInfo{Name: p.Name, PublicAddr: p.PublicAddr, TunnelAddr: p.TunnelAddr, SessionSigner: p.SessionSigner}
}

// ErrBadProxy: the client certificate names no joined proxy.
var ErrBadProxy = errors.New("proxy identity is not valid (the proxy was removed, or its TLS key changed); join again with a new token (caadm tokens add --role proxy)")

// proxyAddrHost checks a "host:port" address and returns its host.
func proxyAddrHost(what, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return "", invalidf("%s %q is not host:port", what, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return "", invalidf("%s %q: the port must be a number from 1 to 65535", what, addr)
	}
	if err := ValidateHostPrincipal(host); err != nil {
		return "", invalidf("%s %q: %v", what, addr, err)
	}
	return host, nil
}

// proxyPrincipals are the names in a proxy's host certificate.
func proxyPrincipals(name, publicAddr, tunnelAddr string) ([]string, error) {
	principals := []string{name}
	for _, f := range []struct{ what, addr string }{{"public address", publicAddr}, {"tunnel address", tunnelAddr}} {
		h, err := proxyAddrHost(f.what, f.addr)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(principals, h) {
			principals = append(principals, h)
		}
	}
	return principals, nil
}

// JoinProxy exchanges a proxy token for a proxy identity.
func (a *Authority) JoinProxy(ctx context.Context, req api.ProxyJoinRequest, remote string) (api.ProxyIdentity, error) {
	if err := ValidateNodeName(req.Name); err != nil {
		return api.ProxyIdentity{}, err
	}
	principals, err := proxyPrincipals(req.Name, req.PublicAddr, req.TunnelAddr)
	if err != nil {
		return api.ProxyIdentity{}, err
	}
	hostPub, err := ParsePublicKey(req.HostPublicKey)
	if err != nil {
		return api.ProxyIdentity{}, err
	}
	if hostPub.Type() != ssh.KeyAlgoED25519 {
		return api.ProxyIdentity{}, invalidf("proxy host keys must be ed25519, not %s", hostPub.Type())
	}
	tlsPub, der, err := parseDevicePublicKey(req.TLSPublicKey)
	if err != nil {
		return api.ProxyIdentity{}, err
	}
	if err := a.checkPrincipalsFree(ctx, "proxy/"+req.Name, principals); err != nil {
		a.auditMachine(ctx, "proxy", "proxy.join", req.Name, remote, false, err.Error())
		return api.ProxyIdentity{}, err
	}
	tok, err := a.ConsumeToken(ctx, req.Token, TokenProxy)
	if err != nil {
		a.auditMachine(ctx, "proxy", "proxy.join", req.Name, remote, false, "bad token")
		return api.ProxyIdentity{}, err
	}
	now := a.now()
	rec := proxyRecord{
		Name: req.Name, PublicAddr: req.PublicAddr, TunnelAddr: req.TunnelAddr, Principals: principals,
		HostKey: ssh.FingerprintSHA256(hostPub), SPKI: spkiHash(der), TokenID: tok.ID,
		Joined: now.UTC(), LastSeen: now.UTC(), Remote: remote,
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return api.ProxyIdentity{}, err
	}
	if _, err := a.store.Create(ctx, proxyKey(rec.Name), b); errors.Is(err, store.ErrExists) {
		a.auditMachine(ctx, "proxy", "proxy.join", req.Name, remote, false, "name taken")
		return api.ProxyIdentity{}, fmt.Errorf("ca: proxy %q is already joined; remove it first (caadm proxies rm %s): %w", req.Name, req.Name, ErrExists)
	} else if err != nil {
		return api.ProxyIdentity{}, err
	}
	id, err := a.proxyIdentity(ctx, rec, hostPub, tlsPub, now)
	if err != nil {
		_ = a.store.Delete(ctx, proxyKey(rec.Name))
		return api.ProxyIdentity{}, err
	}
	a.auditMachine(ctx, "proxy", "proxy.join", req.Name, remote, true, "")
	return id, nil
}

// proxyIdentity signs a proxy's host and TLS client certificates.
func (a *Authority) proxyIdentity(ctx context.Context, rec proxyRecord, hostPub ssh.PublicKey, tlsPub crypto.PublicKey, now time.Time) (api.ProxyIdentity, error) {
	m, err := a.machineCerts(ctx, proxyURIHost, rec.Name, rec.Principals, hostPub, tlsPub, now)
	if err != nil {
		return api.ProxyIdentity{}, err
	}
	return api.ProxyIdentity{
		Name: rec.Name, HostCertificate: m.host,
		TLSCertificate: m.tls, TLSExpires: m.tlsExpires, CA: a.Info(),
	}, nil
}

// authenticatedProxy is a proxy whose client certificate checked out.
type authenticatedProxy struct {
	rec proxyRecord
	rev int64
	pub crypto.PublicKey
}

// authenticateProxy checks a verified client certificate against the
// proxy records.
func (a *Authority) authenticateProxy(ctx context.Context, leaf *x509.Certificate) (*authenticatedProxy, error) {
	rec, rev, err := loadMachine(a, ctx, leaf, proxyURIHost, proxyKey, ErrBadProxy, func(r proxyRecord) string { return r.SPKI })
	if err != nil {
		return nil, err
	}
	return &authenticatedProxy{rec: rec, rev: rev, pub: leaf.PublicKey}, nil
}

// RenewProxy reissues a proxy's certificates for the same keys, taking
// new addresses when given.
func (a *Authority) RenewProxy(ctx context.Context, leaf *x509.Certificate, req api.ProxyRenewRequest, remote string) (api.ProxyIdentity, error) {
	p, err := a.authenticateProxy(ctx, leaf)
	if err != nil {
		return api.ProxyIdentity{}, err
	}
	hostPub, err := ParsePublicKey(req.HostPublicKey)
	if err != nil {
		return api.ProxyIdentity{}, err
	}
	if ssh.FingerprintSHA256(hostPub) != p.rec.HostKey {
		a.auditMachine(ctx, "proxy", "proxy.renew", p.rec.Name, remote, false, "host key changed")
		return api.ProxyIdentity{}, &PolicyError{Reason: "the host key differs from the one the proxy joined with; join again to change it"}
	}
	rec := p.rec
	if req.PublicAddr != "" {
		rec.PublicAddr = req.PublicAddr
	}
	if req.TunnelAddr != "" {
		rec.TunnelAddr = req.TunnelAddr
	}
	if rec.Principals, err = proxyPrincipals(rec.Name, rec.PublicAddr, rec.TunnelAddr); err != nil {
		return api.ProxyIdentity{}, err
	}
	now := a.now()
	if !slices.Equal(rec.Principals, p.rec.Principals) {
		if err := a.checkPrincipalsFree(ctx, "proxy/"+rec.Name, rec.Principals); err != nil {
			return api.ProxyIdentity{}, err
		}
	}
	if req.SessionSigner != "" {
		if rec.SessionSigner, err = a.checkSessionSigner(ctx, rec.Name, req.SessionSigner, hostPub); err != nil {
			a.auditMachine(ctx, "proxy", "proxy.renew", p.rec.Name, remote, false, err.Error())
			return api.ProxyIdentity{}, err
		}
	}
	rec.LastSeen, rec.Remote = now.UTC(), remote
	b, err := json.Marshal(rec)
	if err != nil {
		return api.ProxyIdentity{}, err
	}
	if _, err := a.store.CompareAndSwap(ctx, proxyKey(rec.Name), p.rev, b); err != nil {
		return api.ProxyIdentity{}, fmt.Errorf("ca: updating proxy %s: %w", rec.Name, err)
	}
	id, err := a.proxyIdentity(ctx, rec, hostPub, p.pub, now)
	if err != nil {
		return api.ProxyIdentity{}, err
	}
	a.auditMachine(ctx, "proxy", "proxy.renew", rec.Name, remote, true, "")
	return id, nil
}

// checkSessionSigner validates a proxy's session-signing key: one plain
// ed25519 key that is none of the CA's keys, not the proxy's host key and
// not another proxy's signer (each signer names one proxy, so removing
// the proxy removes the trust). It returns the key re-marshalled, so no
// comment or option reaches the nodes' trusted-keys file.
func (a *Authority) checkSessionSigner(ctx context.Context, name, text string, hostPub ssh.PublicKey) (string, error) {
	k, err := ParsePublicKey(text)
	if err != nil {
		return "", err
	}
	if k.Type() != ssh.KeyAlgoED25519 {
		return "", invalidf("a proxy's session signer must be an ed25519 key, not %s", k.Type())
	}
	for _, other := range []ssh.PublicKey{a.keys.user.PublicKey(), a.keys.host.PublicKey(), a.keys.session.PublicKey(), hostPub} {
		if keysEqualCA(k, other) {
			return "", invalidf("the session signer must be a key of its own, not a CA key or the proxy's host key")
		}
	}
	out := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	recs, err := a.proxies(ctx)
	if err != nil {
		return "", err
	}
	for _, r := range recs {
		if r.Name != name && r.SessionSigner == out {
			return "", invalidf("this session signer is registered to another proxy")
		}
	}
	return out, nil
}

func keysEqualCA(a, b ssh.PublicKey) bool {
	return a != nil && b != nil && string(a.Marshal()) == string(b.Marshal())
}

// proxies lists the proxy records, sorted by name.
func (a *Authority) proxies(ctx context.Context) ([]proxyRecord, error) {
	items, _, err := a.store.List(ctx, "proxies/")
	if err != nil {
		return nil, err
	}
	out := make([]proxyRecord, 0, len(items))
	for _, it := range items {
		p, err := decodeItem[proxyRecord](&a.decoded, it)
		if err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Proxies lists the joined proxies (admin).
func (a *Authority) Proxies(ctx context.Context) ([]api.Proxy, error) {
	recs, err := a.proxies(ctx)
	if err != nil {
		return nil, err
	}
	out := []api.Proxy{}
	for _, p := range recs {
		out = append(out, api.Proxy{ProxyInfo: p.info(), Joined: p.Joined, LastSeen: p.LastSeen, Remote: p.Remote})
	}
	return out, nil
}

// RemoveProxy deletes a proxy: its identity stops working at once, and
// nodes drop their tunnels to it at their next policy update.
func (a *Authority) RemoveProxy(ctx context.Context, name, actor string) error {
	if err := ValidateNodeName(name); err != nil {
		return err
	}
	if err := a.store.Delete(ctx, proxyKey(name)); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("ca: proxy %q: %w", name, ErrNotFound)
	} else if err != nil {
		return err
	}
	_ = a.store.Delete(ctx, sessionsKey(name))
	return a.auditAdmin(ctx, "proxy.remove", "", actor, map[string]string{"proxy": name})
}

// getNode reads one node record.
func (a *Authority) getNode(ctx context.Context, name string) (nodeRecord, error) {
	if err := ValidateNodeName(name); err != nil {
		return nodeRecord{}, err
	}
	it, err := a.store.Get(ctx, nodeKey(name))
	if errors.Is(err, store.ErrNotFound) {
		return nodeRecord{}, fmt.Errorf("ca: node %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nodeRecord{}, err
	}
	return decodeItem[nodeRecord](&a.decoded, it)
}

// userMayLogin checks that the user exists, is not locked and has a role
// giving login on a node with these labels, and returns the forwarding
// extensions those roles permit.
func (a *Authority) userMayLogin(ctx context.Context, user, login string, labels map[string]string) ([]string, error) {
	u, _, err := a.getUser(ctx, user)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, &PolicyError{Reason: fmt.Sprintf("user %q does not exist", user)}
		}
		return nil, err
	}
	if u.Pending {
		return nil, &PolicyError{Reason: fmt.Sprintf("user %q has not finished enrollment", user)}
	}
	if u.locked(a.now()) {
		return nil, &PolicyError{Reason: fmt.Sprintf("user %q is locked", user)}
	}
	roles, err := a.rolesByName(ctx)
	if err != nil {
		return nil, err
	}
	allowed := false
	ext := map[string]bool{}
	for _, rn := range u.Roles {
		r, ok := roles[rn]
		if !ok || !matchLabels(r.NodeLabels, labels) {
			continue
		}
		for _, l := range r.Logins {
			if l == login || (l == UserLoginPlaceholder && login == u.Name) {
				allowed = true
				ext[extAgent] = ext[extAgent] || r.PermitAgentForwarding
				ext[extPortForwarding] = ext[extPortForwarding] || r.PermitPortForwarding
				ext[extX11] = ext[extX11] || r.PermitX11Forwarding
			}
		}
	}
	if allowed {
		var out []string
		for _, e := range []string{extAgent, extPortForwarding, extX11} {
			if ext[e] {
				out = append(out, e)
			}
		}
		return out, nil
	}
	return nil, &PolicyError{Reason: fmt.Sprintf("no role of user %q allows login %q on this node", user, login)}
}

// ProxySessionCert issues the session-CA certificate a proxy logs in to a
// node with. The CA checks the user's policy itself: a proxy can only get
// what the policy gives the user it names.
func (a *Authority) ProxySessionCert(ctx context.Context, p *authenticatedProxy, req api.SessionCertRequest) (*ssh.Certificate, error) {
	node, err := a.getNode(ctx, req.Node)
	if err != nil {
		return nil, err
	}
	if err := a.logins.Validate(req.Login); err != nil {
		return nil, err
	}
	ext, err := a.userMayLogin(ctx, req.User, req.Login, node.Labels)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKey(req.PublicKey)
	if err != nil {
		return nil, err
	}
	for _, s := range req.SourceAddress {
		if _, err := netip.ParsePrefix(s); err != nil {
			if _, err := netip.ParseAddr(s); err != nil {
				return nil, invalidf("source address %q is not an address or CIDR", s)
			}
		}
	}
	return a.IssueSessionCert(ctx, SessionCertRequest{
		User: req.User, Login: req.Login, Proxy: p.rec.Name, SessionID: req.SessionID,
		PublicKey: pub, TTL: time.Duration(req.TTL), SourceAddress: req.SourceAddress, Extensions: ext,
	})
}

// maxTargetCertTTL caps the host certificates a proxy presents for nodes.
const maxTargetCertTTL = 12 * time.Hour

// ProxyTargetCert issues a host certificate for a node's names to the
// proxy, which presents it while it terminates (and records) connections
// to that node.
func (a *Authority) ProxyTargetCert(ctx context.Context, p *authenticatedProxy, req api.TargetCertRequest) (*ssh.Certificate, error) {
	node, err := a.getNode(ctx, req.Node)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKey(req.PublicKey)
	if err != nil {
		return nil, err
	}
	ttl := time.Duration(req.TTL)
	if ttl <= 0 || ttl > maxTargetCertTTL {
		ttl = maxTargetCertTTL
	}
	return a.IssueHostCert(ctx, HostCertRequest{
		Name: node.Name, Principals: node.Principals[1:], PublicKey: pub, TTL: ttl,
		Requester: "proxy:" + p.rec.Name,
	})
}
