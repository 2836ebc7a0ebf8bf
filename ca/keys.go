package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/internal/atomicfile"
)

// KeyType names the algorithm of newly created CA keys.
type KeyType string

// Supported CA key types. RSA CAs always sign with rsa-sha2-512, never SHA-1
// (OpenSSH 8.2 and later reject SHA-1 signed certificates).
const (
	KeyEd25519   KeyType = "ed25519"
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyECDSAP384 KeyType = "ecdsa-p384"
	KeyRSA3072   KeyType = "rsa-3072"
	KeyRSA4096   KeyType = "rsa-4096"
)

// The CA key files in the data dir.
const (
	fileUserCA    = "user_ca"
	fileHostCA    = "host_ca"
	fileSessionCA = "session_ca"
	fileStore     = "state.db"
)

func generateKey(t KeyType, r io.Reader) (crypto.Signer, error) {
	switch t {
	case KeyEd25519, "":
		_, k, err := ed25519.GenerateKey(r)
		return k, err
	case KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), r)
	case KeyECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), r)
	case KeyRSA3072:
		return rsa.GenerateKey(r, 3072)
	case KeyRSA4096:
		return rsa.GenerateKey(r, 4096)
	}
	return nil, errUnknownKeyType(t)
}

func errUnknownKeyType(t KeyType) error {
	return fmt.Errorf("unknown CA key type %q (want ed25519, ecdsa-p256, ecdsa-p384, rsa-3072 or rsa-4096)", t)
}

// checkKeyType refuses an unknown key type whether or not keys exist yet,
// so a typo shows at once rather than on the next fresh data dir.
func checkKeyType(t KeyType) error {
	switch t {
	case KeyEd25519, KeyECDSAP256, KeyECDSAP384, KeyRSA3072, KeyRSA4096:
		return nil
	}
	return errUnknownKeyType(t)
}

// caSigner wraps a CA private key so that RSA keys sign only with
// rsa-sha2-512.
func caSigner(k crypto.Signer) (ssh.Signer, error) {
	s, err := ssh.NewSignerFromSigner(k)
	if err != nil {
		return nil, err
	}
	if s.PublicKey().Type() != ssh.KeyAlgoRSA {
		return s, nil
	}
	as, ok := s.(ssh.AlgorithmSigner)
	if !ok {
		return nil, errors.New("ca: RSA signer cannot choose its signature algorithm")
	}
	return ssh.NewSignerWithAlgorithms(as, []string{ssh.KeyAlgoRSASHA512})
}

// checkDataDir refuses a data dir that anyone but its owner can reach, or
// that another user owns: it holds the CA private keys.
func checkDataDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("ca: data dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("ca: data dir %s is not a directory", dir)
	}
	if err := checkOwner(dir, fi); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("ca: data dir %s has mode %04o; it holds CA private keys and must be reachable by its owner only (chmod 700 %s)", dir, perm, dir)
	}
	return nil
}

func checkOwner(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("ca: %s is owned by uid %d, not by the uid teleport-ca runs as (%d); chown it to the service user", path, st.Uid, uid)
	}
	return nil
}

// readSecretFile reads a private key file after checking that it is a
// regular file owned by us with no group or other permissions.
func readSecretFile(path string) ([]byte, error) {
	return readOwnerOnly(path, os.Lstat, "private key "+path, "it must be readable by its owner only")
}

// readOwnerOnly reads path after checking, with stat, that it is a
// regular file owned by us with no group or other permissions; what names
// it in errors and why says why the mode matters.
func readOwnerOnly(path string, stat func(string) (os.FileInfo, error), what, why string) ([]byte, error) {
	fi, err := stat(path)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("ca: %s is not a regular file", what)
	}
	if err := checkOwner(path, fi); err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("ca: %s has mode %04o; %s (chmod 600 %s)", what, perm, why, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return b, nil
}

// loadSSHKey reads an OpenSSH private key written by writeSSHKey.
func loadSSHKey(path string) (crypto.Signer, error) {
	b, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	return parseSSHKey(b, path)
}

