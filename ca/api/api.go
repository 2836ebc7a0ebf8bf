// Package api defines the versioned JSON wire types of teleport-ca: the
// public HTTPS API (sign-in, certificate issuance, CA keys) that keyhelpers,
// nodes and proxies use, and the admin API that caadm speaks over the
// root-only Unix socket. Server (package ca) and clients (package
// ca/client) share these types so the two cannot drift apart.
//
// Every path starts with the API version, "/v1". Errors are returned as an
// Error body with a non-2xx status; clients turn them into *Error values.
package api

import (
	"encoding/json"
	"fmt"
	"time"
)

// Version is the path prefix of this API version.
const Version = "/v1"

// Public endpoints (HTTPS, --listen).
const (
	PathPing     = Version + "/ping"       // GET: Ping
	PathCA       = Version + "/ca"         // GET: CAInfo
	PathLogin    = Version + "/login"      // POST LoginRequest: LoginResponse
	PathLogout   = Version + "/logout"     // POST, bearer: empty
	PathUserCert = Version + "/certs/user" // POST SignUserRequest, bearer: Cert
)

// Device endpoints (HTTPS). Register takes a keyhelper token; the others
// authenticate the device by its TLS client certificate.
const (
	PathDeviceRegister = Version + "/devices/register" // POST RegisterDeviceRequest: DeviceIdentity
	PathDeviceRenew    = Version + "/devices/renew"    // POST, client certificate: DeviceIdentity
	// PathDeviceSignIn answers at once when the user's sign-in state
	// differs from ?signed_in=&expires= (RFC 3339), else waits up to
	// ?wait= (default and cap 25s) for it to change.
	PathDeviceSignIn = Version + "/devices/signin" // GET, client certificate: SignInState
	PathDeviceCert   = Version + "/devices/cert"   // POST DeviceCertRequest, client certificate: Cert
)

// Node endpoints (HTTPS). Join takes a node token; the others
// authenticate the node by the TLS client certificate it got at join.
const (
	PathNodeJoin  = Version + "/nodes/join"  // POST NodeJoinRequest: NodeIdentity
	PathNodeRenew = Version + "/nodes/renew" // POST NodeRenewRequest, client certificate: NodeIdentity
	// PathNodePolicy answers at once when the node's policy differs from
	// ?hash=, else waits up to ?wait= (default and cap 25s) for it to
	// change and then answers with the same policy, which confirms it.
	PathNodePolicy = Version + "/nodes/policy" // GET, client certificate: NodePolicy
)

// Admin endpoints (Unix socket, --admin-socket). {name} and {id} are path
// segments.
const (
	PathAdminUsers   = Version + "/admin/users"    // GET: []User; POST AddUserRequest: AddUserResponse
	PathAdminUser    = Version + "/admin/users/"   // + {name}: DELETE, PATCH UpdateUserRequest: User; + {name}/lock POST LockRequest; + {name}/unlock POST; + {name}/reset POST ResetUserRequest: AddUserResponse
	PathAdminRoles   = Version + "/admin/roles"    // GET: []Role; POST Role: Role
	PathAdminRole    = Version + "/admin/roles/"   // + {name}: DELETE
	PathAdminTokens  = Version + "/admin/tokens"   // GET: []Token; POST AddTokenRequest: AddTokenResponse
	PathAdminToken   = Version + "/admin/tokens/"  // + {id}: DELETE
	PathAdminSign    = Version + "/admin/sign"     // POST AdminSignRequest: Cert
	PathAdminCA      = Version + "/admin/ca"       // GET: CAInfo
	PathAdminAudit   = Version + "/admin/audit"    // GET ?user=&type=&since=RFC3339&limit=N: []AuditEvent
	PathAdminCerts   = Version + "/admin/certs"    // GET ?user=&serial=: []IssuedCert
	PathAdminDevices = Version + "/admin/devices"  // GET ?user=: []Device
	PathAdminDevice  = Version + "/admin/devices/" // + {user}/{id}/revoke: POST
	PathAdminNodes   = Version + "/admin/nodes"    // GET: []Node
	PathAdminNode    = Version + "/admin/nodes/"   // + {name}: DELETE
	PathAdminRevoke  = Version + "/admin/revoke"   // POST RevokeRequest: RevokedCert
	PathAdminRevoked = Version + "/admin/revoked"  // GET: []RevokedCert
)

