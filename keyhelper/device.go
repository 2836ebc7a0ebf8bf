package keyhelper

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
)

// A device identity is how the daemon proves itself to the CA: an ECDSA
// P-256 key made here and never sent, and the TLS client certificate the
// CA's TLS root issued for it, bound to one user (docs/api.md, Devices).
// It lives in the cluster's state directory, in device/:
const (
	deviceDirName  = "device"
	deviceKeyFile  = "device.key"   // the private key, PKCS#8 PEM
	deviceCertFile = "device.crt"   // the client certificate, PEM; replaced on renewal
	deviceRootFile = "tls_root.crt" // the CA's TLS root that issued it, PEM
	deviceInfoFile = "device.json"  // written last: a directory without it holds no identity
)

// deviceInfoVersion is the version of device.json written.
const deviceInfoVersion = 1

// deviceInfo is device.json.
type deviceInfo struct {
	Version  int    `json:"version"`
	Server   string `json:"server"`
	User     string `json:"user"`
	DeviceID string `json:"device_id"`
	// Pin is the TLS root pin the registration used, if any; later
	// connections check it.
	Pin        string    `json:"pin,omitempty"`
	Registered time.Time `json:"registered"`
}

// ErrNotRegistered reports that no device identity is stored for the
// cluster.
var ErrNotRegistered = errors.New("keyhelper: this device is not registered: run with --token from caadm tokens add --role keyhelper --user NAME or the web page")

// RegistrationError reports that the daemon cannot run until this device
// is registered (again) or its flags match the registration: no identity
// and no token, a token the CA refused, a revoked device or removed user,
// an expired device certificate, or --auth naming another user than the
// identity. Restarting the daemon does not help.
type RegistrationError struct {
	// Msg says what happened and what to do.
	Msg string
	Err error
}

func (e *RegistrationError) Error() string { return "keyhelper: " + e.Msg }

func (e *RegistrationError) Unwrap() error { return e.Err }

// device is a stored device identity.
type device struct {
	dir  string
	info deviceInfo
	key  *ecdsa.PrivateKey
	cert tls.Certificate   // the key and the client certificate
	leaf *x509.Certificate // the client certificate
	root []byte            // PEM of the TLS root
	due  time.Time         // when to renew; zero: by the certificate (renewAt)
}

// deviceDir returns the directory of the device identity for s.
func (h *Home) deviceDir(s Server) string { return filepath.Join(h.serverDir(s), deviceDirName) }

// loadDevice reads the identity in dir. It is ErrNotRegistered when there
// is none, and an *UnsafeError when a file is not private.
func loadDevice(dir string) (*device, error) {
	infoPath := filepath.Join(dir, deviceInfoFile)
	if _, err := os.Lstat(infoPath); errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotRegistered
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, err
	}
	read := func(name string) ([]byte, error) {
		path := filepath.Join(dir, name)
		if err := checkPrivateFile(path); err != nil {
			var ue *UnsafeError
			if errors.As(err, &ue) {
				return nil, err
			}
			return nil, fmt.Errorf("keyhelper: the device identity in %s is incomplete (%v); remove the directory and register again with a new token", dir, unwrapPath(err))
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("keyhelper: %w", err)
		}
		return b, nil
	}
	d := &device{dir: dir}
	b, err := read(deviceInfoFile)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &d.info); err != nil || d.info.Version != deviceInfoVersion || d.info.DeviceID == "" {
		return nil, fmt.Errorf("keyhelper: %s is damaged or of another version; remove %s and register again with a new token", infoPath, dir)
	}
	keyPEM, err := read(deviceKeyFile)
	if err != nil {
		return nil, err
	}
	certPEM, err := read(deviceCertFile)
	if err != nil {
		return nil, err
	}
	if d.root, err = read(deviceRootFile); err != nil {
		return nil, err
	}
	if err := d.setCert(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("keyhelper: the device identity in %s cannot be used (%v); remove the directory and register again with a new token", dir, err)
	}
	return d, nil
}

// setCert parses the certificate and key and makes them the identity.
func (d *device) setCert(certPEM, keyPEM []byte) error {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return err
	}
	key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return fmt.Errorf("the device key is a %T, not ECDSA", cert.PrivateKey)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return err
		}
	}
	d.key, d.cert, d.leaf = key, cert, leaf
	return nil
}

