package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// Device identities: a keyhelper daemon registers once with a single-use
// keyhelper token and gets an X.509 client certificate from the TLS root,
// bound to its user. Its private key is made on the device and never
// leaves it; the CA signs only the public key. The certificate names the
// device in a URI SAN, teleport://keyhelper/<user>/<device id>, and is
// accepted only while its device record exists, is not revoked and holds
// the same key, and its user exists and is not locked.

const (
	deviceCertLifetime = 7 * 24 * time.Hour
	deviceURIScheme    = "teleport"
	deviceURIHost      = "keyhelper"
)

// deviceRecord is stored under "devices/<user>/<id>".
type deviceRecord struct {
	ID      string    `json:"id"`
	User    string    `json:"user"`
	Created time.Time `json:"created"`
	// SPKI is the hex SHA-256 of the device key's SubjectPublicKeyInfo: a
	// renewal must keep the key, or re-register.
	SPKI     string    `json:"spki"`
	Expires  time.Time `json:"expires"` // of the current certificate
	LastSeen time.Time `json:"last_seen,omitzero"`
	Revoked  bool      `json:"revoked,omitempty"`
}

func deviceKey(user, id string) string { return "devices/" + user + "/" + id }

// ErrBadDevice: the client certificate names no valid device. One error
// for every reason, so a caller learns nothing about other devices.
var ErrBadDevice = errors.New("device identity is not valid (revoked, expired, or its user is locked or removed); register the device again with a new token")

// parseDevicePublicKey reads a PEM "PUBLIC KEY" (PKIX) block: ECDSA P-256
// or ed25519.
func parseDevicePublicKey(s string) (crypto.PublicKey, []byte, error) {
	blk, rest := pem.Decode([]byte(s))
	if blk == nil || blk.Type != "PUBLIC KEY" || len(strings.TrimSpace(string(rest))) != 0 {
		return nil, nil, invalidf("public key must be one PEM \"PUBLIC KEY\" block")
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, nil, invalidf("public key: %v", err)
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, nil, invalidf("device keys must be ECDSA P-256 or ed25519")
		}
	default:
		return nil, nil, invalidf("device keys must be ECDSA P-256 or ed25519, not %T", pub)
	}
	return pub, blk.Bytes, nil
}

