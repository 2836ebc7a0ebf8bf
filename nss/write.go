package nss

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opensshca/suite/internal/atomicfile"
)

// DefaultDir is where libnss-extrausers reads its files.
const DefaultDir = "/var/lib/extrausers"

// fileMode lets every process resolve names, as with /etc/passwd.
const fileMode = 0o644

// Write renders and writes dir/passwd and dir/group atomically, mode 0644,
// group first then passwd (so a passwd line never names a gid that is
// missing). Nothing is written when rendering fails. Unchanged files are
// not rewritten (report whether anything changed).
//
// A file is unchanged when it is a regular file with the same contents and
// mode 0644; one with another mode, or a symbolic link, is replaced.
// Readers see the old or the new version of each file, never a mixture
// (internal/atomicfile), but the two files change one after the other: a
// user removed in the same call keeps its passwd line for that moment after
// its private group is gone, which costs nothing worse than a numeric group
// in ls(1). If writing the group file succeeds and the passwd file fails,
// changed is true along with the error.
func Write(dir string, users []User, groups []Group) (changed bool, err error) {
	passwd, group, err := Files(users, groups)
	if err != nil {
		return false, err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"group", group}, {"passwd", passwd}} {
		c, err := writeIfChanged(filepath.Join(dir, f.name), f.data)
		changed = changed || c
		if err != nil {
			return changed, err
		}
	}
	return changed, nil
}

// writeIfChanged replaces the file at path with data unless it already
// holds data with mode fileMode, and reports whether it wrote.
func writeIfChanged(path string, data []byte) (bool, error) {
	same, err := unchanged(path, data)
	if err != nil {
		return false, fmt.Errorf("nss: %w", err)
	}
	if same {
		return false, nil
	}
	if err := atomicfile.WriteFile(path, data, fileMode); err != nil {
		return false, fmt.Errorf("nss: %w", err)
	}
	return true, nil
}

// unchanged reports whether the file at path is a regular file with
// contents data and mode fileMode. A missing file is not an error.
func unchanged(path string, data []byte) (bool, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != fileMode || fi.Size() != int64(len(data)) {
		return false, nil
	}
	old, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	return bytes.Equal(old, data), nil
}
