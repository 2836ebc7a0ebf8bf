package keyhelper

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
)

// timeLayout is how times are shown to the user.
const timeLayout = "2006-01-02 15:04:05 MST"

// reuseMargin is how much of a sign-in must be left for login to reuse
// it instead of asking for the password again.
const reuseMargin = time.Minute

// LoginConfig says how to log in. Zero fields have the documented
// defaults.
type LoginConfig struct {
	Home   *Home
	Server Server
	User   string
	// Pin is the CA's TLS root pin (--ca-pin); empty means the one the
	// last login used, or none (the system's roots).
	Pin string
	// TTL is the certificate lifetime wanted; zero means the CA's
	// default. Roles and the sign-in's end cap it.
	TTL time.Duration
	// KeyPath names a public key (.pub) to certify instead of making a
	// new ed25519 key; CertPath is where its certificate goes, by default
	// DefaultCertPath(KeyPath).
	KeyPath, CertPath string
	// Confirm adds the agent entry with confirmation required on each use.
	Confirm bool
	// Relogin asks for the password and code even when the last
	// sign-in could be reused.
	Relogin bool
	// Hosts are the ssh_config host patterns (--hosts); nil keeps the
	// ones the last login was given, if any, or the default.
	Hosts []string
	// AgentSocket is $SSH_AUTH_SOCK; empty means no agent.
	AgentSocket string
	// Credentials asks the user for the password and code.
	Credentials func(ctx context.Context) (Credentials, error)
	// Notes receives what the user should read on the way: progress and
	// warnings (standard error). Nil discards them.
	Notes io.Writer
	// Clock returns the time; nil is time.Now.
	Clock func() time.Time
	// Rand is the source for new keys; nil is crypto/rand.
	Rand io.Reader
}

// LoginResult is what a login did.
type LoginResult struct {
	Profile *Profile
	Cert    *ssh.Certificate
	// SSHConfig is the ssh_config block, also written to
	// Profile.SSHConfigFile().
	SSHConfig string
	// InAgent reports whether the certificate went into the agent.
	InAgent bool
}

// login carries one login through its steps.
type login struct {
	cfg    LoginConfig
	now    time.Time
	notes  io.Writer
	client *client.Client
	info   api.CAInfo
	old    *Profile // the profile before this login, or nil
	p      *Profile // the new profile
	id     *identity
}

// Login signs in to the CA (or reuses the last sign-in), gets a
// certificate, writes the cluster's state files and puts the certificate
// into the agent. Problems with the agent are notes, not errors: the files
// are written and usable without it.
func Login(ctx context.Context, cfg LoginConfig) (*LoginResult, error) {
	l := &login{cfg: cfg, notes: cfg.Notes}
	if l.notes == nil {
		l.notes = io.Discard
	}
	if cfg.Clock == nil {
		l.cfg.Clock = time.Now
	}
	if cfg.Rand == nil {
		l.cfg.Rand = rand.Reader
	}
	l.now = l.cfg.Clock()
	if err := CheckUser(cfg.User); err != nil {
		return nil, err
	}
	res, err := l.run(ctx)
	if err != nil && l.old == nil && l.p != nil {
		// A failed first login leaves no empty cluster directory (Remove
		// keeps one that holds anything, such as a saved sign-in).
		_ = os.Remove(l.p.dir)
	}
	return res, err
}

func (l *login) run(ctx context.Context) (*LoginResult, error) {
	if err := l.prepare(ctx); err != nil {
		return nil, err
	}
	cert, err := l.certificate(ctx)
	if err != nil {
		return nil, err
	}
	return l.finish(cert)
}

// prepare loads the old profile, fetches the CA's keys and readies the
// key to certify.
func (l *login) prepare(ctx context.Context) error {
	old, err := l.cfg.Home.LoadProfile(l.cfg.Server)
	switch {
	case errors.Is(err, ErrNotLoggedIn):
	case err != nil:
		return err
	default:
		l.old = old
	}
	if l.p, err = l.cfg.Home.newProfile(l.cfg.Server); err != nil {
		return err
	}
	l.p.User, l.p.Pin, l.p.Hosts = l.cfg.User, l.cfg.Pin, l.cfg.Hosts
	if l.old != nil {
		if l.p.Pin == "" {
			l.p.Pin = l.old.Pin
		}
		if l.p.Hosts == nil {
			l.p.Hosts = l.old.Hosts
		}
	}
	if l.client, err = client.New(l.cfg.Server.URL(), client.Options{Pin: l.p.Pin}); err != nil {
		return err
	}
	if l.info, err = l.client.CA(ctx); err != nil {
		return remote(l.cfg.Server, err)
	}
	if l.info.ProxyAddr != "" {
		if err := CheckProxyAddr(l.info.ProxyAddr); err != nil {
			fmt.Fprintf(l.notes, "Ignoring the proxy address the CA reported: %v\n", strings.TrimPrefix(err.Error(), "keyhelper: "))
		} else {
			l.p.ProxyAddr = l.info.ProxyAddr
		}
	}
	return l.prepareKey()
}

