package keyhelper

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// DirName is the name of the state directory in the user's home.
const DirName = ".teleport"

// ErrNotLoggedIn reports that there is no state for a cluster (or for any
// cluster).
var ErrNotLoggedIn = errors.New("keyhelper: not logged in")

// UnsafeError reports a state directory or file that someone other than
// the user could read or change. The keyhelper refuses to use it: the
// files hold a private key and a sign-in token.
type UnsafeError struct {
	Path    string
	Problem string // "is readable by group or others (mode 0755)"
	Fix     string // "run: chmod 700 /home/alice/.teleport"
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("keyhelper: %s %s; %s", e.Path, e.Problem, e.Fix)
}

// Home is the per-user state directory (~/.teleport), holding one
// directory per cluster.
type Home struct {
	// Dir is the absolute path of the directory.
	Dir string
}

// DefaultHome returns the state directory to use: dir if it is not empty
// (--home or $TELEPORT_HOME), else ~/.teleport with the home directory from
// getenv("HOME").
func DefaultHome(dir string, getenv func(string) string) (string, error) {
	if dir == "" {
		h := getenv("HOME")
		if h == "" {
			return "", errors.New("keyhelper: $HOME is not set: set it, or name the state directory with --home or $TELEPORT_HOME")
		}
		dir = filepath.Join(h, DirName)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("keyhelper: state directory %s: %w", dir, err)
	}
	return abs, nil
}

// OpenHome checks the state directory at dir and returns it. With create
// it makes a missing directory (mode 0700, and missing parents likewise);
// without, a missing directory is ErrNotLoggedIn. A directory that group
// or others can reach, or that another uid owns, is an *UnsafeError.
func OpenHome(dir string, create bool) (*Home, error) {
	if err := ensurePrivateDir(dir, create); err != nil {
		return nil, err
	}
	return &Home{Dir: dir}, nil
}

// ensurePrivateDir checks dir with checkPrivateDir, first creating it if
// it is missing and create is set.
func ensurePrivateDir(dir string, create bool) error {
	_, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return ErrNotLoggedIn
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("keyhelper: making the state directory: %w", err)
		}
		// MkdirAll applies the umask, which may leave less than 0700.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("keyhelper: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("keyhelper: state directory: %w", err)
	}
	return checkPrivateDir(dir)
}

// checkPrivateDir refuses a directory that is not the user's own and
// private (no group or other permission bits).
func checkPrivateDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("keyhelper: state directory: %w", err)
	}
	if !fi.IsDir() {
		return &UnsafeError{Path: dir, Problem: "is not a directory", Fix: "move it away or choose another state directory with --home"}
	}
	if err := checkOwner(dir, fi); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return &UnsafeError{
			Path:    dir,
			Problem: fmt.Sprintf("can be reached by group or others (mode %04o)", perm),
			Fix:     "it holds private keys and a sign-in token; run: chmod 700 " + dir,
		}
	}
	return nil
}

// checkPrivateFile refuses a secret file that is not a regular file of the
// user's with mode 0600 or tighter.
func checkPrivateFile(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return &UnsafeError{Path: path, Problem: "is not a regular file", Fix: "remove it and log in again"}
	}
	if err := checkOwner(path, fi); err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return &UnsafeError{
			Path:    path,
			Problem: fmt.Sprintf("can be read by group or others (mode %04o)", perm),
			Fix:     "it holds a secret: run chmod 600 " + path + ", and log in again if others may have read it",
		}
	}
	return nil
}

func checkOwner(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if me := os.Geteuid(); int(st.Uid) != me {
		return &UnsafeError{
			Path:    path,
			Problem: fmt.Sprintf("is owned by uid %d, not by you (uid %d)", st.Uid, me),
			Fix:     "remove it, or make it yours with chown, or choose another state directory with --home",
		}
	}
	return nil
}

// serverDir returns the directory of s's state, without touching it.
func (h *Home) serverDir(s Server) string { return filepath.Join(h.Dir, s.dirName()) }

// Servers returns the clusters that have a profile in h, sorted by
// address. A cluster directory whose profile cannot be read is listed by
// its name, so that loading it reports the problem instead of the cluster
// being silently left out; other entries are skipped.
func (h *Home) Servers() ([]Server, error) {
	entries, err := os.ReadDir(h.Dir)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: %w", err)
	}
	var out []Server
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		path := filepath.Join(h.Dir, e.Name(), profileFile)
		if _, err := os.Lstat(path); err != nil {
			continue
		}
		if s, ok := serverOfDir(e.Name(), path); ok {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr() < out[j].Addr() })
	return out, nil
}

// serverOfDir returns the cluster of the directory name, from its profile
// or, failing that, from the name ("host_port").
func serverOfDir(name, profile string) (Server, bool) {
	if p, err := readProfileFile(profile); err == nil {
		if s, err := ParseServer(p.Server); err == nil && s.dirName() == name {
			return s, true
		}
	}
	i := strings.LastIndex(name, "_")
	if i < 0 {
		return Server{}, false
	}
	s, err := ParseServer(net.JoinHostPort(name[:i], name[i+1:]))
	if err != nil || s.dirName() != name {
		return Server{}, false
	}
	return s, true
}