// registerDevice makes a key, exchanges token for a certificate of it as
// user, and stores the identity in dir. c trusts the CA (by pin or the
// system's roots) and presents no client certificate.
func registerDevice(ctx context.Context, c *client.Client, dir string, s Server, user, token, pin string, rand io.Reader, now time.Time) (*device, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: making the device key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: %w", err)
	}
	id, err := c.RegisterDevice(ctx, api.RegisterDeviceRequest{
		Token: token, User: user,
		PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})),
	})
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: %w", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	d := &device{dir: dir, info: deviceInfo{
		Version: deviceInfoVersion, Server: s.URL(), User: user, DeviceID: id.DeviceID, Pin: pin, Registered: now.UTC(),
	}}
	if err := d.accept(id, keyPEM); err != nil {
		return nil, err
	}
	if err := ensurePrivateDir(filepath.Dir(dir), true); err != nil {
		return nil, err
	}
	if err := ensurePrivateDir(dir, true); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, deviceKeyFile), keyPEM); err != nil {
		return nil, err
	}
	if err := d.writeCert(); err != nil {
		return nil, err
	}
	return d, d.saveInfo()
}

// accept checks an identity the CA returned (at registration or renewal)
// and makes it d's certificate: for d's device and user, for keyPEM's
// key, issued by the TLS root it came with.
func (d *device) accept(id api.DeviceIdentity, keyPEM []byte) error {
	bad := func(why string, args ...any) error {
		return fmt.Errorf("keyhelper: the CA returned a device certificate %s; tell your administrator", fmt.Sprintf(why, args...))
	}
	if id.DeviceID != d.info.DeviceID || id.User != d.info.User || id.DeviceID == "" {
		return bad("for device %q of %q, not %q of %q", id.DeviceID, id.User, d.info.DeviceID, d.info.User)
	}
	next := &device{dir: d.dir, info: d.info, root: []byte(id.TLSRoot)}
	if err := next.setCert([]byte(id.Certificate), keyPEM); err != nil {
		return bad("that does not fit the device key (%v)", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(next.root) {
		return bad("without a TLS root")
	}
	if _, err := next.leaf.Verify(x509.VerifyOptions{
		Roots: roots, CurrentTime: next.leaf.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return bad("that its TLS root did not issue (%v)", err)
	}
	*d = *next
	return nil
}

// keyPEM returns the device key, PEM-encoded.
func (d *device) keyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(d.key)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// renewed makes a renewed identity d's and stores it.
func (d *device) renewed(id api.DeviceIdentity) error {
	keyPEM, err := d.keyPEM()
	if err != nil {
		return err
	}
	if err := d.accept(id, keyPEM); err != nil {
		return err
	}
	return d.writeCert()
}

// writeCert stores the certificate and the root, atomically, 0600.
func (d *device) writeCert() error {
	if err := writeFile(filepath.Join(d.dir, deviceRootFile), d.root); err != nil {
		return err
	}
	return writeFile(filepath.Join(d.dir, deviceCertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.leaf.Raw}))
}

// saveInfo stores device.json.
func (d *device) saveInfo() error {
	b, err := json.MarshalIndent(d.info, "", "  ")
	if err != nil {
		return fmt.Errorf("keyhelper: %w", err)
	}
	return writeFile(filepath.Join(d.dir, deviceInfoFile), append(b, '\n'))
}

// remove deletes the identity, device.json first.
func (d *device) remove() error {
	for _, f := range []string{deviceInfoFile, deviceCertFile, deviceKeyFile, deviceRootFile} {
		if err := os.Remove(filepath.Join(d.dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("keyhelper: %w", err)
		}
	}
	if err := os.Remove(d.dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("keyhelper: %w", err)
	}
	return nil
}

// expires returns when the device certificate ends.
func (d *device) expires() time.Time { return d.leaf.NotAfter }

// renewAt returns when the device certificate is due for renewal: when
// two thirds of its life have passed, counted from its NotBefore, or from
// when this process received it (see renewedAt).
func (d *device) renewAt() time.Time {
	if !d.due.IsZero() {
		return d.due
	}
	life := d.leaf.NotAfter.Sub(d.leaf.NotBefore)
	return d.leaf.NotBefore.Add(life / 3 * 2)
}

// renewedAt sets the next renewal after receiving the certificate at now:
// two thirds of what is left of it, and not sooner than a minute. Counting
// from now rather than from NotBefore keeps a machine whose clock is ahead
// of the CA's from renewing over and over.
func (d *device) renewedAt(now time.Time) {
	d.due = now.Add(max(d.leaf.NotAfter.Sub(now)/3*2, time.Minute))
}

// client returns a client of the CA at s that presents the device
// certificate. It trusts the CA through pin when there is one, and
// otherwise through the system's roots and the stored TLS root.
func (d *device) client(s Server, pin string, timeout time.Duration) (*client.Client, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	roots.AppendCertsFromPEM(d.root)
	cert := d.cert
	return client.New(s.URL(), client.Options{Pin: pin, RootCAs: roots, ClientCert: &cert, Timeout: timeout})
}
