// Package node is teleport-node, the agent on every node (DESIGN.md
// sections 2 and 3, Node). sshd stays the SSH server; the node gives it a
// host certificate, the CA keys to trust and a revocation list, keeps the
// login-policy cache that teleport-authkeys answers sshd from, and writes
// libnss-extrausers files for the personal accounts the CA assigns.
//
// join trades a node token for the node's identity; sshd-config prints
// the sshd_config drop-in and install-sshd-config installs it with
// validation and rollback; run keeps everything current: it renews the
// host certificate at two thirds of its life and follows the CA's policy
// with a long poll, so a removed or locked user is refused within
// seconds. The data directory layout is in package internal/nodedir.
package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/internal/atomicfile"
	"github.com/opensshca/suite/internal/nodedir"
)

// DefaultAuthkeysUser is the account sshd runs teleport-authkeys as
// (AuthorizedPrincipalsCommandUser); the packages create it.
const DefaultAuthkeysUser = "teleport-authkeys"

// JoinConfig is what teleport-node join needs.
type JoinConfig struct {
	Server    string // https://ca.example.com:3080
	Token     string
	Pin       string
	Dir       string
	Name      string
	FQDN      string
	Addresses []string
	// SSHAddr, when set, lets proxies dial this sshd directly when the
	// node holds no tunnel to them.
	SSHAddr string
	// AuthkeysUser may read the node identity and write the policy cache.
	AuthkeysUser string
	Log          *slog.Logger
}

// Join makes the node's keys, exchanges the token for its identity and
// writes the data directory. On failure it leaves nothing behind.
func Join(ctx context.Context, cfg JoinConfig) (err error) {
	if err := nodedir.CheckPath(cfg.Dir); err != nil {
		return err
	}
	d := nodedir.Dir(cfg.Dir)
	if _, err := os.Stat(d.Path(nodedir.Config)); err == nil {
		return fmt.Errorf("%s has already joined (%s exists); remove the node (caadm nodes rm) and the directory to join again", cfg.Dir, d.Path(nodedir.Config))
	}
	if cfg.Token == "" || cfg.Pin == "" || cfg.Server == "" || cfg.Name == "" {
		return errors.New("--server, --token, --ca-pin and --name are all required")
	}
	owner, err := lookupOwner(cfg.AuthkeysUser)
	if err != nil {
		return err
	}
	hostPub, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	sshPub, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		return err
	}
	tlsKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tlsPubDER, err := x509.MarshalPKIXPublicKey(&tlsKey.PublicKey)
	if err != nil {
		return err
	}
	cl, err := client.New(cfg.Server, client.Options{Pin: cfg.Pin})
	if err != nil {
		return err
	}
	id, err := cl.JoinNode(ctx, api.NodeJoinRequest{
		Token: cfg.Token, Name: cfg.Name, FQDN: cfg.FQDN, Addresses: cfg.Addresses, SSHAddr: cfg.SSHAddr,
		HostPublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))),
		TLSPublicKey:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: tlsPubDER})),
	})
	if err != nil {
		return fmt.Errorf("join refused: %w", err)
	}
	if err := checkIdentity(id, sshPub, cfg.Pin); err != nil {
		return fmt.Errorf("the CA's answer does not check out: %w", err)
	}

	created := false
	if _, err := os.Stat(cfg.Dir); errors.Is(err, os.ErrNotExist) {
		created = true
	}
	var written []string
	defer func() {
		if err == nil {
			return
		}
		for _, p := range written {
			_ = os.Remove(p)
		}
		_ = os.Remove(d.Path(nodedir.CacheDir))
		if created {
			_ = os.Remove(cfg.Dir)
		}
		err = fmt.Errorf("%w (the CA registered node %s: run caadm nodes rm %s before joining again)", err, cfg.Name, cfg.Name)
	}()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(cfg.Dir, 0o755); err != nil {
		return err
	}
	if err := makeCacheDir(d, owner); err != nil {
		return err
	}
	privPEM, err := ssh.MarshalPrivateKey(hostPriv, cfg.Name)
	if err != nil {
		return err
	}
	tlsDER, err := x509.MarshalPKCS8PrivateKey(tlsKey)
	if err != nil {
		return err
	}
	conf, err := json.MarshalIndent(nodedir.NodeConfig{
		Server: cfg.Server, Pin: cfg.Pin, Name: id.Name, Labels: id.Labels, Joined: time.Now().UTC(),
		AuthkeysUser: cfg.AuthkeysUser,
	}, "", "  ")
	if err != nil {
		return err
	}
	files := []struct {
		name  string
		data  []byte
		mode  os.FileMode
		group int
	}{
		{nodedir.HostKey, pem.EncodeToMemory(privPEM), 0o600, -1},
		{nodedir.HostPub, ssh.MarshalAuthorizedKey(sshPub), 0o644, -1},
		{nodedir.HostCert, []byte(id.HostCertificate + "\n"), 0o644, -1},
		{nodedir.IdentityKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: tlsDER}), 0o640, owner.gid},
		{nodedir.IdentityCert, []byte(id.TLSCertificate), 0o644, -1},
	}
	files = append(files, caFiles(id.CA)...)
	files = append(files, struct {
		name  string
		data  []byte
		mode  os.FileMode
		group int
	}{nodedir.Config, append(conf, '\n'), 0o644, -1})
	for _, f := range files {
		p := d.Path(f.name)
		if err := atomicfile.WriteFileOwned(p, f.data, f.mode, -1, f.group); err != nil {
			return err
		}
		written = append(written, p)
	}
	return nil
}

