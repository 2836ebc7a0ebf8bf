package keyhelper

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
)

// deliver hands a new certificate to OpenSSH: the certificate file, the
// agent, and the cluster's state (profile, known_hosts, ssh_config) that
// teleport-keyhelper config and status read. A failure is logged, not
// returned: the other places still get the certificate.
func (d *Daemon) deliver(cert *ssh.Certificate, info api.CAInfo, now time.Time) {
	if err := writeFile(d.profile.CertFile, ssh.MarshalAuthorizedKey(cert)); err != nil {
		d.log.Error("writing the certificate", "path", d.profile.CertFile, "err", err)
	}
	d.toAgent(cert, now)
	if err := d.writeState(info); err != nil {
		d.log.Error("writing the cluster's state (profile, known_hosts, ssh_config)", "dir", d.profile.dir, "err", err)
	}
}

// toAgent adds cert with its key to the agent, replacing the cluster's
// earlier entries. Without the private key (a --key-path key with a
// passphrase) it only removes them, since they are stale.
func (d *Daemon) toAgent(cert *ssh.Certificate, now time.Time) {
	d.st.agentRetry = false
	if d.cfg.AgentSocket == "" {
		return
	}
	ag, err := DialAgent(d.cfg.AgentSocket)
	if err != nil {
		d.log.Warn("not added to ssh-agent; trying again later", "err", Describe(err))
		d.st.agentRetry = true
		return
	}
	defer ag.Close()
	if d.key.priv == nil {
		if _, err := ag.RemoveCluster(d.cfg.Server); err != nil {
			d.log.Warn("removing earlier ssh-agent entries", "err", Describe(err))
		}
		return
	}
	lifetime, removed, err := ag.Add(AgentEntry{
		Server: d.cfg.Server, User: d.cfg.User, Key: d.key.priv, Cert: cert,
		// A key made in memory is only in the agent: ssh_config names
		// its public key, which needs the plain entry (see AgentEntry).
		PlainKey: d.key.pubFile == "",
	}, now)
	if err != nil && lifetime == 0 {
		d.log.Warn("not added to ssh-agent; trying again later", "err", Describe(err))
		d.st.agentRetry = true
		return
	}
	if err != nil {
		d.log.Warn("removing earlier ssh-agent entries", "err", Describe(err))
	}
	d.log.Debug("added to ssh-agent", "lifetime", (time.Duration(lifetime) * time.Second).String(), "replaced", removed)
}

// removeFromAgent removes the cluster's entries from the agent.
func (d *Daemon) removeFromAgent() {
	if d.cfg.AgentSocket == "" {
		return
	}
	ag, err := DialAgent(d.cfg.AgentSocket)
	if err != nil {
		d.log.Warn("could not remove the certificates from ssh-agent; they leave it when they expire", "err", Describe(err))
		return
	}
	defer ag.Close()
	n, err := ag.RemoveCluster(d.cfg.Server)
	if err != nil {
		d.log.Warn("could not remove the certificates from ssh-agent; they leave it when they expire", "err", Describe(err))
	}
	if n > 0 {
		d.log.Debug("removed from ssh-agent", "entries", n)
	}
}

// signedOut removes what the daemon delivered: the agent entries and the
// certificate file (see ownsCertFile). The file would only hold a
// certificate of an ended sign-in.
func (d *Daemon) signedOut(reason string) {
	st := &d.st
	if !st.dirty {
		return
	}
	had := st.cert != nil
	st.cert, st.renewAt, st.fresh, st.dirty, st.agentRetry = nil, time.Time{}, false, false, false
	d.removeFromAgent()
	removedFile := false
	if d.ownsCertFile() {
		if err := os.Remove(d.profile.CertFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Error("removing the certificate file", "path", d.profile.CertFile, "err", err)
		} else {
			removedFile = true
		}
	}
	if had || removedFile {
		d.log.Info("certificate removed", "reason", reason, "cert_path", d.profile.CertFile)
	}
	if p, err := d.cfg.Home.LoadProfile(d.cfg.Server); err == nil && p.Device != "" && !p.SessionExpires.IsZero() {
		p.SessionExpires = time.Time{}
		if err := p.Save(); err != nil {
			d.log.Warn("updating the profile", "err", err)
		}
	}
	d.setStatus("waiting for sign-in at " + d.cfg.Server.URL() + " (" + reason + ")")
}

// ownsCertFile reports whether the certificate file holds a certificate
// the daemon may remove: one for the user, and either in the cluster's
// state directory or for the --key-path key.
func (d *Daemon) ownsCertFile() bool {
	cert, err := readCert(d.profile.CertFile)
	if err != nil || cert.KeyId != d.cfg.User {
		return false
	}
	return d.key.pubFile == "" || bytes.Equal(cert.Key.Marshal(), d.key.pub.Marshal())
}

// writeState writes the cluster's profile, known_hosts and ssh_config as
// a login would, so that config and status work for the daemon's
// certificate. The profile holds no session token: the sign-in belongs to
// the browser.
func (d *Daemon) writeState(info api.CAInfo) error {
	p := *d.profile
	if err := ensurePrivateDir(p.dir, true); err != nil {
		return err
	}
	if old, err := d.cfg.Home.LoadProfile(d.cfg.Server); err == nil {
		p.Hosts = old.Hosts
	}
	if d.cfg.Hosts != nil {
		p.Hosts = d.cfg.Hosts
	}
	p.Pin = d.dev.info.Pin
	p.SessionExpires, p.Device = d.st.have.Expires, d.dev.info.DeviceID
	if info.ProxyAddr != "" {
		if err := CheckProxyAddr(info.ProxyAddr); err != nil {
			d.log.Warn("ignoring the proxy address the CA reported", "err", err)
		} else {
			p.ProxyAddr = info.ProxyAddr
		}
	}
	kh, err := knownHosts(info.HostCA, d.cfg.Server)
	if err != nil {
		return err
	}
	block, err := p.sshConfig().Generate()
	if err != nil {
		return err
	}
	if d.key.pubFile == "" {
		if err := writeFile(p.KeyFile, ssh.MarshalAuthorizedKey(d.key.pub)); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{p.KnownHostsFile(), []byte(kh)}, {p.SSHConfigFile(), []byte(block)}} {
		if err := writeFile(f.path, f.data); err != nil {
			return err
		}
	}
	if err := p.Save(); err != nil {
		return err
	}
	// Key files of a login that this daemon does not use go: a private
	// key whose certificate the daemon has replaced would not work.
	for _, f := range []string{keyFile, pubKeyFile, certFile} {
		path := filepath.Join(p.dir, f)
		if path == p.KeyFile || path == p.CertFile {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
