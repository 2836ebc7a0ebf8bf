package ca

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/store"
)

// Shared CA keys. Several replicas on one store (etcd) must sign with the
// same four keys, so with Config.KeyEncryptionKey set the keys live in the
// store, not in the data dir: one record, "meta/keys", holding each key
// file's PEM sealed with AES-256-GCM under a key derived (HKDF-SHA256)
// from the key-encryption key, which every replica reads from its own
// copy of one key file. The associated data binds each sealed value to
// its name and to the key file's id, so a value moved to another name, or
// sealed under another key file, is refused rather than used.
//
// The first replica to start generates the keys and writes the record
// with Create; a replica that loses that race (ErrExists) discards its
// keys and loads the winner's, so replicas starting at once agree. Who
// reads the store without the key file gets the state (users, hashes,
// logs) but no CA key.

// KeyFileSize is the size of the key-encryption key in a key file.
const KeyFileSize = 32

// sharedKeysKey is the store record holding the sealed CA keys.
const sharedKeysKey = "meta/keys"

// ErrWrongKeyFile: the key file is not the one the CA keys in the store
// were sealed with.
var ErrWrongKeyFile = errors.New("this key file does not decrypt the CA keys in the store")

// keyFileNames are the key files a CA consists of, in the data dir or
// sealed in the store.
var keyFileNames = []string{fileUserCA, fileHostCA, fileSessionCA, fileTLSRootKey, fileTLSRootCert}

// ReadKeyFile reads a key-encryption key: a regular file owned by the
// uid teleport-ca runs as, with no group or other permissions, holding
// 32 bytes, raw or as 64 hex digits (GenerateKeyFile's format).
func ReadKeyFile(path string) ([]byte, error) {
	// Stat, not Lstat: the key file may be a link into /etc or a secret
	// mount; what it points to is checked.
	b, err := readOwnerOnly(path, os.Stat, "key file "+path, "it protects the CA keys and must be readable by its owner only")
	if err != nil {
		return nil, err
	}
	return parseKeyFile(b, path)
}

func parseKeyFile(b []byte, path string) ([]byte, error) {
	key := b
	if len(b) != KeyFileSize {
		h := strings.TrimSpace(string(b))
		var err error
		if key, err = hex.DecodeString(h); err != nil || len(key) != KeyFileSize {
			return nil, fmt.Errorf("ca: key file %s holds neither %d bytes nor %d hex digits; make one with teleport-ca gen-key-file", path, KeyFileSize, 2*KeyFileSize)
		}
	}
	for _, c := range key {
		if c != key[0] {
			return key, nil
		}
	}
	return nil, fmt.Errorf("ca: key file %s holds one byte repeated, not a random key; make one with teleport-ca gen-key-file", path)
}

// GenerateKeyFile writes a new random key-encryption key to path as 64
// hex digits and a newline, mode 0600. It never replaces an existing
// file: the CA keys sealed under the old key could not be opened again.
func GenerateKeyFile(path string, r io.Reader) error {
	key := make([]byte, KeyFileSize)
	if _, err := io.ReadFull(r, key); err != nil {
		return fmt.Errorf("ca: generating a key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("ca: key file %s already exists; it is not replaced (CA keys sealed with it could not be opened with a new one)", path)
	}
	if err != nil {
		return fmt.Errorf("ca: key file: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("ca: writing key file %s: %w", path, err)
	}
	return nil
}

// keySealer seals and opens key files under a key-encryption key.
type keySealer struct {
	aead cipher.AEAD
	id   string // names the key-encryption key without revealing it
}

func newKeySealer(kek []byte) (*keySealer, error) {
	if len(kek) != KeyFileSize {
		return nil, fmt.Errorf("ca: key-encryption key of %d bytes; want %d", len(kek), KeyFileSize)
	}
	k, err := hkdf.Key(sha256.New, kek, nil, "teleport-ca sealed CA keys v1", 32)
	if err != nil {
		return nil, err
	}
	id, err := hkdf.Key(sha256.New, kek, nil, "teleport-ca key file id v1", 8)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &keySealer{aead: aead, id: hex.EncodeToString(id)}, nil
}

func (s *keySealer) aad(name string) []byte {
	return []byte("teleport-ca sealed key v1\x00" + s.id + "\x00" + name)
}

// seal returns nonce ‖ ciphertext of plain, bound to name.
func (s *keySealer) seal(name string, plain []byte, r io.Reader) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := io.ReadFull(r, nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plain, s.aad(name)), nil
}

// open reverses seal; a value altered, moved from another name or sealed
// under another key fails.
func (s *keySealer) open(name string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errors.New("sealed value too short")
	}
	return s.aead.Open(nil, sealed[:n], sealed[n:], s.aad(name))
}

