package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"
	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/cli"
)

type signConfig struct {
	name, pubkey       string
	logins, principals listFlag
	ttl                durationFlag
	host               bool
}

func newSignCmd(root *rootConfig, stdout io.Writer) *ffcli.Command {
	var cfg signConfig
	fs := root.flagSet("sign")
	fs.StringVar(&cfg.name, "user", "", "the `name` of the user, or with --host of the host")
	fs.StringVar(&cfg.pubkey, "pubkey", "", "`file` holding the public key to sign (authorized_keys form)")
	fs.Var(&cfg.logins, "logins", "comma-separated `logins` to narrow a user certificate to")
	fs.Var(&cfg.ttl, "ttl", "certificate `lifetime` (e.g. 1h); default: the server's")
	fs.BoolVar(&cfg.host, "host", false, "issue a host certificate")
	fs.Var(&cfg.principals, "principals", "comma-separated extra host `names` or addresses, with --host")
	return &ffcli.Command{
		Name:       "sign",
		ShortUsage: "caadm sign --user NAME --pubkey FILE [--logins a,b] [--ttl 1h] [--host] [--principals a,b]",
		ShortHelp:  "Sign a public key by hand",
		LongHelp: strings.TrimSpace(`
Signs a public key without sign-in or join token: a user certificate for a
bot, or with --host a host certificate for a host that cannot join. The
certificate is printed alone on standard output, ready to save next to the
key. With --host, --user is the host name (the certificate's key ID and
first principal) and --principals adds more names.

Examples:
  caadm sign --user deploybot --pubkey bot.pub --logins deploy --ttl 24h > bot-cert.pub
  caadm sign --host --user web1.example.com --pubkey ssh_host_ed25519_key.pub \
      --principals web1,10.0.0.5 > ssh_host_ed25519_key-cert.pub`),
		FlagSet: fs,
		Exec: withArgs(fs, nil, func(ctx context.Context, _ []string) error {
			req, err := cfg.request(fs)
			if err != nil {
				return err
			}
			cert, err := root.admin().Sign(ctx, req)
			if err != nil {
				return err
			}
			if root.json {
				return printJSON(stdout, cert)
			}
			_, err = fmt.Fprintln(stdout, cert.Certificate)
			return err
		}),
	}
}

// request checks the flags, reads the key and builds the request.
func (c *signConfig) request(fs *flag.FlagSet) (api.AdminSignRequest, error) {
	switch {
	case c.name == "":
		return api.AdminSignRequest{}, cli.Usagef(fs, "--user is required")
	case c.pubkey == "":
		return api.AdminSignRequest{}, cli.Usagef(fs, "--pubkey is required")
	case c.host && len(c.logins) > 0:
		return api.AdminSignRequest{}, cli.Usagef(fs, "--logins is for user certificates; use --principals with --host")
	case !c.host && len(c.principals) > 0:
		return api.AdminSignRequest{}, cli.Usagef(fs, "--principals needs --host; use --logins for user certificates")
	}
	key, err := readPublicKey(c.pubkey)
	if err != nil {
		return api.AdminSignRequest{}, err
	}
	return api.AdminSignRequest{
		Host:       c.host,
		Name:       c.name,
		PublicKey:  key,
		Logins:     c.logins,
		Principals: c.principals,
		TTL:        c.ttl.api(),
	}, nil
}

// readPublicKey returns the key in file in authorized_keys form, without
// options or comment.
func readPublicKey(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("reading the public key: %w", err)
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return "", fmt.Errorf("%s does not hold an SSH public key: %w", file, err)
	}
	if _, ok := pk.(*ssh.Certificate); ok {
		return "", fmt.Errorf("%s holds a certificate; give the public key (the .pub file without -cert)", file)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk))), nil
}