func (l *login) prepareKey() error {
	var err error
	if l.cfg.KeyPath == "" {
		if l.cfg.CertPath != "" {
			return errors.New("keyhelper: --cert-path needs --key-path")
		}
		l.p.KeyFile = filepath.Join(l.p.dir, keyFile)
		l.p.CertFile = filepath.Join(l.p.dir, certFile)
		if l.agentOnly() {
			// A key file would let any program use the key without
			// confirmation: the private key lives in the agent only,
			// and ssh_config names its public key.
			l.p.KeyFile = filepath.Join(l.p.dir, pubKeyFile)
			if err := l.checkAgent(); err != nil {
				return err
			}
		}
		l.id, err = newIdentity(l.cfg.Rand, AgentComment(l.cfg.Server, l.cfg.User))
		return err
	}
	if l.id, err = loadIdentity(l.cfg.KeyPath, l.cfg.CertPath); err != nil {
		return err
	}
	l.p.PublicKeyFile, l.p.CertFile, l.p.KeyFile = l.id.pubFile, l.id.certFile, l.id.privFile
	if l.p.KeyFile == "" {
		l.p.KeyFile = l.id.pubFile // ssh takes a public key file when the agent holds the key
	}
	return nil
}

// agentOnly reports whether a key the keyhelper makes is kept in the
// agent only: with --confirm.
func (l *login) agentOnly() bool { return l.cfg.Confirm && l.cfg.KeyPath == "" }

// checkAgent fails unless the agent answers, before anything is asked
// for: a key kept only in the agent would otherwise be lost.
func (l *login) checkAgent() error {
	ag, err := DialAgent(l.cfg.AgentSocket)
	if err != nil {
		return fmt.Errorf("keyhelper: --confirm keeps the key only in ssh-agent, but there is none to use: %s", Describe(err))
	}
	_, err = ag.client.List()
	ag.Close()
	if err != nil {
		return &AgentError{Socket: l.cfg.AgentSocket, Op: "listing keys", Err: err}
	}
	return nil
}

// certificate gets a certificate, within the last sign-in if it can be
// reused, else after signing in.
func (l *login) certificate(ctx context.Context) (*ssh.Certificate, error) {
	if o := l.old; o != nil && !l.cfg.Relogin && o.Session != "" && o.User == l.cfg.User &&
		o.SessionExpires.After(l.now.Add(reuseMargin)) {
		fmt.Fprintf(l.notes, "Reusing your sign-in as %s, valid until %s (--relogin signs in again).\n",
			o.User, o.SessionExpires.Local().Format(timeLayout))
		cert, err := l.request(ctx, o.Session)
		var ae *api.Error
		if !errors.As(err, &ae) || (ae.Code != api.CodeSessionExpired && ae.Code != api.CodeUnauthorized) {
			if err == nil {
				l.p.Session, l.p.SessionExpires = o.Session, o.SessionExpires
			}
			return cert, err
		}
		fmt.Fprintln(l.notes, "That sign-in has ended; signing in again.")
	}
	if err := l.signIn(ctx); err != nil {
		return nil, err
	}
	return l.request(ctx, l.p.Session)
}

// signIn asks for the credentials, opens a sign-in session and saves it at
// once: it exists on the server even if what follows fails, and logout
// needs it.
func (l *login) signIn(ctx context.Context) error {
	if l.cfg.Credentials == nil {
		return errors.New("keyhelper: a new sign-in is needed, but there is no way to ask for the password")
	}
	creds, err := l.cfg.Credentials(ctx)
	if err != nil {
		return err
	}
	resp, err := l.client.Login(ctx, api.LoginRequest{User: l.cfg.User, Password: creds.Password, TOTP: creds.Code})
	if err != nil {
		return remote(l.cfg.Server, err)
	}
	l.p.Session, l.p.SessionExpires = Secret(resp.Session), resp.Expires
	if err := l.p.Save(); err != nil {
		return err
	}
	// The previous sign-in is replaced; end it rather than leave it
	// valid on the server. Failing that is harmless: it expires.
	if o := l.old; o != nil && o.Session != "" && o.Session != l.p.Session {
		_ = l.client.Logout(ctx, string(o.Session))
	}
	fmt.Fprintf(l.notes, "Signed in to %s as %s; the sign-in lasts until %s.\n",
		l.cfg.Server, l.cfg.User, resp.Expires.Local().Format(timeLayout))
	return nil
}

