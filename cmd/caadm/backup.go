package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/ca"
	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/atomicfile"
	"github.com/opensshca/suite/internal/storeflags"
)

func newBackupCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("backup")
	withKeys := fs.Bool("with-keys", false, "include the CA private key files (CA on bbolt); the file then holds the keys in the clear")
	cmd := &ffcli.Command{
		Name:       "backup",
		ShortUsage: "caadm backup [--with-keys] FILE",
		ShortHelp:  "Write a consistent snapshot of the CA's state to a file",
		LongHelp: strings.TrimSpace(`
Writes every item of the running CA's store at one revision (users, roles,
tokens, nodes, proxies, issuance log, audit log, sign-in sessions) and the
CA's public identity to FILE (mode 0600, never over an existing file),
with a checksum. The CA keeps serving meanwhile.

The CA private keys are included only with --with-keys (a CA on bbolt
keeps them as files in its data dir; without the flag, back those files up
your own way). A CA on etcd keeps its keys in etcd sealed with its
--key-file: they are in every backup, sealed, and a restore needs that key
file. Session recordings are files: copy the recordings directory too.

Examples:
  caadm backup /root/ca-backup.json
  caadm backup --with-keys /media/offline/ca-full.json`),
		FlagSet: fs,
	}
	cmd.Exec = withArgs(fs, []string{"FILE"}, func(ctx context.Context, args []string) error {
		path := args[0]
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s exists; caadm backup never overwrites a file: choose a new name", path)
		}
		b, err := root.admin().Backup(ctx, *withKeys)
		if err != nil {
			return err
		}
		out, err := json.Marshal(b)
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(path, append(out, '\n'), 0o600); err != nil {
			return err
		}
		keys := "not included (back up the data dir's key files separately)"
		switch {
		case b.KeysSealed:
			keys = "included, sealed with the CA's --key-file (keep that file apart from the backup)"
		case len(b.Keys) > 0:
			keys = "INCLUDED IN THE CLEAR: keep this file as safe as the CA itself"
		}
		if root.json {
			return printJSON(stdout, map[string]any{"file": path, "revision": b.Revision, "items": len(b.Items), "keys_sealed": b.KeysSealed, "keys": len(b.Keys) > 0})
		}
		_, err = fmt.Fprintf(stdout, "Wrote %s: %d items at revision %d, CA pin %s.\nCA keys: %s.\n", path, len(b.Items), b.Revision, b.Pin, keys)
		return err
	})
	return cmd
}

func newRestoreCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	fs := root.flagSet("restore")
	dataDir := fs.String("data-dir", "", "data dir of the CA to restore into (required): receives the key files, and the store with --storage bolt")
	var storage storeflags.Options
	storage.Flags(fs)
	cmd := &ffcli.Command{
		Name:       "restore",
		ShortUsage: "caadm restore --data-dir DIR [--storage etcd --etcd-endpoints URLS --key-file FILE] FILE",
		ShortHelp:  "Write a backup into a new, empty store (the CA stopped)",
		LongHelp: strings.TrimSpace(`
Writes the backup FILE into an empty store, for a teleport-ca that is not
running: the bbolt file in --data-dir (default), or etcd with the same
--storage, --etcd-* and --key-file flags teleport-ca takes. It works on
the store directly, not through the admin socket.

It refuses, before writing anything: a damaged or edited backup, a store
that is not empty, key files in --data-dir that are not the backup's CA,
and a backup without keys when --data-dir has no key files. If a write
fails midway, what it wrote is removed. Then start teleport-ca with the
same --data-dir and storage flags; the CA pin is the backup's.

Moving from bbolt to etcd: caadm backup --with-keys on the old CA, stop
it, caadm restore into etcd with a new --key-file (teleport-ca
gen-key-file), then start teleport-ca --storage etcd: at its first start
it moves the key files from --data-dir into etcd, sealed.

Examples:
  caadm restore --data-dir /var/lib/teleport-ca /root/ca-backup.json
  caadm restore --data-dir /var/lib/teleport-ca --storage etcd \
      --etcd-endpoints https://etcd1:2379 --key-file /etc/teleport-ca/key /root/ca-full.json`),
		FlagSet: fs,
	}
	cmd.Exec = withArgs(fs, []string{"FILE"}, func(ctx context.Context, args []string) error {
		if *dataDir == "" {
			return errors.New("--data-dir is required: the data dir the restored CA will run with")
		}
		b, err := readBackup(args[0])
		if err != nil {
			return err
		}
		st, kek, err := storage.Open(ctx, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		if st != nil {
			defer st.Close()
		}
		n, err := ca.Restore(ctx, b, ca.RestoreOptions{DataDir: *dataDir, Store: st, KeyEncryptionKey: kek})
		if err != nil {
			return err
		}
		if root.json {
			return printJSON(stdout, map[string]any{"items": n, "pin": b.Pin, "revision": b.Revision})
		}
		_, err = fmt.Fprintf(stdout, "Restored %d items (backup of %s, revision %d) into %s.\nStart teleport-ca on it; its CA pin will be %s.\n",
			n, b.Created.Format("2006-01-02 15:04:05 UTC"), b.Revision, where(storage, *dataDir), b.Pin)
		return err
	})
	return cmd
}

func where(s storeflags.Options, dataDir string) string {
	if s.Backend() == "etcd" {
		return "etcd (prefix " + s.Prefix() + "), key files from " + dataDir
	}
	return dataDir
}

// readBackup reads and verifies a backup file.
func readBackup(path string) (*api.Backup, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("backup file %s does not exist", path)
		}
		return nil, err
	}
	defer f.Close()
	var b api.Backup
	dec := json.NewDecoder(f)
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("%s is not a caadm backup: %v", path, err)
	}
	if err := b.Verify(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &b, nil
}
