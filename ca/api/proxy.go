package api

import (
	"slices"
	"time"
)

// Proxy endpoints. A proxy joins with a proxy token like a node; its later
// calls present the TLS client certificate it got (URI
// teleport://proxy/<name>).
const (
	PathProxyJoin  = Version + "/proxies/join"  // POST ProxyJoinRequest: ProxyIdentity
	PathProxyRenew = Version + "/proxies/renew" // POST ProxyRenewRequest, client certificate: ProxyIdentity
	// PathProxyPolicy answers at once when the proxy's copy (?hash=) is
	// out of date, otherwise when something changes or after ?wait=.
	PathProxyPolicy      = Version + "/proxies/policy"       // GET, client certificate: ProxyPolicy
	PathProxySessionCert = Version + "/proxies/session-cert" // POST SessionCertRequest, client certificate: Cert
	PathProxyTargetCert  = Version + "/proxies/target-cert"  // POST TargetCertRequest, client certificate: Cert
	PathProxySessions    = Version + "/proxies/sessions"     // PUT ActiveSessions: empty; GET: []Session of every proxy (client certificate)
	PathProxyAudit       = Version + "/proxies/audit"        // POST []ProxyEvent, client certificate: empty
	// PathProxyRecording + {id}: PUT the asciicast body (idempotent).
	PathProxyRecording = Version + "/proxies/recordings/"

	PathAdminProxies   = Version + "/admin/proxies"    // GET: []Proxy
	PathAdminProxy     = Version + "/admin/proxies/"   // + {name}: DELETE
	PathAdminSessions  = Version + "/admin/sessions"   // GET: []Session
	PathAdminRecording = Version + "/admin/recordings" // GET: []Recording; + /{id}: GET the asciicast
)

// ProxyJoinRequest joins a proxy with a single-use proxy token.
type ProxyJoinRequest struct {
	Token string `json:"token"`
	// Name is the proxy's cluster name (a DNS name).
	Name string `json:"name"`
	// PublicAddr is the "host:port" users reach the SSH listener at; its
	// host becomes a principal of the proxy's host certificate.
	PublicAddr string `json:"public_addr"`
	// TunnelAddr is the "host:port" nodes dial for their reverse tunnels;
	// its host becomes a principal too.
	TunnelAddr string `json:"tunnel_addr"`
	// HostPublicKey in authorized_keys form (ed25519).
	HostPublicKey string `json:"host_public_key"`
	// TLSPublicKey is a PEM "PUBLIC KEY" block, ECDSA P-256 or ed25519.
	TLSPublicKey string `json:"tls_public_key"`
}

// ProxyRenewRequest renews a proxy's certificates for the same keys; the
// addresses may change (a proxy re-registers its public address at start).
type ProxyRenewRequest struct {
	HostPublicKey string `json:"host_public_key"`
	PublicAddr    string `json:"public_addr,omitempty"`
	TunnelAddr    string `json:"tunnel_addr,omitempty"`
	// SessionSigner registers (or replaces) the proxy's session-signing
	// public key (ed25519, authorized_keys form); empty keeps the one
	// registered.
	SessionSigner string `json:"session_signer,omitempty"`
}

// ProxyIdentity is what a proxy holds.
type ProxyIdentity struct {
	Name            string    `json:"name"`
	HostCertificate string    `json:"host_certificate"` // authorized_keys form
	TLSCertificate  string    `json:"tls_certificate"`  // PEM
	TLSExpires      time.Time `json:"tls_expires"`
	CA              CAInfo    `json:"ca"`
}

// ProxyInfo is a registered proxy as clients and nodes see it.
type ProxyInfo struct {
	Name       string `json:"name"`
	PublicAddr string `json:"public_addr"`
	TunnelAddr string `json:"tunnel_addr"`
	// SessionSigner is the proxy's session-signing public key
	// (authorized_keys form): in recording mode proxy nodes trust it beside
	// the session CA, so that the proxy can sign its own session
	// certificates while the CA is unreachable. Empty until the proxy
	// registers one.
	SessionSigner string `json:"session_signer,omitempty"`
}