// request asks for a certificate within session and checks it.
func (l *login) request(ctx context.Context, session Secret) (*ssh.Certificate, error) {
	resp, err := l.client.SignUser(ctx, string(session), api.SignUserRequest{
		PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(l.id.pub))),
		TTL:       api.Duration(l.cfg.TTL),
	})
	if err != nil {
		return nil, remote(l.cfg.Server, err)
	}
	// The user may have taken a while to type: the agent lifetime and
	// what is shown count from now.
	l.now = l.cfg.Clock()
	skew, known := l.client.ClockSkew(l.now)
	cert, err := l.checkCert(resp.Certificate)
	if err != nil {
		return nil, withSkew(err, skew, known)
	}
	if w := clockWarning(cert, l.now, skew, known); w != "" {
		fmt.Fprintf(l.notes, "Warning: %s.\n", w)
	}
	return cert, nil
}

// checkCert parses the certificate the CA returned and checks it with
// checkUserCert.
func (l *login) checkCert(line string) (*ssh.Certificate, error) {
	return checkUserCert(line, l.id.pub, l.cfg.User, l.info.UserCA, l.now)
}

// checkUserCert parses a certificate the CA returned and checks that it
// is what was asked for: a user certificate for pub and user, signed by
// the user CA the CA reported (userCA), not expired at now.
func checkUserCert(line string, pub ssh.PublicKey, user, userCA string, now time.Time) (*ssh.Certificate, error) {
	bad := func(why string) error {
		return fmt.Errorf("keyhelper: the CA returned a certificate %s; tell your administrator", why)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, bad(fmt.Sprintf("that cannot be parsed (%v)", err))
	}
	cert, ok := key.(*ssh.Certificate)
	switch {
	case !ok:
		return nil, bad("that is not a certificate")
	case cert.CertType != ssh.UserCert:
		return nil, bad("that is not a user certificate")
	case !bytes.Equal(cert.Key.Marshal(), pub.Marshal()):
		return nil, bad("for another key")
	case cert.KeyId != user:
		return nil, bad(fmt.Sprintf("for %q, not %q", cert.KeyId, user))
	case len(cert.ValidPrincipals) == 0:
		return nil, bad("without logins")
	}
	if ca, _, _, _, err := ssh.ParseAuthorizedKey([]byte(userCA)); err != nil ||
		!bytes.Equal(cert.SignatureKey.Marshal(), ca.Marshal()) {
		return nil, bad("not signed by the cluster's user CA")
	}
	if _, err := AgentLifetime(cert.ValidBefore, now); err != nil {
		return nil, err
	}
	return cert, nil
}

// finish writes the files, fills the agent and builds the result.
func (l *login) finish(cert *ssh.Certificate) (*LoginResult, error) {
	kh, err := knownHosts(l.info.HostCA, l.cfg.Server)
	if err != nil {
		return nil, err
	}
	block, err := l.p.sshConfig().Generate()
	if err != nil {
		return nil, err
	}
	if err := l.writeFiles(cert, kh, block); err != nil {
		return nil, err
	}
	end := CertEnd(cert)
	fmt.Fprintf(l.notes, "Certificate for %s valid until %s (%v), serial %d.\n",
		strings.Join(cert.ValidPrincipals, ", "), end.Local().Format(timeLayout), end.Sub(l.now).Round(time.Second), cert.Serial)
	inAgent := l.toAgent(cert)
	if !inAgent && l.agentOnly() {
		return nil, errors.New("keyhelper: --confirm keeps the key only in ssh-agent, and it could not be added there (see above); log in again")
	}
	fmt.Fprintf(l.notes, "Wrote the certificate to %s and the cluster's state to %s.\n", l.p.CertFile, l.p.dir)
	if l.p.ProxyAddr == "" {
		fmt.Fprintln(l.notes, "The cluster has no proxy registered yet: the ssh_config block reaches its hosts directly; log in again once it has one.")
	}
	return &LoginResult{Profile: l.p, Cert: cert, SSHConfig: block, InAgent: inAgent}, nil
}

func (l *login) writeFiles(cert *ssh.Certificate, kh, block string) error {
	switch {
	case l.agentOnly():
		if err := writeFile(l.p.KeyFile, ssh.MarshalAuthorizedKey(l.id.pub)); err != nil {
			return err
		}
	case l.id.pem != nil:
		if err := writeFile(l.p.KeyFile, l.id.pem); err != nil {
			return err
		}
	}
	if err := writeFile(l.p.CertFile, ssh.MarshalAuthorizedKey(cert)); err != nil {
		return err
	}
	if err := writeFile(l.p.KnownHostsFile(), []byte(kh)); err != nil {
		return err
	}
	if err := writeFile(l.p.SSHConfigFile(), []byte(block)); err != nil {
		return err
	}
	if err := l.p.Save(); err != nil {
		return err
	}
	// Key files of an earlier login that this one does not use go: a
	// stale private key after --confirm, or our key after --key-path.
	for _, f := range []string{keyFile, pubKeyFile, certFile} {
		path := filepath.Join(l.p.dir, f)
		if path == l.p.KeyFile || path == l.p.CertFile {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("keyhelper: %w", err)
		}
	}
	return nil
}

