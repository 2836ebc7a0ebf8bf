package atomicfile_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/opensshca/suite/internal/atomicfile"
)

// setUmask sets the process umask for the duration of the test. Tests that
// call it must not run in parallel.
func setUmask(t *testing.T, mask int) {
	t.Helper()
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

// dirNames returns the sorted names of the entries in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func checkFile(t *testing.T, path string, want []byte, wantPerm os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("contents = %q, want %q", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != wantPerm {
		t.Errorf("mode = %v, want %v", perm, wantPerm)
	}
}

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name  string
		umask int
		perm  os.FileMode
		old   []byte // if non-nil, an existing file to replace
		data  []byte
	}{
		{name: "private", umask: 0o022, perm: 0o600, data: []byte("secret\n")},
		{name: "public", umask: 0o022, perm: 0o644, data: []byte("ssh-ed25519 AAAA\n")},
		{name: "not masked", umask: 0o077, perm: 0o644, data: []byte("x")},
		{name: "group writable", umask: 0o022, perm: 0o664, data: []byte("x")},
		{name: "empty", umask: 0o022, perm: 0o600, data: nil},
		{name: "replace", umask: 0o022, perm: 0o644, old: []byte("old contents\n"), data: []byte("new\n")},
		{name: "replace tightens mode", umask: 0o022, perm: 0o600, old: []byte("old"), data: []byte("new")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setUmask(t, tt.umask)
			dir := t.TempDir()
			path := filepath.Join(dir, "principals")
			var old *os.File // open on the replaced file, if any
			if tt.old != nil {
				if err := os.WriteFile(path, tt.old, 0o666); err != nil {
					t.Fatal(err)
				}
				f, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				old = f
			}
			if err := atomicfile.WriteFile(path, tt.data, tt.perm); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			checkFile(t, path, tt.data, tt.perm)
			if old != nil {
				// A reader that opened the old file still sees all of it:
				// the file was replaced, not truncated and rewritten.
				got, err := io.ReadAll(old)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tt.old) {
					t.Errorf("old file now contains %q, want %q", got, tt.old)
				}
			}
			if got := dirNames(t, dir); !slices.Equal(got, []string{"principals"}) {
				t.Errorf("directory contains %q, want only the target", got)
			}
		})
	}
}

func TestWriteFileRelative(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := atomicfile.WriteFile("f", []byte("x"), 0o600); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	checkFile(t, filepath.Join(dir, "f"), []byte("x"), 0o600)
}

func TestWriteFileRenameFails(t *testing.T) {
	dir := t.TempDir()
	// A non-empty directory at the target path makes the final rename fail,
	// even when the test runs as root.
	path := filepath.Join(dir, "target")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "keep"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}

	err := atomicfile.WriteFile(path, []byte("data"), 0o644)
	if err == nil {
		t.Fatal("WriteFile succeeded, want error")
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "atomicfile: "+path+": ") {
		t.Errorf("error %q does not start with %q", msg, "atomicfile: "+path+": ")
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"target"}) {
		t.Errorf("directory contains %q after failure, want only the target", got)
	}
	if got := dirNames(t, path); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("target directory contains %q, want it unchanged", got)
	}
}

func TestWriteFileMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nonexistent", "f")
	err := atomicfile.WriteFile(path, []byte("x"), 0o600)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFile = %v, want an error wrapping fs.ErrNotExist", err)
	}
}

func TestWriteFileOwned(t *testing.T) {
	tests := []struct {
		name     string
		root     bool // test needs root
		uid, gid int
		wantUID  int
		wantGID  int
	}{
		{name: "unchanged", uid: -1, gid: -1, wantUID: os.Getuid(), wantGID: os.Getgid()},
		{name: "self", uid: os.Getuid(), gid: os.Getgid(), wantUID: os.Getuid(), wantGID: os.Getgid()},
		{name: "other", root: true, uid: 65534, gid: 65533, wantUID: 65534, wantGID: 65533},
		{name: "uid only", root: true, uid: 65534, gid: -1, wantUID: 65534, wantGID: os.Getgid()},
		{name: "gid only", root: true, uid: -1, gid: 65533, wantUID: os.Getuid(), wantGID: 65533},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root && os.Geteuid() != 0 {
				t.Skip("changing a file's owner requires root")
			}
			path := filepath.Join(t.TempDir(), "authorized_keys")
			if err := atomicfile.WriteFileOwned(path, []byte("k"), 0o640, tt.uid, tt.gid); err != nil {
				t.Fatalf("WriteFileOwned: %v", err)
			}
			checkFile(t, path, []byte("k"), 0o640)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if int(st.Uid) != tt.wantUID || int(st.Gid) != tt.wantGID {
				t.Errorf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, tt.wantUID, tt.wantGID)
			}
		})
	}
}
