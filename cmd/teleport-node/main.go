// Command teleport-node is the agent on every node: it joins the cluster
// with a token, prints and installs the sshd_config drop-in, and runs to
// keep the host certificate, the CA key files, the revocation list, the
// login-policy cache and the NSS files current. The work is done by
// package node; docs/node.md is the operator's guide.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/opensshca/suite/internal/cli"
	"github.com/opensshca/suite/internal/logging"
	"github.com/opensshca/suite/internal/metrics"
	"github.com/opensshca/suite/internal/nodedir"
	"github.com/opensshca/suite/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func newFlagSet(path string) *flag.FlagSet {
	fs := flag.NewFlagSet(strings.TrimSpace("teleport-node "+path), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func envOptions() []ff.Option { return []ff.Option{ff.WithEnvVarPrefix("TELEPORT")} }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := &ffcli.Command{
		Name:       "teleport-node",
		ShortUsage: "teleport-node <join|sshd-config|install-sshd-config|run> [flags]",
		LongHelp: strings.TrimSpace(`
teleport-node makes a host's own sshd part of the cluster: the host gets a
certificate from the cluster's host CA, sshd trusts the cluster's CA for
logins, and teleport-authkeys (run by sshd) answers who may log in as which
account from a cache teleport-node keeps current, even while the CA is down.

Every flag can also come from the environment as TELEPORT_<FLAG>, with "-"
as "_": --data-dir from TELEPORT_DATA_DIR.

Example:
  caadm tokens add --role node --labels env=prod        # on the CA host
  teleport-node join --server https://ca.example.com:3080 --token T \
      --ca-pin sha256:... --name web1
  teleport-node install-sshd-config && systemctl reload ssh
  systemctl enable --now teleport-node`),
		FlagSet: newFlagSet(""),
	}
	root.Subcommands = []*ffcli.Command{joinCmd(stdout), sshdConfigCmd(stdout), installCmd(stdout), runCmd(stderr)}
	root.Exec = func(context.Context, []string) error { return flag.ErrHelp }
	err := cli.Execute(ctx, root, args, stderr)
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "teleport-node: %s\n", err)
	var ue *cli.UsageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

func joinCmd(stdout io.Writer) *ffcli.Command {
	fs := newFlagSet("join")
	var cfg node.JoinConfig
	var addrs listFlag
	fs.StringVar(&cfg.Server, "server", "", "the CA's `URL` (https://ca.example.com:3080)")
	fs.StringVar(&cfg.Token, "token", "", "node join `token` (caadm tokens add --role node)")
	fs.StringVar(&cfg.Pin, "ca-pin", "", "the CA's TLS pin `sha256:...` (caadm ca show)")
	fs.StringVar(&cfg.Dir, "data-dir", nodedir.DefaultDir, "data `directory`")
	fs.StringVar(&cfg.Name, "name", "", "the node's cluster `name` (what users type after ssh root@)")
	fs.StringVar(&cfg.FQDN, "fqdn", "", "the node's fully qualified DNS `name`, added to the host certificate (default: the host name, when it has a dot)")
	fs.Var(&addrs, "address", "comma-separated `addresses` (IPs or names) to add to the host certificate")
	fs.StringVar(&cfg.SSHAddr, "ssh-addr", "", "`host:port` at which proxies may reach this sshd directly when the node holds no tunnel to them (default: through the tunnels only)")
	fs.StringVar(&cfg.AuthkeysUser, "authkeys-user", node.DefaultAuthkeysUser, "`user` sshd runs teleport-authkeys as")
	return &ffcli.Command{
		Name:       "join",
		ShortUsage: "teleport-node join --server URL --token TOKEN --ca-pin PIN --name NAME [--address A,...] [--data-dir DIR]",
		ShortHelp:  "Join the cluster with a node token",
		LongHelp: strings.TrimSpace(`
Makes the node's ed25519 host key and TLS key, exchanges the token for a
host certificate (principals: the name, the FQDN and the addresses; labels
come from the token) and a TLS client identity, and writes them with the
CA's public keys into the data directory. If anything fails, nothing is
left behind.

Example:
  teleport-node join --server https://ca.example.com:3080 --token 5f1c... \
      --ca-pin sha256:9a0b... --name web1 --address 10.0.0.5`),
		FlagSet: fs,
		Options: envOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return cli.Usagef(fs, "unexpected argument %q", args[0])
			}
			for _, f := range []struct{ name, v string }{{"server", cfg.Server}, {"token", cfg.Token}, {"ca-pin", cfg.Pin}, {"name", cfg.Name}} {
				if f.v == "" {
					return cli.Usagef(fs, "--%s is required", f.name)
				}
			}
			cfg.Addresses = addrs
			if cfg.FQDN == "" {
				cfg.FQDN = defaultFQDN()
			}
			jctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := node.Join(jctx, cfg); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "Joined as %s; identity in %s.\n", cfg.Name, cfg.Dir)
			r, err := node.NewRunner(node.RunConfig{Dir: nodedir.Dir(cfg.Dir), NSS: node.NSSConfig{}})
			if err == nil {
				err = r.FetchOnce(jctx)
			}
			if err != nil {
				fmt.Fprintf(stdout, "Warning: the first login policy could not be fetched (%v); teleport-node run will fetch it.\n", err)
			}
			fmt.Fprintf(stdout, "Next: teleport-node install-sshd-config, reload sshd, and start teleport-node run.\n")
			return nil
		},
	}
}