// caFiles are the CA public key files sshd and the node read.
// Trusted (TrustedUserCAKeys) holds the trusted CA key and then the
// proxies' session signers, one key per line.
func caFiles(ca api.CAInfo, signers ...string) []struct {
	name  string
	data  []byte
	mode  os.FileMode
	group int
} {
	trusted := ca.SessionCA
	if ca.RecordingMode == "off" {
		trusted = ca.UserCA
	}
	type f = struct {
		name  string
		data  []byte
		mode  os.FileMode
		group int
	}
	return []f{
		{nodedir.UserCA, []byte(ca.UserCA + "\n"), 0o644, -1},
		{nodedir.SessionCA, []byte(ca.SessionCA + "\n"), 0o644, -1},
		{nodedir.HostCA, []byte(ca.HostCA + "\n"), 0o644, -1},
		{nodedir.TrustedCA, []byte(strings.Join(append([]string{trusted}, signers...), "\n") + "\n"), 0o644, -1},
	}
}

// checkIdentity verifies what the CA sent: a host certificate for our key
// signed by the host CA, and a TLS root with the pinned key.
func checkIdentity(id api.NodeIdentity, hostPub ssh.PublicKey, pin string) error {
	if client.PinOfPEM(id.CA.TLSRoot) != pin {
		return errors.New("the TLS root it sent does not match --ca-pin")
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(id.HostCertificate))
	if err != nil {
		return fmt.Errorf("host certificate: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok || cert.CertType != ssh.HostCert {
		return errors.New("host certificate is not a host certificate")
	}
	if string(cert.Key.Marshal()) != string(hostPub.Marshal()) {
		return errors.New("host certificate is for another key")
	}
	hostCA, _, _, _, err := ssh.ParseAuthorizedKey([]byte(id.CA.HostCA))
	if err != nil {
		return fmt.Errorf("host CA key: %w", err)
	}
	if string(cert.SignatureKey.Marshal()) != string(hostCA.Marshal()) {
		return errors.New("host certificate is not signed by the host CA")
	}
	if !slices.Contains(cert.ValidPrincipals, id.Name) {
		return errors.New("host certificate does not name the node")
	}
	for _, k := range []string{id.CA.UserCA, id.CA.SessionCA} {
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil {
			return fmt.Errorf("CA key: %w", err)
		}
	}
	return nil
}

// owner is the group that may read the identity and write the cache.
type owner struct {
	name string
	gid  int // -1: leave as is (not running as root)
}

func lookupOwner(name string) (owner, error) {
	if name == "" {
		name = DefaultAuthkeysUser
	}
	if os.Geteuid() != 0 {
		return owner{name: name, gid: -1}, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return owner{}, fmt.Errorf("authkeys user %q: %w; create it (useradd --system --no-create-home --shell /usr/sbin/nologin %s) or pass --authkeys-user", name, err, name)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return owner{}, fmt.Errorf("authkeys user %q has gid %q", name, u.Gid)
	}
	return owner{name: name, gid: gid}, nil
}

// makeCacheDir creates the cache directory, writable by root and the
// authkeys user's group.
func makeCacheDir(d nodedir.Dir, o owner) error {
	p := d.Path(nodedir.CacheDir)
	if err := os.MkdirAll(p, 0o770); err != nil {
		return err
	}
	if o.gid >= 0 {
		if err := os.Chown(p, 0, o.gid); err != nil {
			return err
		}
	}
	return os.Chmod(p, 0o770)
}
