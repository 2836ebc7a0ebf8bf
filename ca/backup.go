package ca

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
	"github.com/opensshca/suite/internal/atomicfile"
)

// Backup takes a consistent snapshot of the store (one List at one
// revision) for caadm backup. The CA key files of a CA on bbolt are
// included only when withKeys is set; a CA on etcd keeps its keys in the
// store, sealed with its --key-file, so they travel sealed. Recordings
// (files) are not included. The backup is audited.
func (a *Authority) Backup(ctx context.Context, withKeys bool, actor string) (*api.Backup, error) {
	items, rev, err := a.store.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("ca: reading the store: %w", err)
	}
	b := &api.Backup{
		Format: api.BackupFormat, Created: a.now().UTC(), Revision: rev, Pin: a.Pin(), CA: a.Info(),
		KeysSealed: a.cfg.KeyEncryptionKey != nil, Items: make([]api.BackupItem, 0, len(items)),
	}
	for _, it := range items {
		b.Items = append(b.Items, api.BackupItem{Key: it.Key, Value: it.Value})
	}
	if withKeys && !b.KeysSealed {
		if b.Keys, err = readKeyPEMs(a.cfg.DataDir); err != nil {
			return nil, fmt.Errorf("ca: reading the CA key files for the backup: %w", err)
		}
	}
	b.SHA256 = b.Sum()
	keys := "no"
	switch {
	case b.KeysSealed:
		keys = "sealed"
	case len(b.Keys) > 0:
		keys = "yes"
	}
	if err := a.auditAdmin(ctx, "backup.create", "", actor, map[string]string{
		"revision": fmt.Sprint(rev), "items": fmt.Sprint(len(items)), "keys": keys,
	}); err != nil {
		return nil, err
	}
	return b, nil
}

// RestoreOptions say where caadm restore writes a backup.
type RestoreOptions struct {
	// DataDir receives the CA key files of a backup that holds them, or
	// must already hold them; with bbolt it also holds the store.
	DataDir string
	// Store is the target store; nil opens bbolt at DataDir/state.db.
	Store store.Store
	// KeyEncryptionKey is the --key-file of a target on etcd.
	KeyEncryptionKey []byte
}

// Restore writes a backup into an empty store, with the CA's stopped:
// every item as it was, and the CA key files into the data dir when the
// backup has them. It refuses, before writing anything, a damaged
// backup, a store that is not empty, key files that differ from the
// backup's CA, and a backup whose keys it cannot place; if a write fails
// midway it removes what it wrote. teleport-ca then starts on the result
// (a CA on etcd moves key files from the data dir into etcd at its first
// start).
func Restore(ctx context.Context, b *api.Backup, opt RestoreOptions) (int, error) {
	if err := b.Verify(); err != nil {
		return 0, fmt.Errorf("ca: %w", err)
	}
	if opt.DataDir == "" {
		return 0, errors.New("ca: restore needs a data dir (--data-dir)")
	}
	if err := os.MkdirAll(opt.DataDir, 0o700); err != nil {
		return 0, fmt.Errorf("ca: %w", err)
	}
	writeKeys, err := restoreKeyPlan(b, opt)
	if err != nil {
		return 0, err
	}
	st := opt.Store
	if st == nil {
		if st, err = store.OpenBolt(filepath.Join(opt.DataDir, fileStore), StoreOptions()); err != nil {
			return 0, fmt.Errorf("ca: opening the target store (is a teleport-ca running on %s?): %w", opt.DataDir, err)
		}
		defer st.Close()
	}
	if existing, _, err := st.List(ctx, ""); err != nil {
		return 0, fmt.Errorf("ca: reading the target store: %w", err)
	} else if len(existing) > 0 {
		return 0, fmt.Errorf("ca: the target store holds %d items: restore only into an empty store (a new --data-dir, or an unused --etcd-prefix)", len(existing))
	}
	var written []string
	undo := func() {
		for _, k := range written {
			_ = st.Delete(context.WithoutCancel(ctx), k)
		}
	}
	for _, it := range b.Items {
		if _, err := st.Create(ctx, it.Key, it.Value); err != nil {
			undo()
			return 0, fmt.Errorf("ca: restoring %s: %w (the items written so far were removed)", it.Key, err)
		}
		written = append(written, it.Key)
	}
	for _, n := range keyFileNames {
		if !writeKeys {
			break
		}
		mode := os.FileMode(0o600)
		if n == fileTLSRootCert {
			mode = 0o644
		}
		if err := atomicfile.WriteFile(filepath.Join(opt.DataDir, n), b.Keys[n], mode); err != nil {
			undo()
			return 0, fmt.Errorf("ca: writing %s: %w", n, err)
		}
	}
	return len(written), nil
}

// restoreKeyPlan decides where the CA keys come from: the backup (written
// to the data dir; true), the store items (sealed, for etcd), or key
// files already in the data dir. Keys that would not be the backup's CA
// are refused.
func restoreKeyPlan(b *api.Backup, opt RestoreOptions) (bool, error) {
	have, haveErr := readKeyPEMs(opt.DataDir)
	switch {
	case b.KeysSealed:
		if opt.KeyEncryptionKey == nil {
			return false, errors.New("ca: this backup's CA keys are sealed with the --key-file of a CA on etcd: restore it into etcd (--storage etcd) with that key file, or take a backup --with-keys of a CA on bbolt")
		}
		return false, nil
	case len(b.Keys) > 0:
		ks, err := parseKeySet(b.Keys, "in the backup")
		if err != nil {
			return false, err
		}
		if err := sameCA(ks, b); err != nil {
			return false, fmt.Errorf("ca: the backup's key files are not its CA's: %w", err)
		}
		if haveErr == nil {
			for _, n := range keyFileNames {
				if !bytes.Equal(have[n], b.Keys[n]) {
					return false, fmt.Errorf("ca: %s already holds CA key files that differ from the backup's: restore into a new data dir", opt.DataDir)
				}
			}
		}
		return true, nil
	default:
		if haveErr != nil {
			return false, fmt.Errorf("ca: this backup holds no CA keys (made without --with-keys) and %s has none (%v): copy %s from the old data dir there first, or take a backup --with-keys", opt.DataDir, haveErr, strings.Join(keyFileNames, ", "))
		}
		ks, err := parseKeySet(have, "in "+opt.DataDir)
		if err != nil {
			return false, err
		}
		if err := sameCA(ks, b); err != nil {
			return false, fmt.Errorf("ca: the key files in %s are not the backup's CA: %w", opt.DataDir, err)
		}
		return false, nil
	}
}

// sameCA checks that a key set is the backup's CA.
func sameCA(ks *keySet, b *api.Backup) error {
	for _, k := range []struct {
		name string
		have ssh.Signer
		want string
	}{{"user CA", ks.user, b.CA.UserCA}, {"host CA", ks.host, b.CA.HostCA}, {"session CA", ks.session, b.CA.SessionCA}} {
		if trimNL(ssh.MarshalAuthorizedKey(k.have.PublicKey())) != k.want {
			return fmt.Errorf("the %s key differs", k.name)
		}
	}
	if ks.tls.Pin() != b.Pin {
		return errors.New("the TLS root differs (another pin)")
	}
	return nil
}