func defaultFQDN() string {
	h, err := os.Hostname()
	if err != nil || !strings.Contains(h, ".") {
		return ""
	}
	return strings.ToLower(h)
}

type sshdFlags struct {
	opts node.SSHDOptions
}

func (f *sshdFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.opts.Dir, "data-dir", nodedir.DefaultDir, "data `directory`")
	fs.StringVar(&f.opts.Authkeys, "authkeys", node.DefaultAuthkeys, "`path` of teleport-authkeys (root-owned, in root-owned directories)")
	fs.StringVar(&f.opts.AuthkeysUser, "authkeys-user", "", "`user` sshd runs teleport-authkeys as (default: the one given at join)")
	fs.BoolVar(&f.opts.KeysCommand, "keys-command", false, "use AuthorizedKeysCommand (cert-authority lines) instead of TrustedUserCAKeys + AuthorizedPrincipalsCommand")
	fs.DurationVar(&f.opts.MaxAge, "max-age", 0, "teleport-authkeys --max-age: how old the policy cache may be before logins need the CA (default 1h)")
}

func (f *sshdFlags) text() (string, error) {
	o := f.opts
	if o.AuthkeysUser == "" {
		if nc, err := nodedir.Dir(o.Dir).LoadConfig(); err == nil {
			o.AuthkeysUser = nc.AuthkeysUser
		}
	}
	return node.SSHDConfig(o)
}

func sshdConfigCmd(stdout io.Writer) *ffcli.Command {
	fs := newFlagSet("sshd-config")
	var f sshdFlags
	f.register(fs)
	return &ffcli.Command{
		Name:       "sshd-config",
		ShortUsage: "teleport-node sshd-config [--data-dir DIR] [--keys-command]",
		ShortHelp:  "Print the sshd_config drop-in",
		LongHelp: strings.TrimSpace(`
Prints the sshd_config lines that make sshd use the node's host
certificate, trust the cluster's CA and ask teleport-authkeys who may log
in. install-sshd-config installs them with a check.

Example:
  teleport-node sshd-config > /etc/ssh/sshd_config.d/50-teleport-node.conf`),
		FlagSet: fs,
		Options: envOptions(),
		Exec: func(ctx context.Context, args []string) error {
			t, err := f.text()
			if err != nil {
				return err
			}
			_, err = io.WriteString(stdout, t)
			return err
		},
	}
}

func installCmd(stdout io.Writer) *ffcli.Command {
	fs := newFlagSet("install-sshd-config")
	var f sshdFlags
	var o node.InstallOptions
	f.register(fs)
	fs.StringVar(&o.Path, "path", node.DropIn, "drop-in `file` to write")
	fs.StringVar(&o.SSHD, "sshd", "/usr/sbin/sshd", "sshd `binary` that checks the result")
	fs.StringVar(&o.MainConfig, "sshd-config", "/etc/ssh/sshd_config", "main sshd_config `file` that includes the drop-in")
	return &ffcli.Command{
		Name:       "install-sshd-config",
		ShortUsage: "teleport-node install-sshd-config [--data-dir DIR] [--path FILE]",
		ShortHelp:  "Install the sshd_config drop-in, checked with sshd -t",
		LongHelp: strings.TrimSpace(`
Writes the drop-in, checks the whole sshd configuration with "sshd -t", and
puts the previous file back if the check fails. sshd is not reloaded:
reload it yourself (systemctl reload ssh) once the node has joined.

Example:
  teleport-node install-sshd-config && systemctl reload ssh`),
		FlagSet: fs,
		Options: envOptions(),
		Exec: func(ctx context.Context, args []string) error {
			t, err := f.text()
			if err != nil {
				return err
			}
			changed, err := node.Install(ctx, t, o)
			if err != nil {
				return err
			}
			if changed {
				fmt.Fprintf(stdout, "Installed %s (sshd -t passed). Reload sshd to apply: systemctl reload ssh\n", o.Path)
			} else {
				fmt.Fprintf(stdout, "%s is already up to date (sshd -t passed).\n", o.Path)
			}
			return nil
		},
	}
}

