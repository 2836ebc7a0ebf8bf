package sshproxy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/atomicfile"
)

// targetCache holds the host certificates the proxy presents for nodes
// while it terminates connections to them (mode proxy). They certify one
// key the proxy makes on first start; key and certificates are kept in the
// data directory (target_key, target_certs, mode 0600), so that a proxy
// restarted while the CA is down still presents the nodes it reached
// before. Each is reused until a third of its life is left, and past that,
// while the CA cannot renew it, until it expires.
type targetCache struct {
	p   *Proxy
	key ssh.Signer

	mu    sync.Mutex
	certs map[string]*ssh.Certificate
	// inflight collapses concurrent requests for the same node.
	inflight map[string]chan struct{}
}

// targetCertTTL is what the proxy asks for (the CA's cap): renewed at 4 h
// left, a certificate carries the proxy through a CA outage of 4 h.
const targetCertTTL = 12 * time.Hour

// Files of the target cache in the data directory.
const (
	fileTargetKey   = "target_key"
	fileTargetCerts = "target_certs"
)

func newTargetCache(p *Proxy) (*targetCache, error) {
	t := &targetCache{p: p, certs: map[string]*ssh.Certificate{}, inflight: map[string]chan struct{}{}}
	keyPath := filepath.Join(p.cfg.DataDir, fileTargetKey)
	b, err := os.ReadFile(keyPath)
	switch {
	case err == nil:
		if t.key, err = ssh.ParsePrivateKey(b); err != nil {
			p.log.Warn("the target key is damaged; making a new one (host certificates for nodes are fetched again)", "err", err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	if t.key == nil {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		blk, err := ssh.MarshalPrivateKey(k, "teleport-proxy target key")
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(keyPath, pem.EncodeToMemory(blk), 0o600); err != nil {
			return nil, err
		}
		if t.key, err = ssh.NewSignerFromKey(k); err != nil {
			return nil, err
		}
		_ = os.Remove(filepath.Join(p.cfg.DataDir, fileTargetCerts))
		return t, nil
	}
	t.loadCerts()
	return t, nil
}

// loadCerts reads the saved certificates, keeping those for the current
// key that have not expired; anything else in the file is skipped.
func (t *targetCache) loadCerts() {
	b, err := os.ReadFile(filepath.Join(t.p.cfg.DataDir, fileTargetCerts))
	if err != nil {
		return
	}
	now := t.p.cfg.Clock()
	for line := range strings.Lines(string(b)) {
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			continue
		}
		c, ok := pub.(*ssh.Certificate)
		if !ok || c.CertType != ssh.HostCert || !keysEqual(c.Key, t.key.PublicKey()) || len(c.ValidPrincipals) == 0 || !t.valid(c, now) {
			continue
		}
		t.certs[c.KeyId] = c
	}
}

// saveCerts rewrites the certificate file; t.mu is held.
func (t *targetCache) saveCerts() {
	var b strings.Builder
	for _, node := range slices.Sorted(maps.Keys(t.certs)) {
		b.Write(ssh.MarshalAuthorizedKey(t.certs[node]))
	}
	if err := atomicfile.WriteFile(filepath.Join(t.p.cfg.DataDir, fileTargetCerts), []byte(b.String()), 0o600); err != nil {
		t.p.log.Warn("saving the nodes' host certificates", "err", err)
	}
}

// valid reports whether c can be presented now (a minute to spare).
func (t *targetCache) valid(c *ssh.Certificate, now time.Time) bool {
	return c != nil && now.Add(time.Minute).Before(time.Unix(int64(min(c.ValidBefore, 1<<62)), 0)) &&
		!now.Before(time.Unix(int64(c.ValidAfter), 0))
}

func (t *targetCache) fresh(c *ssh.Certificate) bool {
	if c == nil {
		return false
	}
	after, before := time.Unix(int64(c.ValidAfter), 0), time.Unix(int64(c.ValidBefore), 0)
	return t.p.cfg.Clock().Before(before.Add(-before.Sub(after) / 3))
}

// signer returns a signer presenting a host certificate for node.
func (t *targetCache) signer(ctx context.Context, node string) (ssh.Signer, error) {
	for {
		t.mu.Lock()
		if c := t.certs[node]; t.fresh(c) || (t.p.caDown() && t.valid(c, t.p.cfg.Clock())) {
			t.mu.Unlock()
			return ssh.NewCertSigner(c, t.key)
		}
		wait, busy := t.inflight[node]
		if !busy {
			wait = make(chan struct{})
			t.inflight[node] = wait
		}
		t.mu.Unlock()
		if busy {
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		c, err := t.fetch(ctx, node)
		t.mu.Lock()
		delete(t.inflight, node)
		if err == nil {
			t.certs[node] = c
			t.saveCerts()
		} else if old := t.certs[node]; t.valid(old, t.p.cfg.Clock()) {
			// The CA cannot renew it now: present it until it expires.
			t.p.log.Warn("renewing a node's host certificate failed; presenting the current one until it expires", "node", node, "err", err, "expires", time.Unix(int64(old.ValidBefore), 0).UTC())
			c, err = old, nil
		}
		close(wait)
		t.mu.Unlock()
		if err != nil {
			return nil, err
		}
		return ssh.NewCertSigner(c, t.key)
	}
}

func (t *targetCache) fetch(ctx context.Context, node string) (*ssh.Certificate, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := t.p.cl.Load().TargetCert(ctx, api.TargetCertRequest{
		Node: node, PublicKey: string(ssh.MarshalAuthorizedKey(t.key.PublicKey())), TTL: api.Duration(targetCertTTL),
	})
	if err != nil {
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status >= 500 {
			t.p.caFailed.Store(t.p.cfg.Clock().UnixNano())
		}
		return nil, fmt.Errorf("host certificate for %s: %w", node, err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(res.Certificate))
	if err != nil {
		return nil, err
	}
	c, ok := pub.(*ssh.Certificate)
	if !ok || c.CertType != ssh.HostCert || !keysEqual(c.Key, t.key.PublicKey()) {
		return nil, errors.New("the CA returned an unusable host certificate")
	}
	return c, nil
}
