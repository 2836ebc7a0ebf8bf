package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// Ways a session reaches its node through the proxy.
const (
	hopJump   = "jump"   // like ssh -J: direct-tcpip to the node, an inner SSH connection over it
	hopSingle = "single" // the single-hop form: user root@node1 at the proxy
	hopMix    = "mix"    // even sessions jump, odd ones single
)

// sshUser is a session user with a key certified by the user CA.
type sshUser struct {
	name   string
	signer ssh.Signer // the key with its certificate
}

// newSSHUser makes a key for name and has the CA certify it (the admin
// API, as a bot's certificate would be).
func (c *cluster) newSSHUser(ctx context.Context, name string) (sshUser, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return sshUser{}, err
	}
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return sshUser{}, err
	}
	cert, err := c.admin.Sign(ctx, api.AdminSignRequest{Name: name, PublicKey: string(ssh.MarshalAuthorizedKey(key.PublicKey()))})
	if err != nil {
		return sshUser{}, fmt.Errorf("soak: certifying %s: %w", name, err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cert.Certificate))
	if err != nil {
		return sshUser{}, fmt.Errorf("soak: %s's certificate: %w", name, err)
	}
	sc, ok := pub.(*ssh.Certificate)
	if !ok {
		return sshUser{}, fmt.Errorf("soak: the CA returned a plain key for %s", name)
	}
	signer, err := ssh.NewCertSigner(sc, key)
	if err != nil {
		return sshUser{}, err
	}
	return sshUser{name: name, signer: signer}, nil
}

// dialer opens SSH connections to nodes through the proxy, checking
// every host certificate against the host CA (as "@cert-authority *" in
// known_hosts does).
type dialer struct {
	proxyAddr string
	hostCA    ssh.PublicKey
	timeout   time.Duration
}

func newDialer(c *cluster, timeout time.Duration) (*dialer, error) {
	hostCA, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.info.HostCA))
	if err != nil {
		return nil, fmt.Errorf("soak: host CA key: %w", err)
	}
	return &dialer{proxyAddr: c.proxyAddr, hostCA: hostCA, timeout: timeout}, nil
}

func (d *dialer) config(user string, u sshUser) *ssh.ClientConfig {
	checker := &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, _ string) bool {
			return bytes.Equal(auth.Marshal(), d.hostCA.Marshal())
		},
	}
	return &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(u.signer)},
		HostKeyCallback: checker.CheckHostKey,
		Timeout:         d.timeout,
	}
}

// dial connects u to login@node in the way hop says. The returned close
// function closes every connection it opened.
func (d *dialer) dial(ctx context.Context, u sshUser, node, hop string) (*ssh.Client, func(), error) {
	nc, err := (&net.Dialer{Timeout: d.timeout}).DialContext(ctx, "tcp", d.proxyAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to the proxy: %w", err)
	}
	// The whole setup, both handshakes, is bounded by the timeout.
	_ = nc.SetDeadline(time.Now().Add(d.timeout))
	user := u.name
	if hop == hopSingle {
		user = login + "@" + node
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, d.proxyAddr, d.config(user, u))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("logging in to the proxy as %s: %w", user, err)
	}
	outer := ssh.NewClient(cc, chans, reqs)
	if hop == hopSingle {
		_ = nc.SetDeadline(time.Time{})
		return outer, func() { outer.Close() }, nil
	}
	addr := net.JoinHostPort(node, "22")
	inner, err := outer.DialContext(ctx, "tcp", addr)
	if err != nil {
		outer.Close()
		return nil, nil, fmt.Errorf("direct-tcpip to %s: %w", addr, err)
	}
	// A channel has no deadlines; nc's still bounds the inner handshake.
	ic, ichans, ireqs, err := ssh.NewClientConn(inner, addr, d.config(login, u))
	if err != nil {
		outer.Close()
		return nil, nil, fmt.Errorf("logging in to %s through the proxy: %w", addr, err)
	}
	_ = nc.SetDeadline(time.Time{})
	c := ssh.NewClient(ic, ichans, ireqs)
	return c, func() { c.Close(); outer.Close() }, nil
}
