package sshproxy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// targetCache holds the host certificates the proxy presents for nodes
// while it terminates connections to them (mode proxy). They certify one
// key the proxy makes at start and never writes to disk; each is reused
// until a third of its life is left.
type targetCache struct {
	p   *Proxy
	key ssh.Signer

	mu    sync.Mutex
	certs map[string]*ssh.Certificate
	// inflight collapses concurrent requests for the same node.
	inflight map[string]chan struct{}
}

// targetCertTTL is what the proxy asks for; the CA caps it at 12 h.
const targetCertTTL = 6 * time.Hour

func newTargetCache(p *Proxy) (*targetCache, error) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		return nil, err
	}
	return &targetCache{p: p, key: s, certs: map[string]*ssh.Certificate{}, inflight: map[string]chan struct{}{}}, nil
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
		if c := t.certs[node]; t.fresh(c) {
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
