package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// certKind is the kind of certificate being issued; each has its own CA key
// (DESIGN.md section 2).
type certKind string

const (
	kindUser    certKind = "user"
	kindHost    certKind = "host"
	kindSession certKind = "session"
)

// Lifetime limits.
const (
	// HardMaxTTL caps every certificate whatever the roles say: no
	// certificate outlives a working day and a bit.
	HardMaxTTL = 30 * time.Hour
	// backdate is subtracted from ValidAfter to tolerate clock skew
	// (api.CertBackdate says why five minutes).
	backdate = api.CertBackdate

	minSessionTTL = time.Minute
	maxSessionTTL = 5 * time.Minute
)

// Extensions from PROTOCOL.certkeys.
const (
	extPTY            = "permit-pty"
	extAgent          = "permit-agent-forwarding"
	extPortForwarding = "permit-port-forwarding"
	extX11            = "permit-X11-forwarding"
	extUserRC         = "permit-user-rc"
	optSourceAddress  = "source-address"
)

// issuance is one certificate on its way through the pipeline:
// validate → build → apply policy → sign → check invariants → store.
type issuance struct {
	kind      certKind
	pub       ssh.PublicKey
	keyID     string
	ttl       time.Duration // wanted; capped by policy
	maxTTL    time.Duration // policy cap
	requester string
	user      string // the cluster user, for user and session certificates

	principals []string
	perms      ssh.Permissions
}

// ParsePublicKey reads an authorized_keys-form public key and refuses the
// kinds the authority will not certify, naming the reason.
func ParsePublicKey(s string) (ssh.PublicKey, error) {
	if len(s) > 16<<10 {
		return nil, invalidf("public key is longer than 16 KiB")
	}
	pub, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, invalidf("public key is not in authorized_keys form (%v)", err)
	}
	if len(trimSpace(rest)) != 0 {
		return nil, invalidf("public key field holds more than one key")
	}
	return pub, CheckPublicKey(pub)
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// CheckPublicKey accepts ed25519, ECDSA P-256/384/521 (also as FIDO
// security keys) and RSA keys of 3072 bits or more.
func CheckPublicKey(pub ssh.PublicKey) error {
	switch pub.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256:
		return nil
	case ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521:
		if _, ok := pub.(ssh.CryptoPublicKey).CryptoPublicKey().(*ecdsa.PublicKey); !ok {
			return invalidf("ECDSA public key is malformed")
		}
		return nil
	case ssh.KeyAlgoRSA:
		k, ok := pub.(ssh.CryptoPublicKey).CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return invalidf("RSA public key is malformed")
		}
		if n := k.N.BitLen(); n < 3072 {
			return invalidf("RSA key of %d bits is too short: use 3072 bits or more, or better ssh-keygen -t ed25519", n)
		}
		return nil
	case "ssh-dss": // ssh.KeyAlgoDSA, deprecated: named here only to refuse it
		return invalidf("DSA keys are refused: they are limited to 1024 bits and OpenSSH removed them; make a new key with ssh-keygen -t ed25519")
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return invalidf("a certificate was sent where a public key was expected; send the plain public key")
	}
	return invalidf("key type %s is not supported: use ed25519, ECDSA or RSA of 3072 bits or more", pub.Type())
}

func (a *Authority) signerFor(k certKind) ssh.Signer {
	switch k {
	case kindHost:
		return a.keys.host
	case kindSession:
		return a.keys.session
	}
	return a.keys.user
}

// issue runs the pipeline for a request whose policy fields (principals,
// permissions, maxTTL) the caller has already derived from roles or from
// the host or session rules.
func (a *Authority) issue(ctx context.Context, is *issuance) (*ssh.Certificate, error) {
	if err := a.validateIssuance(is); err != nil {
		return nil, err
	}
	start := time.Now()
	cert, err := a.signAndRecord(ctx, is)
	a.metrics.observeIssue(is.kind, start, err)
	return cert, err
}

