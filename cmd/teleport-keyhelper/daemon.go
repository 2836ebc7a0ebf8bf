package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/internal/cli"
	"github.com/opensshca/suite/internal/logging"
	"github.com/opensshca/suite/internal/sdnotify"
	"github.com/opensshca/suite/keyhelper"
)

// exitRegister is the exit status of a daemon that cannot run until the
// device is registered (again): restarting it does not help, and the
// systemd unit's RestartPreventExitStatus= names it.
const exitRegister = 3

type daemonFlags struct {
	server, user, token, pin string
	ttl                      durationFlag
	keyPath, certPath        string
	hosts, home, logLevel    string
}

func (a *app) daemonCmd() *ffcli.Command {
	var f daemonFlags
	fs := newFlagSet("daemon")
	fs.StringVar(&f.server, "server", "", "the CA: https://`HOST[:PORT]` (port 3080 if none)")
	fs.StringVar(&f.user, "auth", "", "your cluster user `name`: the token's user, and the registered device's")
	fs.StringVar(&f.token, "token", "", "single-use registration `token` (caadm tokens add --role keyhelper --user NAME, or the web page); needed on the first start only")
	fs.StringVar(&f.pin, "ca-pin", "", "the CA's TLS root pin, `sha256:HEX` (default: the one stored at registration, or the last login's)")
	f.ttl = durationFlag(keyhelper.DefaultCertTTL)
	fs.Var(&f.ttl, "cert-ttl", "certificate lifetime to ask for, a `duration`; the CA caps it by your roles and the sign-in's end")
	fs.StringVar(&f.keyPath, "key-path", "", "certify this public key `file` (.pub); the private key stays where it is (default: a new key in memory, kept only in ssh-agent)")
	fs.StringVar(&f.certPath, "cert-path", "", "write the certificate to this `file` (with --key-path; default: next to the key, -cert.pub)")
	fs.StringVar(&f.hosts, "hosts", "", "ssh_config host `patterns` of the cluster's hosts, separated by commas (default: the proxy's domain)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	homeFlag(fs, &f.home)
	return &ffcli.Command{
		Name:       "daemon",
		ShortUsage: "teleport-keyhelper daemon --server https://HOST:3080 --auth NAME [--token TOKEN] [--ca-pin sha256:HEX] [flags]",
		ShortHelp:  "Get certificates when you sign in on the web page, and renew them",
		LongHelp: strings.TrimSpace(`
Runs in the background (as a systemd user service: packaging/systemd) and
gets you a certificate whenever you sign in on the CA's web page, without
typing anything here.

On its first start it registers this machine as a device of your user with
a single-use token: from your administrator (caadm tokens add --role
keyhelper --user NAME) or from "Add a keyhelper device" on the web page,
which prints the whole command. The device's key and certificate are kept
in ~/.teleport/HOST_PORT/device/; later starts need no token.

It then keeps a connection to the CA open. When you sign in on the web
page, the CA tells it; it sends the public key, writes the certificate it
gets to --cert-path (or ~/.teleport/HOST_PORT/key-cert.pub) and adds it to
the ssh-agent at $SSH_AUTH_SOCK, replacing this cluster's earlier entry.
Before two thirds of the certificate's life have passed it gets a new one,
as long as the sign-in lasts. When the sign-in ends (expiry, sign-out,
account locked or removed), it removes the agent entry and the certificate
file. It rides out CA restarts, network loss and suspend.

Logs go to standard error (JSON unless it is a terminal). Exit status: 0
when stopped by a signal, 1 on failure, 2 on a usage error, 3 when the
device must be registered (again) with a new token.

Example:
  teleport-keyhelper daemon --server https://ca.example.com:3080 --auth alice \
      --token 5f0c... --ca-pin sha256:0f3a...`),
		FlagSet: fs,
		Options: envOptions(),
		Exec:    noArgs(fs, func(ctx context.Context) error { return a.daemon(ctx, fs, &f) }),
	}
}

func (a *app) daemon(ctx context.Context, fs *flag.FlagSet, f *daemonFlags) error {
	s, hosts, err := checkClusterFlags(fs, clusterFlags{
		server: f.server, userFlag: "--auth", user: f.user, pin: f.pin,
		keyPath: f.keyPath, certPath: f.certPath, hosts: f.hosts,
	})
	if err != nil {
		return err
	}
	level, err := logging.ParseLevel(f.logLevel)
	if err != nil {
		return cli.Usagef(fs, "--log-level: %s", strings.TrimPrefix(err.Error(), "logging: "))
	}
	h, err := a.home(f.home, true)
	if err != nil {
		return err
	}
	log := logging.New(a.stderr, level)
	d, err := keyhelper.NewDaemon(keyhelper.DaemonConfig{
		Home: h, Server: s, User: f.user, Token: f.token, Pin: f.pin, CertTTL: time.Duration(f.ttl),
		KeyPath: f.keyPath, CertPath: f.certPath, Hosts: hosts, AgentSocket: a.getenv(keyhelper.AgentEnv),
		Log: log,
		Ready: func() {
			if err := sdnotify.Ready(); err != nil {
				log.Warn("telling systemd the daemon is ready", "err", err)
			}
		},
		Status: func(msg string) { _ = sdnotify.Status(msg) },
	})
	if err != nil {
		return err
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go sdnotify.Watchdog(wctx, d.Healthy, log)
	err = d.Run(ctx)
	_ = sdnotify.Stopping()
	var re *keyhelper.RegistrationError
	if errors.As(err, &re) {
		return &exitError{code: exitRegister, err: err}
	}
	return err
}

// exitError ends the program with code after printing err.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return fmt.Sprint(e.err) }

func (e *exitError) Unwrap() error { return e.err }
