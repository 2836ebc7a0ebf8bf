// Package atomicfile replaces files atomically, so that readers such as sshd
// or an NSS module see either the old contents or the new contents of a file,
// never a partial write, even if the writer crashes or the machine loses
// power.
//
// A file is written to a temporary file in the same directory, synced, and
// renamed over the target; the directory is then synced so the rename itself
// is durable.
package atomicfile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFile atomically replaces the file at path with data.
//
// The file gets exactly the permission bits perm: unlike [os.WriteFile], the
// mode is not subject to the process umask. If WriteFile fails, any previous
// file at path is left untouched and no temporary file is left behind; the
// exception is an error syncing the directory, which is reported after the
// new file is already in place.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteFileOwned(path, data, perm, -1, -1)
}

// WriteFileOwned is like [WriteFile] but also changes the file's owner to uid
// and group to gid before it is renamed into place, so it never appears at
// path with the wrong owner. A uid or gid of -1 leaves that ID as it was when
// the file was created (normally the calling process's).
func WriteFileOwned(path string, data []byte, perm os.FileMode, uid, gid int) error {
	// Not filepath.Dir: it cleans the path, and "link/.." is not
	// necessarily the same directory as ".".
	dir, _ := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := replace(path, dir, data, perm, uid, gid); err != nil {
		return fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("atomicfile: %s: syncing directory: %w", path, err)
	}
	return nil
}

// WriteFrom atomically replaces the file at path with everything read
// from r, for contents too large to hold in memory (session recordings).
// It returns the number of bytes written. On any error, including one
// from r, nothing is left at path that was not there before.
func WriteFrom(path string, r io.Reader, perm os.FileMode) (int64, error) {
	dir, _ := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	var n int64
	err := replaceWith(path, dir, perm, -1, -1, func(f *os.File) error {
		var err error
		n, err = io.Copy(f, r)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return n, fmt.Errorf("atomicfile: %s: syncing directory: %w", path, err)
	}
	return n, nil
}

// replace writes a temporary file in dir, the directory of path, and renames
// it to path. On failure it removes the temporary file.
func replace(path, dir string, data []byte, perm os.FileMode, uid, gid int) error {
	return replaceWith(path, dir, perm, uid, gid, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// replaceWith is replace with the contents written by write.
func replaceWith(path, dir string, perm os.FileMode, uid, gid int, write func(*os.File) error) (err error) {
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close() // May already be closed; the error is irrelevant then.
			os.Remove(f.Name())
		}
	}()
	if err := fill(f, write, perm, uid, gid); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// fill sets the owner and mode of f, then writes data to it and syncs it.
//
// The owner is changed first because chown may clear the setuid and setgid
// bits.
func fill(f *os.File, write func(*os.File) error, perm os.FileMode, uid, gid int) error {
	if uid != -1 || gid != -1 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := write(f); err != nil {
		return err
	}
	return f.Sync()
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
