package keyhelper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
)

// LogoutTimeout bounds the request that ends the sign-in on the server, so
// that logging out of an unreachable CA does not hang.
const LogoutTimeout = 10 * time.Second

// LogoutResult is what a logout did. Local state is removed even when the
// server cannot be told.
type LogoutResult struct {
	Server Server
	User   string
	// AgentRemoved entries of the cluster were removed from the agent;
	// AgentErr says why the agent could not be asked (ErrNoAgent without
	// $SSH_AUTH_SOCK).
	AgentRemoved int
	AgentErr     error
	// Removed are the files removed.
	Removed []string
	// SessionEnded reports that the server ended the sign-in (or it had
	// already ended). ServerErr says why it could not be told; the
	// sign-in then ends by itself at SessionExpires.
	SessionEnded   bool
	ServerErr      error
	SessionExpires time.Time
	// Device is the ID of the daemon that wrote the state, if one did:
	// its sign-in is the browser's, which logout cannot end, and the
	// daemon brings the certificate back while it lasts.
	Device string
}

// Logout ends the sign-in of cluster s: it removes the cluster's entries
// from the agent at agentSocket, asks the CA to end the sign-in session,
// and removes the cluster's files (the certificate written next to a key
// given with --key-path too, but never that key). The error is about
// local state only; see LogoutResult for the agent and the server.
func (h *Home) Logout(ctx context.Context, s Server, agentSocket string) (*LogoutResult, error) {
	p, err := h.LoadProfile(s)
	if err != nil {
		return nil, err
	}
	r := &LogoutResult{Server: s, User: p.User, SessionExpires: p.SessionExpires, Device: p.Device}
	if ag, err := DialAgent(agentSocket); err != nil {
		r.AgentErr = err
	} else {
		r.AgentRemoved, r.AgentErr = ag.RemoveCluster(s)
		ag.Close()
	}
	if p.Session != "" || p.Device == "" {
		r.SessionEnded, r.ServerErr = endSession(ctx, p, s)
	}
	return r, p.removeFiles(r)
}

// endSession asks the CA to end p's sign-in.
func endSession(ctx context.Context, p *Profile, s Server) (bool, error) {
	if p.Session == "" {
		return true, nil
	}
	c, err := client.New(s.URL(), client.Options{Pin: p.Pin, Timeout: LogoutTimeout})
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, LogoutTimeout)
	defer cancel()
	err = c.Logout(ctx, string(p.Session))
	var ae *api.Error
	if errors.As(err, &ae) && (ae.Code == api.CodeSessionExpired || ae.Code == api.CodeUnauthorized) {
		return true, nil // ended already
	}
	if err != nil {
		return false, remote(s, err)
	}
	return true, nil
}

// removeFiles removes p's files, the profile last so that a failed logout
// can be run again, and the cluster's directory once it is empty. A
// daemon's device identity (device/) is not the login's: it stays.
func (p *Profile) removeFiles(r *LogoutResult) error {
	files := []string{filepath.Join(p.dir, keyFile), filepath.Join(p.dir, pubKeyFile), filepath.Join(p.dir, certFile)}
	if !p.generated() && ownCert(p.CertFile, p.User) {
		files = append(files, p.CertFile)
	}
	files = append(files, p.KnownHostsFile(), p.SSHConfigFile(), filepath.Join(p.dir, profileFile))
	for _, f := range files {
		err := os.Remove(f)
		switch {
		case err == nil:
			r.Removed = append(r.Removed, f)
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("keyhelper: %w", err)
		}
	}
	if _, err := os.Lstat(filepath.Join(p.dir, deviceDirName)); err == nil {
		return nil // the daemon's device identity stays, and with it the directory
	}
	if err := os.Remove(p.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("keyhelper: %s is not empty after logout; look at what is left in it (%w)", p.dir, err)
	}
	return nil
}

// ownCert reports whether path holds a user certificate for user, as the
// keyhelper wrote it: a file at --cert-path is removed only then.
func ownCert(path, user string) bool {
	cert, err := readCert(path)
	return err == nil && cert.KeyId == user
}
