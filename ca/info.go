package ca

import (
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