// sealedKeys is the record at sharedKeysKey.
type sealedKeys struct {
	Version int               `json:"version"`
	KeyID   string            `json:"key_id"` // keySealer.id of the key file that sealed them
	Created time.Time         `json:"created"`
	Keys    map[string][]byte `json:"keys"` // key file name → seal(PEM)
}

func (s *keySealer) sealAll(pems map[string][]byte, now time.Time, r io.Reader) ([]byte, error) {
	rec := sealedKeys{Version: 1, KeyID: s.id, Created: now.UTC(), Keys: map[string][]byte{}}
	for _, n := range keyFileNames {
		v, err := s.seal(n, pems[n], r)
		if err != nil {
			return nil, fmt.Errorf("ca: sealing %s: %w", n, err)
		}
		rec.Keys[n] = v
	}
	return json.Marshal(rec)
}

func (s *keySealer) openAll(b []byte) (map[string][]byte, error) {
	var rec sealedKeys
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("ca: store record %s is damaged: %w", sharedKeysKey, err)
	}
	if rec.Version != 1 {
		return nil, fmt.Errorf("ca: store record %s has version %d, which this teleport-ca does not know; upgrade it", sharedKeysKey, rec.Version)
	}
	if rec.KeyID != s.id {
		return nil, fmt.Errorf("ca: %w: they were sealed with the key file whose id is %s, this one's is %s; give every replica a copy of the same key file", ErrWrongKeyFile, rec.KeyID, s.id)
	}
	pems := map[string][]byte{}
	for _, n := range keyFileNames {
		v, err := s.open(n, rec.Keys[n])
		if err != nil {
			return nil, fmt.Errorf("ca: the sealed %s in store record %s does not decrypt with this key file although the key ids match: the record was altered or damaged; restore it from a backup", n, sharedKeysKey)
		}
		pems[n] = v
	}
	return pems, nil
}

// generateKeyPEMs makes a new set of CA keys in memory.
func generateKeyPEMs(kt KeyType, r io.Reader) (map[string][]byte, error) {
	pems := map[string][]byte{}
	for _, n := range []string{fileUserCA, fileHostCA, fileSessionCA} {
		k, err := generateKey(kt, r)
		if err != nil {
			return nil, fmt.Errorf("ca: generating %s: %w", n, err)
		}
		if pems[n], err = marshalSSHKey(k, "teleport-ca "+n); err != nil {
			return nil, fmt.Errorf("ca: encoding %s: %w", n, err)
		}
	}
	var err error
	pems[fileTLSRootKey], pems[fileTLSRootCert], err = newTLSRoot(r)
	return pems, err
}

// readKeyPEMs reads the key files of a data dir, with the checks of
// loadKeys.
func readKeyPEMs(dir string) (map[string][]byte, error) {
	pems := map[string][]byte{}
	for _, n := range keyFileNames {
		p := filepath.Join(dir, n)
		var err error
		if n == fileTLSRootCert {
			pems[n], err = os.ReadFile(p)
		} else {
			pems[n], err = readSecretFile(p)
		}
		if err != nil {
			return nil, err
		}
	}
	return pems, nil
}

