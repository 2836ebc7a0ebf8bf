package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/ca/client"
	"github.com/opensshca/suite/internal/cli"
	"github.com/opensshca/suite/keyhelper"
)

type loginFlags struct {
	server, user, pin string
	ttl               durationFlag
	keyPath, certPath string
	confirm, relogin  bool
	hosts, home       string
}

func (a *app) loginCmd() *ffcli.Command {
	var f loginFlags
	fs := newFlagSet("login")
	fs.StringVar(&f.server, "server", "", "the CA: https://`HOST[:PORT]` (port 3080 if none)")
	fs.StringVar(&f.user, "user", "", "your cluster user `name`")
	fs.StringVar(&f.pin, "ca-pin", "", "the CA's TLS root pin, `sha256:HEX`, from your administrator (default: the last login's; without one the system's CAs are trusted)")
	fs.Var(&f.ttl, "ttl", "certificate lifetime wanted, a `duration` such as 8h (default: the CA's; roles and the sign-in's end cap it)")
	fs.StringVar(&f.keyPath, "key-path", "", "certify this public key `file` (.pub) instead of making a new key; the private key stays where it is")
	fs.StringVar(&f.certPath, "cert-path", "", "write the certificate to this `file` (with --key-path; default: next to the key, -cert.pub)")
	fs.BoolVar(&f.confirm, "confirm", false, "add to ssh-agent with confirmation required on each use (ssh-add -c); a new key is then kept in the agent only")
	fs.BoolVar(&f.relogin, "relogin", false, "ask for password and code even if the last sign-in is still valid")
	fs.BoolVar(&f.relogin, "force", false, "same as --relogin")
	fs.StringVar(&f.hosts, "hosts", "", "ssh_config host `patterns` of the cluster's hosts, separated by commas (default: the proxy's domain; kept for later logins)")
	homeFlag(fs, &f.home)
	return &ffcli.Command{
		Name:       "login",
		ShortUsage: "teleport-keyhelper login --server https://HOST:3080 --user NAME [--ca-pin sha256:HEX] [flags]",
		ShortHelp:  "Sign in and get a certificate",
		LongHelp: strings.TrimSpace(`
Signs in to the CA with your password and a one-time code from your
authenticator app, and gets a short-lived SSH certificate. On a terminal it
asks for them (the password without echo); otherwise it reads them from
standard input as two lines, password first.

A sign-in lasts longer than a certificate (12 hours by default): while it
lasts, login gets a new certificate without asking again (--relogin asks).

Without --key-path it makes a new ed25519 key. The key and certificate go
into the ssh-agent at $SSH_AUTH_SOCK for as long as the certificate is
valid, replacing this cluster's earlier entry, and into
~/.teleport/HOST_PORT/ (key, key-cert.pub) with the cluster's known_hosts
(its host CA) and profile. With --key-path the certificate is written next
to that key, and goes into the agent only if the private key file next to
the .pub file is readable without a passphrase; otherwise run ssh-add
yourself. --confirm makes the agent ask before each use; a new key is then
not written to disk (only key.pub), since a key file would bypass the
question, so --confirm needs an agent.

Prints the ssh_config block to use (teleport-keyhelper config prints it
again); it is also kept in ~/.teleport/HOST_PORT/ssh_config. With it,
ssh reaches the cluster's hosts through the proxy with ProxyJump
(ssh root@node1.prod.example.com), or in one hop with the login and the
node in the user name (ssh root@node1@PROXY; scp and sftp alike): see
teleport-keyhelper config -h. The login also remembers the proxy's
address for teleport-keyhelper sessions.

Examples:
  teleport-keyhelper login --server https://ca.example.com:3080 --user alice \
      --ca-pin sha256:0f3a...
  teleport-keyhelper login --server ca.example.com --user alice \
      --key-path ~/.ssh/id_ed25519.pub --hosts '*.prod.example.com,db-*'`),
		FlagSet: fs,
		Options: envOptions(),
		Exec:    noArgs(fs, func(ctx context.Context) error { return a.login(ctx, fs, &f) }),
	}
}

func (a *app) login(ctx context.Context, fs *flag.FlagSet, f *loginFlags) error {
	s, hosts, err := checkClusterFlags(fs, clusterFlags{
		server: f.server, userFlag: "--user", user: f.user, pin: f.pin,
		keyPath: f.keyPath, certPath: f.certPath, hosts: f.hosts,
	})
	if err != nil {
		return err
	}
	h, err := a.home(f.home, true)
	if err != nil {
		return err
	}
	res, err := keyhelper.Login(ctx, keyhelper.LoginConfig{
		Home: h, Server: s, User: f.user, Pin: f.pin, TTL: time.Duration(f.ttl),
		KeyPath: f.keyPath, CertPath: f.certPath, Confirm: f.confirm, Relogin: f.relogin,
		Hosts: hosts, AgentSocket: a.getenv(keyhelper.AgentEnv), Notes: a.stderr,
		Credentials: func(ctx context.Context) (keyhelper.Credentials, error) {
			return keyhelper.Prompt{In: a.stdin, Out: a.stderr}.Read(ctx, f.user)
		},
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "The ssh_config block to use (also in %s):\n", res.Profile.SSHConfigFile())
	_, err = fmt.Fprint(a.stdout, res.SSHConfig)
	return err
}

// durationFlag is a positive duration such as 15m or 8h; zero means unset.
type durationFlag time.Duration

func (d *durationFlag) String() string {
	if *d == 0 {
		return ""
	}
	return time.Duration(*d).String()
}

func (d *durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("%q is not a duration such as 15m or 8h", s)
	}
	*d = durationFlag(v)
	return nil
}

// clusterFlags are the flags login and daemon share.
type clusterFlags struct {
	server   string
	userFlag string // "--user" or "--auth", for messages
	user     string
	pin      string
	keyPath  string
	certPath string
	hosts    string
}

// checkClusterFlags validates the shared flags and returns the server and
// the host patterns (nil when --hosts is not given).
func checkClusterFlags(fs *flag.FlagSet, f clusterFlags) (keyhelper.Server, []string, error) {
	if f.server == "" {
		return keyhelper.Server{}, nil, cli.Usagef(fs, "missing --server https://HOST:3080")
	}
	if f.user == "" {
		return keyhelper.Server{}, nil, cli.Usagef(fs, "missing %s NAME", f.userFlag)
	}
	s, err := keyhelper.ParseServer(f.server)
	if err != nil {
		return keyhelper.Server{}, nil, cli.Usagef(fs, "%s", strings.TrimPrefix(err.Error(), "keyhelper: "))
	}
	if err := keyhelper.CheckUser(f.user); err != nil {
		return keyhelper.Server{}, nil, cli.Usagef(fs, "%s: %s", f.userFlag, strings.TrimPrefix(err.Error(), "keyhelper: "))
	}
	if f.pin != "" {
		if _, err := client.ParsePin(f.pin); err != nil {
			return keyhelper.Server{}, nil, cli.Usagef(fs, "--ca-pin: %s", strings.TrimPrefix(err.Error(), "client: "))
		}
	}
	if f.certPath != "" && f.keyPath == "" {
		return keyhelper.Server{}, nil, cli.Usagef(fs, "--cert-path needs --key-path")
	}
	var hosts []string
	if f.hosts != "" {
		if hosts, err = keyhelper.ParseHosts(f.hosts); err != nil {
			return keyhelper.Server{}, nil, cli.Usagef(fs, "%s", strings.TrimPrefix(err.Error(), "keyhelper: "))
		}
	}
	return s, hosts, nil
}