func spkiHash(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// RegisterDevice exchanges a keyhelper token for a device identity. user
// must be the token's user (the daemon's --auth): a token is for one user.
func (a *Authority) RegisterDevice(ctx context.Context, req api.RegisterDeviceRequest, remote string) (api.DeviceIdentity, error) {
	pub, der, err := parseDevicePublicKey(req.PublicKey)
	if err != nil {
		return api.DeviceIdentity{}, err
	}
	if ValidateUserName(req.User) != nil {
		return api.DeviceIdentity{}, ErrBadToken
	}
	tok, err := a.ConsumeToken(ctx, req.Token, TokenKeyhelper)
	if err != nil {
		a.auditDevice(ctx, "device.register", req.User, "", remote, false, "bad token")
		return api.DeviceIdentity{}, err
	}
	if tok.User != req.User {
		a.auditDevice(ctx, "device.register", req.User, "", remote, false, "token is for another user")
		return api.DeviceIdentity{}, ErrBadToken
	}
	u, _, err := a.getUser(ctx, req.User)
	if err != nil || u.locked(a.now()) {
		return api.DeviceIdentity{}, ErrBadToken
	}
	idb := make([]byte, 8)
	if _, err := io.ReadFull(a.rand, idb); err != nil {
		return api.DeviceIdentity{}, err
	}
	now := a.now()
	rec := deviceRecord{ID: hex.EncodeToString(idb), User: u.Name, Created: now.UTC(), SPKI: spkiHash(der)}
	return a.issueDeviceCert(ctx, rec, pub, now, true, remote)
}

// issueDeviceCert signs the device certificate and stores the record
// (created: Create, renewal: Put over the record the caller checked).
func (a *Authority) issueDeviceCert(ctx context.Context, rec deviceRecord, pub crypto.PublicKey, now time.Time, create bool, remote string) (api.DeviceIdentity, error) {
	uri := &url.URL{Scheme: deviceURIScheme, Host: deviceURIHost, Path: "/" + rec.User + "/" + rec.ID}
	certPEM, notAfter, err := a.signClientCert(pub, pkix.Name{CommonName: rec.User, OrganizationalUnit: []string{"keyhelper"}}, uri, now, deviceCertLifetime)
	if err != nil {
		return api.DeviceIdentity{}, err
	}
	rec.Expires = notAfter
	rec.LastSeen = now.UTC()
	b, err := json.Marshal(rec)
	if err != nil {
		return api.DeviceIdentity{}, err
	}
	if create {
		_, err = a.store.Create(ctx, deviceKey(rec.User, rec.ID), b)
	} else {
		_, err = a.store.Put(ctx, deviceKey(rec.User, rec.ID), b)
	}
	if err != nil {
		return api.DeviceIdentity{}, err
	}
	typ := "device.register"
	if !create {
		typ = "device.renew"
	}
	a.auditDevice(ctx, typ, rec.User, rec.ID, remote, true, "")
	return api.DeviceIdentity{
		DeviceID:    rec.ID,
		User:        rec.User,
		Certificate: certPEM,
		TLSRoot:     string(a.keys.tls.PEM()),
		Expires:     rec.Expires,
	}, nil
}

func (a *Authority) auditDevice(ctx context.Context, typ, user, id, remote string, ok bool, reason string) {
	ev := a.newEvent(typ, a.now())
	ev.User, ev.Actor, ev.Success, ev.Remote = user, "device", ok, remote
	if ValidateUserName(user) != nil {
		ev.User = ""
	}
	ev.Fields = map[string]string{}
	if id != "" {
		ev.Fields["device"] = id
	}
	if reason != "" {
		ev.Fields["reason"] = reason
	}
	if err := a.writeEvent(ctx, ev); err != nil {
		a.log.Error("audit write failed", "err", err, "type", typ)
	}
}

// device is an authenticated device: its record and its live user.
type device struct {
	rec  deviceRecord
	rev  int64
	user *userRecord
}

// authenticateDevice checks a verified client certificate chain (the TLS
// layer has checked it chains to the root and is in its validity window)
// against the device records.
func (a *Authority) authenticateDevice(ctx context.Context, leaf *x509.Certificate) (*device, error) {
	if leaf == nil || len(leaf.URIs) != 1 {
		return nil, ErrBadDevice
	}
	u := leaf.URIs[0]
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if u.Scheme != deviceURIScheme || u.Host != deviceURIHost || len(parts) != 2 || ValidateUserName(parts[0]) != nil {
		return nil, ErrBadDevice
	}
	it, err := a.store.Get(ctx, deviceKey(parts[0], parts[1]))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrBadDevice
	}
	if err != nil {
		return nil, err
	}
	rec, err := decodeItem[deviceRecord](&a.decoded, it)
	if err != nil {
		return nil, fmt.Errorf("ca: damaged device record: %w", err)
	}
	if rec.Revoked || rec.SPKI != spkiHash(leaf.RawSubjectPublicKeyInfo) || rec.User != leaf.Subject.CommonName {
		return nil, ErrBadDevice
	}
	user, _, err := a.getUser(ctx, rec.User)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrBadDevice
	}
	if err != nil {
		return nil, err
	}
	if user.locked(a.now()) {
		return nil, lockedErr(user)
	}
	return &device{rec: rec, rev: it.Revision, user: user}, nil
}

// RenewDevice reissues the certificate of an authenticated device for the
// same key. The caller passes the device's verified leaf certificate.
func (a *Authority) RenewDevice(ctx context.Context, leaf *x509.Certificate, remote string) (api.DeviceIdentity, error) {
	d, err := a.authenticateDevice(ctx, leaf)
	if err != nil {
		return api.DeviceIdentity{}, err
	}
	return a.issueDeviceCert(ctx, d.rec, leaf.PublicKey, a.now(), false, remote)
}

// Devices lists a user's devices (all users when user is empty).
func (a *Authority) Devices(ctx context.Context, user string) ([]api.Device, error) {
	prefix := "devices/"
	if user != "" {
		if err := ValidateUserName(user); err != nil {
			return nil, err
		}
		prefix += user + "/"
	}
	items, _, err := a.store.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := []api.Device{}
	for _, it := range items {
		var r deviceRecord
		if err := json.Unmarshal(it.Value, &r); err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		out = append(out, api.Device{ID: r.ID, User: r.User, Created: r.Created, Expires: r.Expires, LastSeen: r.LastSeen, Revoked: r.Revoked})
	}
	return out, nil
}

// RevokeDevice marks a device revoked: its certificate stops working at
// once, whatever its validity.
func (a *Authority) RevokeDevice(ctx context.Context, user, id, actor string) error {
	if err := ValidateUserName(user); err != nil {
		return err
	}
	for {
		it, err := a.store.Get(ctx, deviceKey(user, id))
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("ca: device %s of %q: %w", id, user, ErrNotFound)
		}
		if err != nil {
			return err
		}
		var r deviceRecord
		if err := json.Unmarshal(it.Value, &r); err != nil {
			return fmt.Errorf("ca: damaged device record: %w", err)
		}
		r.Revoked = true
		b, _ := json.Marshal(r)
		if _, err := a.store.CompareAndSwap(ctx, it.Key, it.Revision, b); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return err
		}
		return a.auditAdmin(ctx, "device.revoke", user, actor, map[string]string{"device": id})
	}
}