// signAndRecord is issue's pipeline after validation.
func (a *Authority) signAndRecord(ctx context.Context, is *issuance) (*ssh.Certificate, error) {
	now := a.now()
	cert, err := a.buildCert(is, now)
	if err != nil {
		return nil, err
	}
	a.applyPolicy(cert, is, now)
	if err := cert.SignCert(a.rand, a.signerFor(is.kind)); err != nil {
		return nil, fmt.Errorf("ca: signing %s certificate for %q: %w", is.kind, is.keyID, err)
	}
	if err := checkInvariants(cert, is.kind, a.signerFor(is.kind).PublicKey()); err != nil {
		a.log.Error("issued certificate failed its invariants; not returned", "err", err, "key_id", is.keyID)
		return nil, err
	}
	if err := a.recordIssued(ctx, cert, is, now); err != nil {
		return nil, err
	}
	return cert, nil
}

func (a *Authority) validateIssuance(is *issuance) error {
	if is.pub == nil {
		return invalidf("public key is missing")
	}
	if err := CheckPublicKey(is.pub); err != nil {
		return err
	}
	if err := ValidateKeyID(is.keyID); err != nil {
		return err
	}
	if is.ttl < 0 {
		return invalidf("ttl %v is negative", is.ttl)
	}
	if len(is.principals) == 0 {
		return &PolicyError{Reason: fmt.Sprintf("no login is allowed for %q", is.keyID)}
	}
	for _, p := range is.principals {
		var err error
		if is.kind == kindHost {
			err = ValidateHostPrincipal(p)
		} else {
			err = a.logins.Validate(p)
		}
		if err != nil {
			return err
		}
	}
	for _, s := range splitList(is.perms.CriticalOptions[optSourceAddress]) {
		if err := ValidateSourceAddress(s); err != nil {
			return err
		}
	}
	return nil
}

// buildCert fills the fields that do not depend on policy.
func (a *Authority) buildCert(is *issuance, now time.Time) (*ssh.Certificate, error) {
	serial, err := a.newSerial()
	if err != nil {
		return nil, err
	}
	typ := uint32(ssh.UserCert)
	if is.kind == kindHost {
		typ = ssh.HostCert
	}
	return &ssh.Certificate{
		Key:         is.pub,
		Serial:      serial,
		CertType:    typ,
		KeyId:       is.keyID,
		ValidAfter:  unixSeconds(now.Add(-backdate)),
		ValidBefore: unixSeconds(now.Add(a.cfg.DefaultUserTTL)),
	}, nil
}

// applyPolicy sets principals, extensions, critical options and the
// lifetime, capped by the policy and the hard cap. Maps are copied: a
// certificate never shares a map with a role.
func (a *Authority) applyPolicy(cert *ssh.Certificate, is *issuance, now time.Time) {
	cert.ValidPrincipals = append([]string(nil), is.principals...)
	cert.Permissions = ssh.Permissions{
		CriticalOptions: copyMap(is.perms.CriticalOptions),
		Extensions:      copyMap(is.perms.Extensions),
	}
	ttl := is.ttl
	if ttl == 0 {
		ttl = a.defaultTTL(is.kind)
	}
	ttl = min(ttl, HardMaxTTL)
	if is.maxTTL > 0 {
		ttl = min(ttl, is.maxTTL)
	}
	if is.kind == kindSession {
		ttl = max(min(ttl, maxSessionTTL), minSessionTTL)
	}
	cert.ValidBefore = unixSeconds(now.Add(ttl))
}