// BearerPrefix starts the Authorization header that carries a sign-in
// session token.
const BearerPrefix = "Bearer "

// MaxBodyBytes caps every request body the server reads.
const MaxBodyBytes = 64 << 10

// Duration is a time.Duration that travels as Go duration text ("1h30m").
type Duration time.Duration

// MarshalJSON writes the duration as text.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads duration text ("90s", "1h"); a bare number is refused
// so that a unit is never guessed.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"1h\": %w", err)
	}
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Error is the body of every non-2xx response.
type Error struct {
	// Code is a stable machine-readable reason (see the Code constants).
	Code string `json:"code"`
	// Message is a one-line human explanation that says what to do.
	Message string `json:"message"`
	// Status is the HTTP status; not sent, filled in by clients.
	Status int `json:"-"`
}

func (e *Error) Error() string { return e.Message }

// Error codes.
const (
	CodeBadRequest     = "bad_request"
	CodeUnauthorized   = "unauthorized"    // no or bad credentials
	CodeBadCredentials = "bad_credentials" // wrong user, password or code
	CodeLocked         = "locked"          // account locked
	CodeSessionExpired = "session_expired" // sign-in session ended
	CodeForbidden      = "forbidden"       // policy refuses
	CodeNotFound       = "not_found"
	CodeExists         = "exists"
	CodeTooLarge       = "too_large"
	CodeTooMany        = "too_many_requests" // throttled; see Retry-After
	CodeDeviceRevoked  = "device_revoked"    // the device identity is refused: register again
	CodeNodeRemoved    = "node_removed"      // the node identity is refused: join again
	CodeUnavailable    = "unavailable"       // shutting down; retry
	CodeInternal       = "internal"
)

// Ping answers PathPing.
type Ping struct {
	Version string `json:"version"`
	// Time is the server clock, so clients can warn about skew.
	Time time.Time `json:"time"`
}

// CAInfo holds the public keys of the authority.
type CAInfo struct {
	// UserCA, HostCA and SessionCA are authorized_keys-form public keys.
	UserCA    string `json:"user_ca"`
	HostCA    string `json:"host_ca"`
	SessionCA string `json:"session_ca"`
	// KnownHosts is the "@cert-authority * <host CA>" known_hosts line.
	KnownHosts string `json:"known_hosts"`
	// Pin is "sha256:<hex>" of the TLS root's SubjectPublicKeyInfo.
	Pin string `json:"pin"`
	// TLSRoot is the PEM of the TLS root certificate.
	TLSRoot string `json:"tls_root"`
	// RecordingMode is "proxy" or "off".
	RecordingMode string `json:"recording_mode"`
	// ProxyAddr is the public "host:port" of the cluster's SSH proxy, or
	// empty while no proxy has registered (or the CA was started with
	// --proxy-addr unset).
	ProxyAddr string `json:"proxy_addr,omitempty"`
	// Proxies are the registered proxies, sorted by name.
	Proxies []ProxyInfo `json:"proxies,omitempty"`
}

// LoginRequest signs in with password and TOTP code.
type LoginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
	TOTP     string `json:"totp"`
}

// LoginResponse carries the sign-in session.
type LoginResponse struct {
	User string `json:"user"`
	// Session is the bearer token for later calls; keep it secret.
	Session string    `json:"session"`
	Expires time.Time `json:"expires"`
}

// SignUserRequest asks for a user certificate within the caller's sign-in
// session.
type SignUserRequest struct {
	// PublicKey in authorized_keys form.
	PublicKey string `json:"public_key"`
	// TTL wanted; zero means the default. Capped by roles and the hard cap.
	TTL Duration `json:"ttl,omitempty"`
	// Logins narrows the certificate to these logins; empty means all the
	// user's roles allow.
	Logins []string `json:"logins,omitempty"`
}