func runCmd(stderr io.Writer) *ffcli.Command {
	fs := newFlagSet("run")
	var cfg node.RunConfig
	var dir, reload, logLevel, metricsListen string
	cfg.NSS = node.DefaultNSS
	fs.StringVar(&dir, "data-dir", nodedir.DefaultDir, "data `directory`")
	fs.StringVar(&reload, "reload-command", strings.Join(node.DefaultReload, " "), "`command` that makes sshd re-read its host certificate; empty for none")
	fs.StringVar(&cfg.NSS.Dir, "nss-dir", cfg.NSS.Dir, "libnss-extrausers `directory` for personal accounts; empty disables")
	fs.StringVar(&cfg.NSS.Shell, "shell", cfg.NSS.Shell, "login `shell` of personal accounts")
	fs.StringVar(&cfg.NSS.PAMGroupConf, "pam-group-conf", "", "pam_group `file` (/etc/security/group.conf) in which to grant role groups that are local system groups below gid 500, such as sudo; empty skips them")
	fs.DurationVar(&cfg.PolicyWait, "policy-wait", 25*time.Second, "how long the CA may hold a policy request before confirming an unchanged policy (at most 25s); the cache is confirmed at least this often")
	var proxies string
	fs.StringVar(&proxies, "proxy", "", "comma-separated proxy tunnel `addresses` (host:port) to hold reverse tunnels to; default: every proxy the CA lists")
	fs.StringVar(&cfg.SSHDAddr, "sshd-addr", "127.0.0.1:22", "the node's own sshd, the only `address` the tunnels connect to")
	fs.StringVar(&metricsListen, "metrics-listen", "", "`host:port` to serve Prometheus metrics on over plain HTTP at /metrics, such as 127.0.0.1:9582 (default off)")
	fs.DurationVar(&cfg.AuditInterval, "audit-interval", 10*time.Second, "how often the logins teleport-authkeys refused are sent to the CA's audit log")
	fs.DurationVar(&cfg.RenewCheck, "renew-check", time.Minute, "how often the host and TLS certificates' ages are checked (renewal happens at two thirds of their life)")
	fs.BoolVar(&cfg.NoTunnels, "no-tunnels", false, "hold no reverse tunnels (the proxies must then reach this sshd directly)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return &ffcli.Command{
		Name:       "run",
		ShortUsage: "teleport-node run [--data-dir DIR] [--reload-command CMD] [--nss-dir DIR]",
		ShortHelp:  "Keep certificates, policy cache, KRL and NSS files current",
		LongHelp: strings.TrimSpace(`
Runs until stopped: renews the host certificate at two thirds of its life
and reloads sshd when it changed; follows the login policy from the CA
(removals and locks arrive within seconds) and writes the policy cache,
the CA key files, the KRL and the NSS files; holds a reverse tunnel to
every proxy (authenticated with the host certificate, reconnecting with
backoff), through which the proxies reach this node's sshd, so the node
needs no open port. Tells systemd when ready.

Example:
  teleport-node run --data-dir /var/lib/teleport-node`),
		FlagSet: fs,
		Options: envOptions(),
		Exec: func(ctx context.Context, args []string) error {
			level, err := logging.ParseLevel(logLevel)
			if err != nil {
				return cli.Usagef(fs, "%v", err)
			}
			cfg.Log = logging.New(stderr, level)
			cfg.Dir = nodedir.Dir(dir)
			cfg.Reload = strings.Fields(reload)
			for _, p := range strings.Split(proxies, ",") {
				if p = strings.TrimSpace(p); p != "" {
					cfg.Proxies = append(cfg.Proxies, p)
				}
			}
			mln, err := metrics.Listen(metricsListen)
			if err != nil {
				return err
			}
			r, err := node.NewRunner(cfg)
			if err != nil {
				if mln != nil {
					mln.Close()
				}
				return err
			}
			go func() {
				if err := metrics.Serve(ctx, mln, r.Metrics(), cfg.Log); err != nil {
					cfg.Log.Error("metrics stopped", "err", err)
				}
			}()
			cfg.Log.Info("teleport-node running", "data_dir", dir)
			return r.Run(ctx)
		},
	}
}