// parseKeySet parses a set of key files; from says where they are.
func parseKeySet(pems map[string][]byte, from string) (*keySet, error) {
	ks := &keySet{}
	for _, f := range []struct {
		name string
		dst  *ssh.Signer
	}{{fileUserCA, &ks.user}, {fileHostCA, &ks.host}, {fileSessionCA, &ks.session}} {
		k, err := parseSSHKey(pems[f.name], f.name+" "+from)
		if err != nil {
			return nil, err
		}
		if *f.dst, err = caSigner(k); err != nil {
			return nil, fmt.Errorf("ca: %s: %w", f.name, err)
		}
	}
	key, err := parsePKCS8(pems[fileTLSRootKey], fileTLSRootKey+" "+from)
	if err != nil {
		return nil, err
	}
	cert, err := parseCertPEM(pems[fileTLSRootCert], fileTLSRootCert+" "+from)
	if err != nil {
		return nil, err
	}
	ks.tls, err = checkTLSRoot(key, cert)
	return ks, err
}

// openSharedKeys loads the CA keys sealed in the store, or, if there are
// none, seals and stores the data dir's key files (the move of a CA to a
// shared store) or, on a first start, new keys. have is the store's stamp
// (nil: no CA yet); keys that do not match it are refused before anything
// is written.
func (a *Authority) openSharedKeys(ctx context.Context, have *caStamp) (*keySet, bool, error) {
	sealer, err := newKeySealer(a.cfg.KeyEncryptionKey)
	if err != nil {
		return nil, false, err
	}
	for {
		it, err := a.store.Get(ctx, sharedKeysKey)
		if err == nil {
			pems, err := sealer.openAll(it.Value)
			if err != nil {
				return nil, false, err
			}
			ks, err := parseKeySet(pems, "in store record "+sharedKeysKey)
			return ks, false, err
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, false, fmt.Errorf("ca: reading %s: %w", sharedKeysKey, err)
		}
		pems, created, err := a.keysToShare(have != nil)
		if err != nil {
			return nil, false, err
		}
		ks, err := parseKeySet(pems, "in data dir "+a.cfg.DataDir)
		if err != nil {
			return nil, false, err
		}
		if have != nil {
			if err := checkStamp(*have, ks.stamp(), "the data dir "+a.cfg.DataDir); err != nil {
				return nil, false, err
			}
		}
		b, err := sealer.sealAll(pems, a.now(), a.rand)
		if err != nil {
			return nil, false, err
		}
		if _, err := a.store.Create(ctx, sharedKeysKey, b); errors.Is(err, store.ErrExists) {
			a.log.Info("another replica stored the CA keys first; using its keys")
			continue
		} else if err != nil {
			return nil, false, fmt.Errorf("ca: storing the sealed CA keys: %w", err)
		}
		if !created {
			a.log.Info("sealed the data dir's CA keys into the store; the other replicas now share them", "data_dir", a.cfg.DataDir)
		}
		return ks, created, nil
	}
}

// keysToShare returns the data dir's key files if it has all of them, or
// new keys if it has none and the store knows no CA.
func (a *Authority) keysToShare(storeHasCA bool) (pems map[string][]byte, created bool, err error) {
	var present, missing []string
	for _, n := range keyFileNames {
		if _, err := os.Lstat(filepath.Join(a.cfg.DataDir, n)); err == nil {
			present = append(present, n)
		} else if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, n)
		} else {
			return nil, false, fmt.Errorf("ca: %w", err)
		}
	}
	switch {
	case len(missing) == 0:
		pems, err := readKeyPEMs(a.cfg.DataDir)
		return pems, false, err
	case len(present) > 0:
		return nil, false, fmt.Errorf("ca: data dir %s is incomplete: it has %v but not %v, and the store holds no sealed CA keys; restore the missing files from backup", a.cfg.DataDir, present, missing)
	case storeHasCA:
		return nil, false, fmt.Errorf("ca: the store already belongs to a CA but holds no sealed CA keys (%s), and data dir %s has none of the key files %v; start once with the data dir that holds them, or restore the store from a backup", sharedKeysKey, a.cfg.DataDir, keyFileNames)
	}
	pems, err = generateKeyPEMs(a.cfg.KeyType, a.rand)
	return pems, err == nil, err
}
