package ca

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/store"
)

// caStamp ties a store to the CA keys that made it: the key fingerprints,
// written on first start. A later start whose keys do not match is a data
// dir that mixes two clusters (a key restored from the wrong backup), and
// is refused rather than issuing certificates nobody trusts.
type caStamp struct {
	UserCA    string    `json:"user_ca"`
	HostCA    string    `json:"host_ca"`
	SessionCA string    `json:"session_ca"`
	Pin       string    `json:"pin"`
	Created   time.Time `json:"created"`
}

const stampKey = "meta/ca"

func (ks *keySet) stamp() caStamp {
	fp := func(s ssh.Signer) string { return ssh.FingerprintSHA256(s.PublicKey()) }
	return caStamp{UserCA: fp(ks.user), HostCA: fp(ks.host), SessionCA: fp(ks.session), Pin: ks.tls.Pin()}
}

// openKeys loads or creates the keys and checks them against the store's
// stamp, writing the stamp on first start.
func (a *Authority) openKeys() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var have *caStamp
	it, err := a.store.Get(ctx, stampKey)
	switch {
	case err == nil:
		have = &caStamp{}
		if err := json.Unmarshal(it.Value, have); err != nil {
			return fmt.Errorf("ca: store record %s is damaged: %w", stampKey, err)
		}
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("ca: reading %s: %w", stampKey, err)
	}
	if a.cfg.KeyEncryptionKey != nil {
		a.keys, a.Created, err = a.openSharedKeys(ctx, have)
	} else {
		a.keys, a.Created, err = loadOrCreateKeys(a.cfg.DataDir, a.cfg.KeyType, a.rand, have != nil)
	}
	if err != nil {
		return err
	}
	want := a.keys.stamp()
	where := "data dir " + a.cfg.DataDir
	if a.cfg.KeyEncryptionKey != nil {
		where = "store record " + sharedKeysKey
	}
	if have == nil {
		want.Created = a.now().UTC()
		b, err := json.Marshal(want)
		if err != nil {
			return err
		}
		_, err = a.store.Create(ctx, stampKey, b)
		if !errors.Is(err, store.ErrExists) {
			if err != nil {
				return fmt.Errorf("ca: recording the CA in the store: %w", err)
			}
			return nil
		}
		// Another replica recorded it first: it must be these keys.
		if it, err = a.store.Get(ctx, stampKey); err != nil {
			return fmt.Errorf("ca: reading %s: %w", stampKey, err)
		}
		have = &caStamp{}
		if err := json.Unmarshal(it.Value, have); err != nil {
			return fmt.Errorf("ca: store record %s is damaged: %w", stampKey, err)
		}
	}
	return checkStamp(*have, want, where)
}

// checkStamp compares the keys found (want) in where with the store's
// stamp (have).
func checkStamp(have, want caStamp, where string) error {
	for _, f := range []struct{ name, have, want string }{
		{fileUserCA, have.UserCA, want.UserCA}, {fileHostCA, have.HostCA, want.HostCA},
		{fileSessionCA, have.SessionCA, want.SessionCA}, {fileTLSRootKey, have.Pin, want.Pin},
	} {
		if f.have != f.want {
			return fmt.Errorf("ca: %s in %s (%s) is not the key this store was made with (%s): the data dir mixes two clusters; restore the matching key", f.name, where, f.want, f.have)
		}
	}
	return nil
}
