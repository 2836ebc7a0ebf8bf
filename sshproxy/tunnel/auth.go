package tunnel

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrProxyNotTrusted is returned, wrapped, when a node refuses a proxy's
// host key: not a host certificate from a current host CA, or without the
// dialled host name among its principals.
var ErrProxyNotTrusted = errors.New("tunnel: proxy host key not trusted")

// maxNodeNameLen bounds the user name a node may send.
const maxNodeNameLen = 255

// certInfo is what a tunnel keeps of its node's certificate, to re-check it
// while the tunnel is up.
type certInfo struct {
	ca          []byte // the signing CA key, marshalled
	validBefore uint64
	keyID       string
	serial      uint64
}

// certInfoKey indexes ssh.Permissions.ExtraData.
type certInfoKey struct{}

// authenticate is the server's PublicKeyCallback. It accepts a node whose
// key is a host certificate from a current host CA, valid now, naming the
// SSH user name as a principal, for a registered node. A refusal is logged
// with its reason; the peer learns only that authentication failed.
func (s *Server) authenticate(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	name := meta.User()
	cert, err := s.checkNode(name, key)
	if err != nil {
		attrs := []any{
			"node", truncate(name, 64),
			"remote", meta.RemoteAddr().String(),
			"reason", err.Error(),
			"key", ssh.FingerprintSHA256(key),
		}
		if cert, ok := key.(*ssh.Certificate); ok {
			attrs = append(attrs, "key_id", truncate(cert.KeyId, 64), "serial", cert.Serial)
		}
		s.logger().Warn("tunnel: node refused", attrs...)
		if s.OnRefused != nil {
			s.OnRefused(truncate(name, 64), meta.RemoteAddr().String(), err.Error())
		}
		return nil, errRefused
	}
	info := &certInfo{
		ca:          cert.SignatureKey.Marshal(),
		validBefore: cert.ValidBefore,
		keyID:       cert.KeyId,
		serial:      cert.Serial,
	}
	return &ssh.Permissions{ExtraData: map[any]any{certInfoKey{}: info}}, nil
}

func (s *Server) checkNode(name string, key ssh.PublicKey) (*ssh.Certificate, error) {
	if name == "" || len(name) > maxNodeNameLen {
		return nil, fmt.Errorf("node name empty or longer than %d bytes", maxNodeNameLen)
	}
	cert, err := checkHostCert(name, key, marshalKeys(s.HostCAs()), s.Clock)
	if err != nil {
		return nil, err
	}
	if !s.IsNode(name) {
		return nil, errors.New("node name not registered")
	}
	return cert, nil
}

// checkProxy is the node's HostKeyCallback: the proxy must present a host
// certificate from a current host CA with the host part of addr (the
// address dialled) among its principals.
func (c *Client) checkProxy(addr string, _ net.Addr, key ssh.PublicKey) error {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if _, err := checkHostCert(host, key, marshalKeys(c.HostCAs()), c.Clock); err != nil {
		return fmt.Errorf("%w: %v", ErrProxyNotTrusted, err)
	}
	return nil
}

// checkHostCert checks that key is a host certificate for principal, signed
// by one of cas (marshalled keys) without SHA-1, and valid now by clock (nil
// means time.Now). The errors are for logs, not for peers.
func checkHostCert(principal string, key ssh.PublicKey, cas [][]byte, clock func() time.Time) (*ssh.Certificate, error) {
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("plain %s key, not a certificate", key.Type())
	}
	switch cert.CertType {
	case ssh.HostCert:
	case ssh.UserCert:
		return nil, errors.New("user certificate, not a host certificate")
	default:
		return nil, fmt.Errorf("certificate of unknown type %d", cert.CertType)
	}
	// CheckCert treats an empty principal list as "any name"; we do not.
	if !slices.Contains(cert.ValidPrincipals, principal) {
		return nil, fmt.Errorf("%q is not among the certificate's principals %q", principal, cert.ValidPrincipals)
	}
	if !containsKey(cas, cert.SignatureKey.Marshal()) {
		return nil, fmt.Errorf("certificate signed by %s, which is not a host CA",
			ssh.FingerprintSHA256(cert.SignatureKey))
	}
	// No SHA-1 (ssh-rsa, ssh-dss): OpenSSH 8.2+ refuses such certificates.
	if f := cert.Signature.Format; !slices.Contains(signatureAlgorithms, f) {
		return nil, fmt.Errorf("certificate signed with %s; SHA-1 and unknown algorithms are refused", f)
	}
	// CheckCert checks the validity window, critical options (none are
	// supported, so any is refused) and the CA's signature. It does not
	// consult IsHostAuthority; the CA was checked above.
	checker := ssh.CertChecker{Clock: clock}
	if err := checker.CheckCert(principal, cert); err != nil {
		return nil, err
	}
	return cert, nil
}

func marshalKeys(keys []ssh.PublicKey) [][]byte {
	out := make([][]byte, 0, len(keys))
	for _, k := range keys {
		if k != nil {
			out = append(out, k.Marshal())
		}
	}
	return out
}

func containsKey(keys [][]byte, k []byte) bool {
	return slices.ContainsFunc(keys, func(c []byte) bool { return bytes.Equal(c, k) })
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