// Cert is an issued certificate.
type Cert struct {
	// Certificate in authorized_keys form ("ssh-ed25519-cert-v01@openssh.com AAAA...").
	Certificate string    `json:"certificate"`
	Serial      string    `json:"serial"` // decimal, as ssh-keygen -L prints it
	KeyID       string    `json:"key_id"`
	Principals  []string  `json:"principals"`
	ValidAfter  time.Time `json:"valid_after"`
	ValidBefore time.Time `json:"valid_before"`
}

// User is the admin view of an account. Secrets never leave the server.
type User struct {
	Name         string     `json:"name"`
	Roles        []string   `json:"roles"`
	Status       string     `json:"status"` // "active", "pending" (not enrolled) or "locked"
	LockedUntil  *time.Time `json:"locked_until,omitempty"`
	LockReason   string     `json:"lock_reason,omitempty"`
	FailedLogins int        `json:"failed_logins"`
	Created      time.Time  `json:"created"`
	LastLogin    *time.Time `json:"last_login,omitempty"`
}

// AddUserRequest creates a user. With Password set the account is active at
// once and the response carries the otpauth URI; without it the response
// carries a one-time enrollment link.
type AddUserRequest struct {
	Name     string   `json:"name"`
	Logins   []string `json:"logins,omitempty"` // makes the personal role "user:<name>"
	Roles    []string `json:"roles,omitempty"`
	Password string   `json:"password,omitempty"`
}

// AddUserResponse reports a new user.
type AddUserResponse struct {
	User          User      `json:"user"`
	OTPAuthURI    string    `json:"otpauth_uri,omitempty"`
	EnrollURL     string    `json:"enroll_url,omitempty"`
	EnrollExpires time.Time `json:"enroll_expires,omitzero"`
}

// UpdateUserRequest changes an existing user's access. A nil field is left
// as it is.
type UpdateUserRequest struct {
	// Roles replaces the user's granted roles (the personal role is kept
	// or dropped by Logins, not here).
	Roles *[]string `json:"roles,omitempty"`
	// Logins replaces the logins of the personal role "user:<name>"; an
	// empty list removes the personal role.
	Logins *[]string `json:"logins,omitempty"`
}

// ResetUserRequest replaces a user's credentials (a lost authenticator or
// password). With Password set the account gets a new TOTP secret at once
// and the response carries its otpauth URI; without it the account is
// pending again and the response carries a new enrollment link. Either
// way every sign-in session of the user ends.
type ResetUserRequest struct {
	Password string `json:"password,omitempty"`
}

// LockRequest locks a user; a nil Until locks until unlocked.
type LockRequest struct {
	Until  *time.Time `json:"until,omitempty"`
	Reason string     `json:"reason,omitempty"`
}

// Role maps users to logins on labelled nodes.
type Role struct {
	Name string `json:"name"`
	// Logins are local account names; "{user}" means the user's own name.
	Logins []string `json:"logins"`
	// NodeLabels selects nodes: every key must match one of its values;
	// the value "*" matches any value, and the key "*" with value "*"
	// matches every node. Empty selects no node.
	NodeLabels map[string][]string `json:"node_labels"`
	// MaxTTL caps certificates issued through this role; zero means the
	// server default cap.
	MaxTTL                Duration `json:"max_ttl,omitempty"`
	PermitAgentForwarding bool     `json:"permit_agent_forwarding,omitempty"`
	PermitPortForwarding  bool     `json:"permit_port_forwarding,omitempty"`
	PermitX11Forwarding   bool     `json:"permit_x11_forwarding,omitempty"`
	// SourceAddress, when set, becomes the certificate's source-address
	// critical option (CIDR list).
	SourceAddress []string `json:"source_address,omitempty"`
	// Groups are supplementary groups (e.g. "sudo") of the personal
	// accounts ("{user}") this role makes on the nodes it selects.
	Groups []string `json:"groups,omitempty"`
}

// AddTokenRequest creates a join or device token.
type AddTokenRequest struct {
	Role     string            `json:"role"` // "node", "proxy" or "keyhelper"
	Labels   map[string]string `json:"labels,omitempty"`
	User     string            `json:"user,omitempty"` // required for keyhelper
	TTL      Duration          `json:"ttl,omitempty"`  // zero: 15m
	Reusable bool              `json:"reusable,omitempty"`
}