// toAgent puts the certificate into the agent, or says why not. It
// reports whether the agent holds it.
func (l *login) toAgent(cert *ssh.Certificate) bool {
	ag, err := DialAgent(l.cfg.AgentSocket)
	if err != nil {
		fmt.Fprintf(l.notes, "Not added to an agent: %s. ssh can use the files instead (ssh -i %s, or the ssh_config block)",
			Describe(err), quotePath(l.p.KeyFile))
		if l.cfg.Confirm {
			fmt.Fprint(l.notes, "; --confirm needs an agent")
		}
		fmt.Fprintln(l.notes, ".")
		return false
	}
	defer ag.Close()
	if l.id.priv == nil {
		n, err := ag.RemoveCluster(l.cfg.Server)
		fmt.Fprintf(l.notes, "Not added to ssh-agent: %s.\n", l.id.privNote)
		if l.id.privFile != "" {
			fmt.Fprintf(l.notes, "Add it yourself with: ssh-add %s (ssh-add loads %s with it when it is named like the key with -cert.pub).\n",
				quotePath(l.id.privFile), quotePath(l.p.CertFile))
		}
		l.noteRemoved(n, err)
		return false
	}
	lifetime, n, err := ag.Add(AgentEntry{Server: l.cfg.Server, User: l.cfg.User, Key: l.id.priv, Cert: cert,
		Confirm: l.cfg.Confirm, PlainKey: l.agentOnly()}, l.now)
	if err != nil && lifetime == 0 {
		fmt.Fprintf(l.notes, "Not added to ssh-agent: %s\n", Describe(err))
		return false
	}
	confirm := ""
	if l.cfg.Confirm {
		confirm = ", asking for confirmation on each use"
	}
	fmt.Fprintf(l.notes, "Added to ssh-agent for %v%s.\n", time.Duration(lifetime)*time.Second, confirm)
	l.noteRemoved(n, err)
	return true
}

func (l *login) noteRemoved(n int, err error) {
	if n > 0 {
		fmt.Fprintf(l.notes, "Removed %s of this cluster from ssh-agent.\n", plural(n, "earlier entry", "earlier entries"))
	}
	if err != nil {
		fmt.Fprintf(l.notes, "Could not remove all earlier entries of this cluster from ssh-agent: %s\n", Describe(err))
	}
}

// knownHosts returns the known_hosts file for the host CA key hostCA:
// one @cert-authority line for every host name. The file is used only
// for the cluster's hosts (the ssh_config block names it there), and a
// host certificate is accepted only for the names it lists.
func knownHosts(hostCA string, s Server) (string, error) {
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hostCA))
	if err != nil {
		return "", fmt.Errorf("keyhelper: the CA at %s sent a host CA key that cannot be parsed (%v); tell your administrator", s, err)
	}
	if _, ok := key.(*ssh.Certificate); ok {
		return "", fmt.Errorf("keyhelper: the CA at %s sent a certificate as its host CA key; tell your administrator", s)
	}
	return fmt.Sprintf("# Written by teleport-keyhelper: the host CA of the cluster at %s.\n"+
		"# Hosts are trusted through their host certificates, never on first use.\n"+
		"@cert-authority * %s host-ca@%s\n",
		s, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))), s), nil
}

// sshConfig returns the ssh_config description of p.
func (p *Profile) sshConfig() SSHConfig {
	s, _ := ParseServer(p.Server)
	return SSHConfig{
		Server:         s,
		User:           p.User,
		ProxyAddr:      p.ProxyAddr,
		Hosts:          p.Hosts,
		KnownHostsFile: p.KnownHostsFile(),
		CertFile:       p.CertFile,
		IdentityFile:   p.KeyFile,
		IncludeGlob:    filepath.Join(filepath.Dir(p.dir), "*", sshConfigFile),
	}
}

// SSHConfig returns the ssh_config block of p, with hosts as the host
// patterns instead of the profile's when hosts is not nil.
func (p *Profile) SSHConfig(hosts []string) (string, error) {
	c := p.sshConfig()
	if hosts != nil {
		c.Hosts = hosts
	}
	return c.Generate()
}

// plural returns "1 entry" or "n entries".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