// parseSSHKey parses an OpenSSH private key; path says where it came from.
func parseSSHKey(b []byte, path string) (crypto.Signer, error) {
	raw, err := ssh.ParseRawPrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("ca: private key %s is damaged or not an OpenSSH private key (%v); restore it from backup", path, err)
	}
	var k crypto.Signer
	switch v := raw.(type) {
	case *ed25519.PrivateKey:
		k = *v
	case crypto.Signer:
		k = v
	default:
		return nil, fmt.Errorf("ca: private key %s has unsupported type %T", path, raw)
	}
	if err := checkKeyStrength(k); err != nil {
		return nil, fmt.Errorf("ca: private key %s: %w", path, err)
	}
	return k, nil
}

func checkKeyStrength(k crypto.Signer) error {
	if r, ok := k.(*rsa.PrivateKey); ok && r.N.BitLen() < 3072 {
		return fmt.Errorf("RSA key of %d bits is too short (need 3072 or more)", r.N.BitLen())
	}
	return nil
}

func writeSSHKey(path string, k crypto.Signer, comment string) error {
	b, err := marshalSSHKey(k, comment)
	if err != nil {
		return fmt.Errorf("ca: encoding %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
		return err
	}
	pub, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%s %s\n", trimNL(ssh.MarshalAuthorizedKey(pub)), comment)
	return atomicfile.WriteFile(path+".pub", []byte(line), 0o644)
}

func marshalSSHKey(k crypto.Signer, comment string) ([]byte, error) {
	block, err := ssh.MarshalPrivateKey(k, comment)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(block), nil
}

func trimNL(b []byte) string {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	return string(b)
}

// keySet is the authority's key material.
type keySet struct {
	user, host, session ssh.Signer
	tls                 *tlsRoot
}

// loadOrCreateKeys opens the CA keys in dir, creating all of them when the
// dir holds none and the store knows no CA (storeHasCA false). A dir that
// holds some but not all keys, or none while the store belongs to a CA, is
// refused: that is damage, not a first start, and new keys would silently
// fork the cluster's trust. The caller has checked dir.
func loadOrCreateKeys(dir string, kt KeyType, r io.Reader, storeHasCA bool) (ks *keySet, created bool, err error) {
	names := []string{fileUserCA, fileHostCA, fileSessionCA, fileTLSRootKey, fileTLSRootCert}
	var present, missing []string
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			present = append(present, n)
		} else if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, n)
		} else {
			return nil, false, fmt.Errorf("ca: %w", err)
		}
	}
	switch {
	case len(missing) == len(names) && storeHasCA:
		return nil, false, fmt.Errorf("ca: the store already belongs to a CA but data dir %s has none of its keys %v; restore them from backup (a new data dir starts a new cluster)", dir, names)
	case len(missing) == len(names):
		if err := createKeys(dir, kt, r); err != nil {
			return nil, false, err
		}
		created = true
	case len(missing) > 0:
		return nil, false, fmt.Errorf("ca: data dir %s is incomplete: it has %v but not %v; restore the missing files from backup (a new data dir starts a new cluster)", dir, present, missing)
	}
	ks, err = loadKeys(dir)
	return ks, created, err
}

func createKeys(dir string, kt KeyType, r io.Reader) error {
	for _, n := range []string{fileUserCA, fileHostCA, fileSessionCA} {
		k, err := generateKey(kt, r)
		if err != nil {
			return fmt.Errorf("ca: generating %s: %w", n, err)
		}
		if err := writeSSHKey(filepath.Join(dir, n), k, "teleport-ca "+n); err != nil {
			return err
		}
	}
	// The TLS root goes last: its presence marks a complete first start.
	return createTLSRoot(dir, r)
}

func loadKeys(dir string) (*keySet, error) {
	ks := &keySet{}
	for _, f := range []struct {
		name string
		dst  *ssh.Signer
	}{{fileUserCA, &ks.user}, {fileHostCA, &ks.host}, {fileSessionCA, &ks.session}} {
		k, err := loadSSHKey(filepath.Join(dir, f.name))
		if err != nil {
			return nil, err
		}
		if *f.dst, err = caSigner(k); err != nil {
			return nil, fmt.Errorf("ca: %s: %w", f.name, err)
		}
	}
	var err error
	ks.tls, err = loadTLSRoot(dir)
	return ks, err
}
