package sshproxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/internal/atomicfile"
)

// Files in the proxy's data directory (default /var/lib/teleport-proxy).
const (
	fileConfig       = "proxy.json"
	fileHostKey      = "host_key"
	fileHostCert     = "host_key-cert.pub"
	fileIdentityKey  = "identity.key"
	fileIdentityCert = "identity.crt"
	filePolicy       = "policy.json"
	dirRecordings    = "recordings"
)

// DefaultDataDir is the data directory of a packaged install.
const DefaultDataDir = "/var/lib/teleport-proxy"

// proxyConfig is proxy.json, written at join.
type proxyConfig struct {
	Server string    `json:"server"`
	Pin    string    `json:"pin"`
	Name   string    `json:"name"`
	Joined time.Time `json:"joined"`
}

// identity is what the proxy holds: its host key and certificate (shown to
// users and nodes) and its TLS client identity (for the CA).
type identity struct {
	cfg      proxyConfig
	hostKey  ssh.Signer
	hostCert *ssh.Certificate
	tls      *tls.Certificate
	tlsLeaf  *x509.Certificate
}

func (id *identity) hostSigner() (ssh.Signer, error) {
	return ssh.NewCertSigner(id.hostCert, id.hostKey)
}

// JoinOptions are what the first start needs.
type JoinOptions struct {
	Server, Token, Pin, Name string
}

// loadOrJoin loads the identity in dir, or joins with the token when the
// directory holds none. A failed join leaves nothing behind.
func loadOrJoin(ctx context.Context, dir string, j JoinOptions, publicAddr, tunnelAddr string) (*identity, error) {
	if _, err := os.Stat(filepath.Join(dir, fileConfig)); err == nil {
		return loadIdentity(dir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if j.Server == "" || j.Token == "" || j.Pin == "" || j.Name == "" {
		return nil, fmt.Errorf("%s holds no proxy identity: the first start needs --server, --token (caadm tokens add --role proxy), --ca-pin and --name", dir)
	}
	hostPub, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	sshPub, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		return nil, err
	}
	tlsKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tlsPubDER, err := x509.MarshalPKIXPublicKey(&tlsKey.PublicKey)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(j.Server, client.Options{Pin: j.Pin})
	if err != nil {
		return nil, err
	}
	id, err := cl.JoinProxy(ctx, api.ProxyJoinRequest{
		Token: j.Token, Name: j.Name, PublicAddr: publicAddr, TunnelAddr: tunnelAddr,
		HostPublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))),
		TLSPublicKey:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: tlsPubDER})),
	})
	if err != nil {
		return nil, fmt.Errorf("join refused: %w", err)
	}
	if _, err := parseHostCert(id.HostCertificate, sshPub); err != nil {
		return nil, fmt.Errorf("the CA's answer does not check out: %w", err)
	}
	privPEM, err := ssh.MarshalPrivateKey(hostPriv, j.Name)
	if err != nil {
		return nil, err
	}
	tlsDER, err := x509.MarshalPKCS8PrivateKey(tlsKey)
	if err != nil {
		return nil, err
	}
	conf, err := json.MarshalIndent(proxyConfig{Server: j.Server, Pin: j.Pin, Name: id.Name, Joined: time.Now().UTC()}, "", "  ")
	if err != nil {
		return nil, err
	}
	created := false
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		created = true
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var written []string
	files := []struct {
		name string
		data []byte
	}{
		{fileHostKey, pem.EncodeToMemory(privPEM)},
		{fileHostCert, []byte(id.HostCertificate + "\n")},
		{fileIdentityKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: tlsDER})},
		{fileIdentityCert, []byte(id.TLSCertificate)},
		{fileConfig, append(conf, '\n')}, // last: its presence means "joined"
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := atomicfile.WriteFile(p, f.data, 0o600); err != nil {
			for _, w := range written {
				_ = os.Remove(w)
			}
			if created {
				_ = os.Remove(dir)
			}
			return nil, fmt.Errorf("%w (the CA registered proxy %s: run caadm proxies rm %s before joining again)", err, j.Name, j.Name)
		}
		written = append(written, p)
	}
	return loadIdentity(dir)
}

// loadIdentity reads the identity files.
func loadIdentity(dir string) (*identity, error) {
	var id identity
	b, err := os.ReadFile(filepath.Join(dir, fileConfig))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &id.cfg); err != nil || id.cfg.Server == "" || id.cfg.Pin == "" || id.cfg.Name == "" {
		return nil, fmt.Errorf("%s: damaged (server, pin or name missing)", filepath.Join(dir, fileConfig))
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, fileHostKey))
	if err != nil {
		return nil, err
	}
	if id.hostKey, err = ssh.ParsePrivateKey(keyPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, fileHostKey), err)
	}
	certText, err := os.ReadFile(filepath.Join(dir, fileHostCert))
	if err != nil {
		return nil, err
	}
	if id.hostCert, err = parseHostCert(string(certText), id.hostKey.PublicKey()); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, fileHostCert), err)
	}
	tc, err := tls.LoadX509KeyPair(filepath.Join(dir, fileIdentityCert), filepath.Join(dir, fileIdentityKey))
	if err != nil {
		return nil, fmt.Errorf("proxy identity: %w", err)
	}
	id.tls = &tc
	if id.tlsLeaf, err = x509.ParseCertificate(tc.Certificate[0]); err != nil {
		return nil, err
	}
	return &id, nil
}

// parseHostCert parses an authorized_keys-form host certificate for key.
func parseHostCert(text string, key ssh.PublicKey) (*ssh.Certificate, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(text))
	if err != nil {
		return nil, err
	}
	c, ok := pub.(*ssh.Certificate)
	if !ok || c.CertType != ssh.HostCert {
		return nil, errors.New("not a host certificate")
	}
	if string(c.Key.Marshal()) != string(key.Marshal()) {
		return nil, errors.New("the host certificate is for another key")
	}
	return c, nil
}

// renew asks the CA for new certificates for the same keys, registering
// the current addresses, and writes them.
func (id *identity) renew(ctx context.Context, cl *client.Client, dir, publicAddr, tunnelAddr, sessionSigner string) error {
	res, err := cl.RenewProxy(ctx, api.ProxyRenewRequest{
		HostPublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(id.hostKey.PublicKey()))),
		PublicAddr:    publicAddr, TunnelAddr: tunnelAddr, SessionSigner: sessionSigner,
	})
	if err != nil {
		return err
	}
	cert, err := parseHostCert(res.HostCertificate, id.hostKey.PublicKey())
	if err != nil {
		return fmt.Errorf("renewed host certificate: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, fileHostCert), []byte(res.HostCertificate+"\n"), 0o600); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, fileIdentityCert), []byte(res.TLSCertificate), 0o600); err != nil {
		return err
	}
	id.hostCert = cert
	return nil
}