func (a *Authority) defaultTTL(k certKind) time.Duration {
	switch k {
	case kindHost:
		return a.cfg.HostTTL
	case kindSession:
		return maxSessionTTL
	}
	return a.cfg.DefaultUserTTL
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func unixSeconds(t time.Time) uint64 {
	if s := t.Unix(); s > 0 {
		return uint64(s)
	}
	return 0
}

// newSerial returns a random non-zero 64-bit serial.
func (a *Authority) newSerial() (uint64, error) {
	var b [8]byte
	for {
		if _, err := io.ReadFull(a.rand, b[:]); err != nil {
			return 0, fmt.Errorf("ca: reading randomness: %w", err)
		}
		if s := binary.BigEndian.Uint64(b[:]); s != 0 {
			return s, nil
		}
	}
}

// ErrInvariant marks a certificate that failed a post-signing check. It
// means a bug, never bad input; the certificate is not returned.
var ErrInvariant = errors.New("ca: certificate invariant violated")

// checkInvariants is the last gate before a certificate leaves the CA.
func checkInvariants(c *ssh.Certificate, k certKind, caKey ssh.PublicKey) error {
	fail := func(what string) error { return fmt.Errorf("%w: %s (key id %q)", ErrInvariant, what, c.KeyId) }
	switch {
	case c.Serial == 0:
		return fail("serial is zero")
	case c.KeyId == "":
		return fail("key id is empty")
	case c.ValidAfter >= c.ValidBefore:
		return fail("valid after is not before valid before")
	case c.ValidBefore == ssh.CertTimeInfinity:
		return fail("certificate never expires")
	case time.Duration(c.ValidBefore-c.ValidAfter)*time.Second > HardMaxTTL+backdate:
		return fail("lifetime exceeds the hard cap")
	case len(c.ValidPrincipals) == 0:
		return fail("no principals")
	case c.SignatureKey == nil || string(c.SignatureKey.Marshal()) != string(caKey.Marshal()):
		return fail("signed by the wrong CA")
	}
	want := uint32(ssh.UserCert)
	if k == kindHost {
		want = ssh.HostCert
	}
	if c.CertType != want {
		return fail(fmt.Sprintf("type %d, want %d", c.CertType, want))
	}
	if k == kindHost && len(c.Permissions.Extensions)+len(c.Permissions.CriticalOptions) != 0 {
		return fail("host certificate carries options")
	}
	if k == kindSession && len(c.ValidPrincipals) != 1 {
		return fail("session certificate must name exactly one login")
	}
	if c.Signature == nil || c.Signature.Format == ssh.KeyAlgoRSA {
		return fail("missing or SHA-1 signature")
	}
	return nil
}

func serialString(s uint64) string { return strconv.FormatUint(s, 10) }

// certKey is where an issuance record lives: ordered by issue time, so
// that records append to the store instead of each rewriting a random page,
// with the serial last for lookups.
func certKey(issued time.Time, serial uint64) string {
	return fmt.Sprintf("certs/%020d-%016x", issued.UnixNano(), serial)
}

// recordIssued stores the issuance record durably before the certificate
// is handed out. The record is also the certificate's audit event: the
// audit log presents it as "cert.issue" (see Audit), so one write covers
// both.
func (a *Authority) recordIssued(ctx context.Context, c *ssh.Certificate, is *issuance, now time.Time) error {
	rec := api.IssuedCert{
		Serial:      serialString(c.Serial),
		Type:        string(is.kind),
		KeyID:       c.KeyId,
		User:        is.user,
		Principals:  c.ValidPrincipals,
		ValidAfter:  time.Unix(int64(c.ValidAfter), 0).UTC(),
		ValidBefore: time.Unix(int64(c.ValidBefore), 0).UTC(),
		Fingerprint: ssh.FingerprintSHA256(c.Key),
		Issued:      now.UTC(),
		Requester:   is.requester,
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := a.store.Create(ctx, certKey(now, c.Serial), b); err != nil {
		if errors.Is(err, store.ErrExists) {
			err = fmt.Errorf("ca: serial %s issued twice in the same nanosecond; retry", rec.Serial)
		}
		return fmt.Errorf("ca: storing issuance record: %w", err)
	}
	return nil
}

// issuedEvent presents an issuance record as an audit event.
func issuedEvent(key string, rec api.IssuedCert) api.AuditEvent {
	return api.AuditEvent{
		ID: strings.TrimPrefix(key, "certs/"), Time: rec.Issued, Type: "cert.issue",
		User: rec.User, Actor: rec.Requester, Success: true,
		Fields: map[string]string{
			"serial": rec.Serial, "kind": rec.Type, "key_id": rec.KeyID, "principals": joinList(rec.Principals),
			"valid_before": rec.ValidBefore.Format(time.RFC3339), "fingerprint": rec.Fingerprint,
		},
	}
}