// Token is the admin view of a token; the secret itself is shown only once,
// in AddTokenResponse.
type Token struct {
	ID       string            `json:"id"` // first 16 hex digits of the secret's SHA-256
	Role     string            `json:"role"`
	Labels   map[string]string `json:"labels,omitempty"`
	User     string            `json:"user,omitempty"`
	Expires  time.Time         `json:"expires"`
	Reusable bool              `json:"reusable,omitempty"`
	Uses     int               `json:"uses"`
	Created  time.Time         `json:"created"`
}

// AddTokenResponse carries the new token's secret.
type AddTokenResponse struct {
	Token  Token  `json:"token_info"`
	Secret string `json:"token"`
}

// AdminSignRequest signs a key by hand: a user certificate for a bot or
// a host certificate for a host signed outside the join flow.
type AdminSignRequest struct {
	// Host selects a host certificate. Then Name is the host name (KeyId
	// and first principal) and Principals adds more names or addresses.
	Host bool `json:"host,omitempty"`
	// Name is the user (user certificates) or host name.
	Name       string   `json:"name"`
	PublicKey  string   `json:"public_key"`
	Logins     []string `json:"logins,omitempty"`
	Principals []string `json:"principals,omitempty"`
	TTL        Duration `json:"ttl,omitempty"`
}

// AuditEvent is one entry of the audit log.
type AuditEvent struct {
	ID      string            `json:"id"`
	Time    time.Time         `json:"time"`
	Type    string            `json:"type"` // e.g. "user.login", "cert.issue"
	User    string            `json:"user,omitempty"`
	Actor   string            `json:"actor,omitempty"` // who did it: "admin(uid=0)", "api", a user
	Success bool              `json:"success"`
	Remote  string            `json:"remote,omitempty"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// IssuedCert is the durable record of one issued certificate.
type IssuedCert struct {
	Serial      string    `json:"serial"`
	Type        string    `json:"type"` // "user", "host" or "session"
	KeyID       string    `json:"key_id"`
	User        string    `json:"user,omitempty"` // the cluster user (user and session certificates)
	Principals  []string  `json:"principals"`
	ValidAfter  time.Time `json:"valid_after"`
	ValidBefore time.Time `json:"valid_before"`
	// Fingerprint is the SHA256 fingerprint of the certified public key.
	Fingerprint string    `json:"fingerprint"`
	Issued      time.Time `json:"issued"`
	Requester   string    `json:"requester,omitempty"`
}

// RegisterDeviceRequest exchanges a single-use keyhelper token for a device
// identity. The device makes its own key; only the public half travels.
type RegisterDeviceRequest struct {
	Token string `json:"token"`
	// User is the daemon's --auth: the token's user.
	User string `json:"user"`
	// PublicKey is a PEM "PUBLIC KEY" (PKIX) block, ECDSA P-256 or ed25519.
	PublicKey string `json:"public_key"`
}

// DeviceIdentity is a device's TLS client certificate.
type DeviceIdentity struct {
	DeviceID    string    `json:"device_id"`
	User        string    `json:"user"`
	Certificate string    `json:"certificate"` // PEM
	TLSRoot     string    `json:"tls_root"`    // PEM of the root that signed it
	Expires     time.Time `json:"expires"`
}

// Device is the view of a registered keyhelper device.
type Device struct {
	ID       string    `json:"id"`
	User     string    `json:"user"`
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	Revoked  bool      `json:"revoked,omitempty"`
}

// SignInState says whether a user has a live sign-in session.
type SignInState struct {
	SignedIn bool `json:"signed_in"`
	// Expires is when the latest live sign-in ends; zero when signed out.
	Expires time.Time `json:"expires,omitzero"`
}

// DeviceCertRequest asks, from a registered device, for a user
// certificate within the user's live sign-in.
type DeviceCertRequest struct {
	// PublicKey in authorized_keys form.
	PublicKey string   `json:"public_key"`
	TTL       Duration `json:"ttl,omitempty"`
}

// NodeJoinRequest exchanges a node token for a host certificate and a TLS
// client identity. The node makes both keys; only public halves travel.
// Labels come from the token, never from the node.
type NodeJoinRequest struct {
	Token string `json:"token"`
	// Name is the node's cluster name: KeyId and first principal of its
	// host certificate, and what users type after "ssh root@".
	Name string `json:"name"`
	// FQDN and Addresses become further principals.
	FQDN      string   `json:"fqdn,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	// SSHAddr, when set, is a "host:port" at which proxies may reach the
	// node's sshd directly when the node holds no tunnel to them.
	SSHAddr string `json:"ssh_addr,omitempty"`
	// HostPublicKey in authorized_keys form (ed25519).
	HostPublicKey string `json:"host_public_key"`
	// TLSPublicKey is a PEM "PUBLIC KEY" (PKIX) block, ECDSA P-256 or ed25519.
	TLSPublicKey string `json:"tls_public_key"`
}

