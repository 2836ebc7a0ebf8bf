package tunnel

import (
	"golang.org/x/crypto/ssh"
)

// Algorithms both ends allow. x/crypto's defaults also allow SHA-1 key
// exchange and MACs and plain ssh-rsa signatures; the tunnel has only our
// own two programs at its ends, so it can be strict.
var (
	kexAlgorithms = []string{
		ssh.KeyExchangeMLKEM768X25519,
		ssh.KeyExchangeCurve25519,
	}
	// AES-GCM first: it has amd64 assembly in Go, chacha20 does not
	// (FIELD-NOTES.md). All three are AEAD ciphers.
	cipherAlgorithms = []string{
		ssh.CipherAES128GCM,
		ssh.CipherAES256GCM,
		ssh.CipherChaCha20Poly1305,
	}
	// MACs are unused with AEAD ciphers; listed so the offer carries no SHA-1.
	macAlgorithms = []string{
		ssh.HMACSHA256ETM,
		ssh.HMACSHA512ETM,
	}
	// hostCertAlgorithms are the host key algorithms a node accepts from a
	// proxy: certificates only.
	hostCertAlgorithms = []string{
		ssh.CertAlgoED25519v01,
		ssh.CertAlgoECDSA256v01,
		ssh.CertAlgoECDSA384v01,
		ssh.CertAlgoECDSA521v01,
		ssh.CertAlgoRSASHA512v01,
		ssh.CertAlgoRSASHA256v01,
	}
	// signatureAlgorithms are the signature algorithms accepted from a node
	// when it authenticates (for a certificate, made with the certified
	// key), and from a host CA on a certificate.
	signatureAlgorithms = []string{
		ssh.KeyAlgoED25519,
		ssh.KeyAlgoECDSA256,
		ssh.KeyAlgoECDSA384,
		ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoRSASHA512,
		ssh.KeyAlgoRSASHA256,
	}
)

func baseConfig() ssh.Config {
	return ssh.Config{
		KeyExchanges: kexAlgorithms,
		Ciphers:      cipherAlgorithms,
		MACs:         macAlgorithms,
	}
}
