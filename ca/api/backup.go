package api

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

// PathAdminBackup answers GET (?keys=1 to include the CA key files) with
// a Backup: a consistent snapshot of the store.
const PathAdminBackup = Version + "/admin/backup"

// BackupFormat names the backup file format.
const BackupFormat = "teleport-ca-backup/1"

// Backup is what caadm backup writes and caadm restore reads: every item
// of the store at one revision, the CA's public identity, and, when asked
// for, the CA key files of a CA on bbolt.
type Backup struct {
	Format   string    `json:"format"`
	Created  time.Time `json:"created"`
	Revision int64     `json:"revision"`
	Pin      string    `json:"pin"`
	CA       CAInfo    `json:"ca"`
	// KeysSealed: the CA keys are among Items (meta/keys), sealed with
	// the --key-file of a CA on etcd; a restore needs that key file.
	KeysSealed bool `json:"keys_sealed,omitempty"`
	// Keys are the data dir's CA key files by name (caadm backup
	// --with-keys on a CA on bbolt): private keys, in the clear.
	Keys  map[string][]byte `json:"keys,omitempty"`
	Items []BackupItem      `json:"items"`
	// SHA256 covers everything above (see Sum).
	SHA256 string `json:"sha256"`
}

// BackupItem is one key of the store.
type BackupItem struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// Sum is the checksum of the backup's content.
func (b *Backup) Sum() string {
	h := sha256.New()
	put := func(s []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write(s)
	}
	put([]byte(b.Format))
	put(fmt.Appendf(nil, "%d %s %v", b.Revision, b.Pin, b.KeysSealed))
	put([]byte(b.CA.UserCA + "\n" + b.CA.HostCA + "\n" + b.CA.SessionCA))
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range b.Keys {
			if !yield(k) {
				return
			}
		}
	}) {
		put([]byte(k))
		put(b.Keys[k])
	}
	for _, it := range b.Items {
		put([]byte(it.Key))
		put(it.Value)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Verify checks the format and the checksum.
func (b *Backup) Verify() error {
	if b.Format != BackupFormat {
		return fmt.Errorf("not a teleport-ca backup of format %q (found %q)", BackupFormat, b.Format)
	}
	if b.SHA256 == "" || b.SHA256 != b.Sum() {
		return errors.New("the backup's checksum does not match its content: the file is damaged or was edited")
	}
	return nil
}