// Proxy is the admin view of a joined proxy.
type Proxy struct {
	ProxyInfo
	Joined   time.Time `json:"joined"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	Remote   string    `json:"remote,omitempty"`
}

// ProxyPolicy is everything a proxy needs to decide logins without asking
// the CA per connection: users and their roles, the roles, the nodes and
// their labels, revoked serials and the CA keys.
type ProxyPolicy struct {
	Hash          string          `json:"hash"`
	Generated     time.Time       `json:"generated"`
	RecordingMode string          `json:"recording_mode"`
	UserCA        string          `json:"user_ca"`
	HostCA        string          `json:"host_ca"`
	SessionCA     string          `json:"session_ca"`
	Users         []ProxyUser     `json:"users"`
	Roles         []Role          `json:"roles"`
	Nodes         []ProxyNode     `json:"nodes"`
	Revoked       []RevokedSerial `json:"revoked"`
	Proxies       []ProxyInfo     `json:"proxies"`
}

// ProxyUser is a user as the proxy sees it. A user who is not listed (or
// is Locked) may not log in.
type ProxyUser struct {
	Name   string   `json:"name"`
	Roles  []string `json:"roles"`
	Locked bool     `json:"locked,omitempty"`
}

// ProxyNode is a joined node as the proxy sees it.
type ProxyNode struct {
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels,omitempty"`
	Principals []string          `json:"principals"`
	// Addr is the node's registered direct sshd address, if any.
	Addr string `json:"addr,omitempty"`
}

// SessionCertRequest asks for the session-CA certificate the proxy logs in
// to a node with, on behalf of a user it has verified. The CA checks the
// user's policy again.
type SessionCertRequest struct {
	User      string   `json:"user"`
	Login     string   `json:"login"`
	Node      string   `json:"node"`
	SessionID string   `json:"session_id"`
	PublicKey string   `json:"public_key"`
	TTL       Duration `json:"ttl,omitempty"`
	// SourceAddress binds the certificate to the address the node sees
	// the proxy connect from, when the proxy knows it.
	SourceAddress []string `json:"source_address,omitempty"`
}

// TargetCertRequest asks for a host certificate for a node's names, for
// the proxy to present while it terminates a recorded connection to that
// node.
type TargetCertRequest struct {
	Node      string   `json:"node"`
	PublicKey string   `json:"public_key"`
	TTL       Duration `json:"ttl,omitempty"`
}

// Session is one SSH session running through a proxy.
type Session struct {
	ID         string    `json:"id"`
	Proxy      string    `json:"proxy"`
	User       string    `json:"user"`
	Login      string    `json:"login"`
	Node       string    `json:"node"`
	ClientAddr string    `json:"client_addr,omitempty"`
	Started    time.Time `json:"started"`
	// Recorded says whether the proxy records it (mode proxy).
	Recorded bool `json:"recorded"`
	// Channels lists what runs in it: "shell", "exec: CMD", "subsystem:
	// sftp", "direct-tcpip host:port".
	Channels []string `json:"channels,omitempty"`
}

// ActiveSessions is a proxy's full list of running sessions; each PUT
// replaces the previous list of that proxy.
type ActiveSessions struct {
	Sessions []Session `json:"sessions"`
	// TTL is how long the list stands if the proxy goes silent.
	TTL Duration `json:"ttl"`
}

// ProxyEvent is an audit event a proxy reports (session start and end,
// exec, exit code, transfers, forwards, refusals).
type ProxyEvent struct {
	Time    time.Time         `json:"time"`
	Type    string            `json:"type"` // "session.start", "session.end", "session.exec", ...
	User    string            `json:"user,omitempty"`
	Success bool              `json:"success"`
	Remote  string            `json:"remote,omitempty"`
	Fields  map[string]string `json:"fields,omitempty"`
	// ID makes a retried batch idempotent.
	ID string `json:"id"`
}

// Recording is the admin view of a stored session recording.
type Recording struct {
	ID        string    `json:"id"`
	SessionID string    `json:"session_id"`
	User      string    `json:"user"`
	Login     string    `json:"login"`
	Node      string    `json:"node"`
	Proxy     string    `json:"proxy"`
	Started   time.Time `json:"started"`
	Size      int64     `json:"size"`
	Stored    time.Time `json:"stored"`
}

// MatchLabels reports whether a role's node selector selects a node with
// the given labels. An empty selector selects nothing; the key "*" with
// the value "*" selects every node; a value "*" matches any value.
func MatchLabels(sel map[string][]string, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	if vs, ok := sel["*"]; ok && slices.Equal(vs, []string{"*"}) {
		return true
	}
	for k, vs := range sel {
		v, ok := labels[k]
		if !ok || !(slices.Contains(vs, "*") || slices.Contains(vs, v)) {
			return false
		}
	}
	return true
}

// UserLoginPlaceholder in a role's logins stands for the user's own name.
const UserLoginPlaceholder = "{user}"