// NodeRenewRequest asks for a new host certificate (and a new TLS client
// certificate) for the same keys.
type NodeRenewRequest struct {
	HostPublicKey string `json:"host_public_key"`
}

// NodeIdentity is what a node holds: its host certificate, its TLS client
// certificate and the authority's public keys.
type NodeIdentity struct {
	Name            string            `json:"name"`
	Labels          map[string]string `json:"labels,omitempty"`
	HostCertificate string            `json:"host_certificate"` // authorized_keys form
	TLSCertificate  string            `json:"tls_certificate"`  // PEM
	TLSExpires      time.Time         `json:"tls_expires"`
	CA              CAInfo            `json:"ca"`
}

// NodePolicy is everything a node needs to answer sshd without the CA:
// who may log in as which local login on it, who is locked, which
// serials are revoked, and which CA keys to trust.
type NodePolicy struct {
	Node   string            `json:"node"`
	Labels map[string]string `json:"labels,omitempty"`
	// Hash identifies the content (everything but Generated); send it back
	// as ?hash= to wait for a change.
	Hash string `json:"hash"`
	// Generated is the CA clock when this answer was made.
	Generated     time.Time `json:"generated"`
	RecordingMode string    `json:"recording_mode"`
	UserCA        string    `json:"user_ca"`
	SessionCA     string    `json:"session_ca"`
	HostCA        string    `json:"host_ca"`
	// Users lists every user with a login on this node, sorted by name.
	// A user who is not listed may not log in.
	Users []NodeUser `json:"users"`
	// Groups are the CA-assigned gids of the supplementary groups the
	// users' roles name (used when the node has no local group of that
	// name).
	Groups  map[string]uint32 `json:"groups,omitempty"`
	Revoked []RevokedSerial   `json:"revoked"`
	// Proxies are the registered proxies; the node keeps a reverse tunnel
	// to each one's TunnelAddr.
	Proxies []ProxyInfo `json:"proxies,omitempty"`
}

// NodeUser is one user's access to a node.
type NodeUser struct {
	Name   string   `json:"name"`
	Logins []string `json:"logins"`
	Locked bool     `json:"locked,omitempty"`
	// UID is set when a role gives the user a personal account ("{user}")
	// on this node; the account's private group has the same id.
	UID    uint32   `json:"uid,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// RevokedSerial is a revoked certificate as nodes see it.
type RevokedSerial struct {
	Serial  string    `json:"serial"` // decimal
	CA      string    `json:"ca"`     // "user", "session" or "host"
	Expires time.Time `json:"expires"`
}

// Node is the admin view of a joined node.
type Node struct {
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels,omitempty"`
	Principals []string          `json:"principals"`
	Joined     time.Time         `json:"joined"`
	LastSeen   time.Time         `json:"last_seen,omitzero"`
	Remote     string            `json:"remote,omitempty"`
}

// RevokeRequest revokes an issued certificate by serial.
type RevokeRequest struct {
	Serial string `json:"serial"` // decimal
	Reason string `json:"reason,omitempty"`
}

// RevokedCert is the admin view of a revocation.
type RevokedCert struct {
	Serial  string    `json:"serial"`
	Type    string    `json:"type"` // "user", "host" or "session"
	KeyID   string    `json:"key_id"`
	User    string    `json:"user,omitempty"`
	Expires time.Time `json:"expires"` // the certificate's ValidBefore
	Reason  string    `json:"reason,omitempty"`
	Revoked time.Time `json:"revoked"`
}
