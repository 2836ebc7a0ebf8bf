package ca

import (
	"context"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// Info returns the authority's public keys and pin.
func (a *Authority) Info() api.CAInfo {
	ak := func(s ssh.Signer) string { return trimNL(ssh.MarshalAuthorizedKey(s.PublicKey())) }
	host := ak(a.keys.host)
	return api.CAInfo{
		UserCA:        ak(a.keys.user),
		HostCA:        host,
		SessionCA:     ak(a.keys.session),
		KnownHosts:    "@cert-authority * " + host,
		Pin:           a.Pin(),
		TLSRoot:       string(a.keys.tls.PEM()),
		RecordingMode: a.cfg.RecordingMode,
		ProxyAddr:     a.cfg.ProxyAddr,
	}
}

// InfoWithProxies is Info plus the registered proxies; ProxyAddr is the
// configured address or else the first registered proxy's.
func (a *Authority) InfoWithProxies(ctx context.Context) api.CAInfo {
	info := a.Info()
	ps, err := a.proxies(ctx)
	if err != nil {
		a.log.Warn("listing proxies", "err", err)
		return info
	}
	for _, p := range ps {
		info.Proxies = append(info.Proxies, p.info())
	}
	if info.ProxyAddr == "" && len(ps) > 0 {
		info.ProxyAddr = ps[0].PublicAddr
	}
	return info
}
