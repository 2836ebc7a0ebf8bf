package keyhelper

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// identity is the key a certificate is requested for.
type identity struct {
	pub ssh.PublicKey
	// priv is the private key for the agent; nil when it is not at hand,
	// and then privNote says why.
	priv     any
	privNote string
	// pem is the private key file of a key the keyhelper made.
	pem []byte
	// pubFile, privFile and certFile are the files of a key given with
	// --key-path ("" privFile when it cannot be derived).
	pubFile, privFile, certFile string
}

// newIdentity makes an ed25519 key in memory.
func newIdentity(rand io.Reader, comment string) (*identity, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: making a key: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: encoding the key: %w", err)
	}
	return &identity{pub: sp, priv: priv, pem: pem.EncodeToMemory(block)}, nil
}

// DefaultCertPath returns where the certificate of the public key at
// pubPath goes by default, as ssh-keygen -s puts it: "id_ed25519.pub"
// gives "id_ed25519-cert.pub".
func DefaultCertPath(pubPath string) string {
	return strings.TrimSuffix(pubPath, ".pub") + "-cert.pub"
}

// loadIdentity reads the public key at pubPath (authorized_keys form) and,
// when it is there and needs no passphrase, the private key next to it
// (the same path without ".pub"). certPath "" means DefaultCertPath.
// A private key that cannot be used leaves priv nil and says why in
// privNote; that is not an error, since only the agent needs it.
func loadIdentity(pubPath, certPath string) (*identity, error) {
	pubPath, err := filepath.Abs(pubPath)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: %w", err)
	}
	if certPath == "" {
		certPath = DefaultCertPath(pubPath)
	}
	if certPath, err = filepath.Abs(certPath); err != nil {
		return nil, fmt.Errorf("keyhelper: %w", err)
	}
	b, err := os.ReadFile(pubPath)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: reading the public key: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: %s is not an OpenSSH public key (%v); --key-path names the .pub file", pubPath, err)
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, fmt.Errorf("keyhelper: %s is a certificate; --key-path names the public key (.pub) file", pubPath)
	}
	id := &identity{pub: pub, pubFile: pubPath, certFile: certPath}
	if certPath == pubPath {
		return nil, fmt.Errorf("keyhelper: --cert-path %s would overwrite the public key", certPath)
	}
	if !strings.HasSuffix(pubPath, ".pub") {
		id.privNote = fmt.Sprintf("the private key's file is unknown (%s does not end in .pub)", pubPath)
		return id, nil
	}
	id.privFile = strings.TrimSuffix(pubPath, ".pub")
	id.priv, id.privNote = loadPrivate(id.privFile, pub)
	return id, nil
}

// loadPrivate returns the private key at path if it matches pub and needs
// no passphrase; otherwise nil and why not.
func loadPrivate(path string, pub ssh.PublicKey) (any, string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Sprintf("the private key %s cannot be read (%v)", path, unwrapPath(err))
	}
	priv, err := ssh.ParseRawPrivateKey(b)
	var pme *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pme):
		return nil, fmt.Sprintf("the private key %s is protected by a passphrase, which the keyhelper does not ask for", path)
	case err != nil:
		return nil, fmt.Sprintf("the private key %s cannot be parsed (%v)", path, err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Sprintf("the private key %s cannot be used (%v)", path, err)
	}
	if !bytes.Equal(signer.PublicKey().Marshal(), pub.Marshal()) {
		return nil, fmt.Sprintf("the private key %s does not belong to the public key given", path)
	}
	return priv, ""
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
