package node

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/atomicfile"
	"github.com/opensshca/suite/internal/nodedir"
)

// The node holds a reverse tunnel (package sshproxy/tunnel) to every
// proxy the CA lists, authenticated with its host certificate, so the
// proxies reach its sshd without an open port. The list is kept in
// proxies.json so that a restart while the CA is down still brings the
// tunnels up.

// hostSigner loads the host key and its current certificate; it is called
// for every tunnel connection, so a renewed certificate is used at once.
func (r *Runner) hostSigner() (ssh.Signer, error) {
	key, err := os.ReadFile(r.cfg.Dir.Path(nodedir.HostKey))
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.cfg.Dir.Path(nodedir.HostKey), err)
	}
	text, err := os.ReadFile(r.cfg.Dir.Path(nodedir.HostCert))
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.cfg.Dir.Path(nodedir.HostCert), err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("%s is not a certificate", r.cfg.Dir.Path(nodedir.HostCert))
	}
	return ssh.NewCertSigner(cert, signer)
}

// hostCAs reads the host CA key the proxies' certificates must be from.
func (r *Runner) hostCAs() []ssh.PublicKey {
	text, err := os.ReadFile(r.cfg.Dir.Path(nodedir.HostCA))
	if err != nil {
		r.cfg.Log.Warn("reading the host CA key", "err", err)
		return nil
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(text)
	if err != nil {
		r.cfg.Log.Warn("parsing the host CA key", "err", err)
		return nil
	}
	return []ssh.PublicKey{k}
}

// followProxies points the tunnels at the proxies the CA lists (unless
// --proxy fixed them) and remembers the list.
func (r *Runner) followProxies(ps []api.ProxyInfo) {
	pool := r.tunnels.Load()
	if pool == nil || len(r.cfg.Proxies) > 0 {
		return
	}
	var addrs []string
	for _, p := range ps {
		if p.TunnelAddr != "" && !slices.Contains(addrs, p.TunnelAddr) {
			addrs = append(addrs, p.TunnelAddr)
		}
	}
	pool.Set(addrs)
	if b, err := json.Marshal(addrs); err == nil {
		if err := atomicfile.WriteFile(r.cfg.Dir.Path(nodedir.Proxies), b, 0o644); err != nil {
			r.cfg.Log.Warn("saving the proxy list", "err", err)
		}
	}
}

func (r *Runner) loadProxies() ([]string, error) {
	b, err := os.ReadFile(r.cfg.Dir.Path(nodedir.Proxies))
	if err != nil {
		return nil, err
	}
	var addrs []string
	return addrs, json.Unmarshal(b, &addrs)
}

// TunnelsUp lists the proxies this node has a tunnel to (for tests and
// status).
func (r *Runner) TunnelsUp() []string {
	if pool := r.tunnels.Load(); pool != nil {
		return pool.Connected()
	}
	return nil
}
