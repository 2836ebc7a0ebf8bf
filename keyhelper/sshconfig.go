package keyhelper

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// HostKeyAlgorithms are the host certificate algorithms the ssh_config
// block allows, best first. All are known to OpenSSH 7.8 and newer (the
// rsa-sha2-*-cert-v01 names arrived in 7.8); ssh-rsa-cert-v01 (SHA-1) is
// left out, as OpenSSH 8.2+ does. Plain key algorithms are left out on
// purpose: a cluster host must present a certificate from the host CA.
var HostKeyAlgorithms = []string{
	"ssh-ed25519-cert-v01@openssh.com",
	"ecdsa-sha2-nistp256-cert-v01@openssh.com",
	"ecdsa-sha2-nistp384-cert-v01@openssh.com",
	"ecdsa-sha2-nistp521-cert-v01@openssh.com",
	"rsa-sha2-512-cert-v01@openssh.com",
	"rsa-sha2-256-cert-v01@openssh.com",
}

// SSHConfig describes the ssh_config block for one cluster.
type SSHConfig struct {
	// Server is the cluster's CA, named in comments.
	Server Server
	// User is the cluster user, the login on the proxy.
	User string
	// ProxyAddr is the proxy's "host:port"; empty means the cluster has
	// no proxy yet, and its hosts are reached directly.
	ProxyAddr string
	// Hosts are the ssh_config patterns of the cluster's hosts; nil means
	// DefaultHosts.
	Hosts []string
	// KnownHostsFile, CertFile and IdentityFile are absolute paths.
	KnownHostsFile, CertFile, IdentityFile string
	// IncludeGlob, if set, is suggested for an Include line.
	IncludeGlob string
}

// hostPatternRE is one ssh_config Host pattern: a host name or address
// with * and ? wildcards, optionally negated.
var hostPatternRE = regexp.MustCompile(`^!?[A-Za-z0-9.*?_:-]+$`)

// ParseHosts splits a --hosts value (patterns separated by commas or
// spaces) and checks each pattern.
func ParseHosts(s string) ([]string, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if len(fields) == 0 {
		return nil, errors.New("keyhelper: --hosts is empty; give ssh_config host patterns such as '*.prod.example.com'")
	}
	positive := false
	for _, f := range fields {
		if !hostPatternRE.MatchString(f) || f == "!" {
			return nil, fmt.Errorf("keyhelper: --hosts pattern %q: use host names with * and ? wildcards, each optionally negated by a leading \"!\"", f)
		}
		positive = positive || !strings.HasPrefix(f, "!")
	}
	if !positive {
		return nil, errors.New("keyhelper: --hosts has only negated patterns, which match no host")
	}
	return fields, nil
}

// DefaultHosts returns the host patterns used without --hosts: every name
// in the domain of the proxy (or, without a proxy, of the CA), "*." and
// the host's name without its first label, when that leaves at least two
// labels ("bastion.prod.example.com" gives "*.prod.example.com"). An IP
// address or a shorter name gives none: a pattern such as "*.com" would
// send unrelated hosts through the cluster.
func DefaultHosts(proxyAddr string, s Server) []string {
	host := s.Host
	if proxyAddr != "" {
		h, _, err := net.SplitHostPort(proxyAddr)
		if err != nil {
			return nil
		}
		host = h
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	labels := strings.Split(strings.TrimSuffix(strings.ToLower(host), "."), ".")
	if len(labels) < 3 {
		return nil
	}
	return []string{"*." + strings.Join(labels[1:], ".")}
}

// CheckProxyAddr checks a proxy address the CA reported: "host:port".
func CheckProxyAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("keyhelper: proxy address %q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("keyhelper: proxy address %q has a bad port", addr)
	}
	if err := checkHost(strings.ToLower(host)); err != nil {
		return fmt.Errorf("keyhelper: proxy address %q: %w", addr, err)
	}
	return nil
}

// Generate returns the block.
func (c SSHConfig) Generate() (string, error) {
	hosts := c.Hosts
	if hosts == nil {
		hosts = DefaultHosts(c.ProxyAddr, c.Server)
	}
	if err := c.check(hosts); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# teleport-keyhelper: ssh_config for cluster %s, user %s.\n", c.Server.Addr(), c.User)
	if c.IncludeGlob != "" {
		fmt.Fprintf(&b, "# Paste it into ~/.ssh/config, or put this line at the top of that file:\n#   Include %s\n", quotePath(c.IncludeGlob))
	} else {
		b.WriteString("# Paste it into ~/.ssh/config.\n")
	}
	proxyHost, proxyPort := "", ""
	if c.ProxyAddr != "" {
		proxyHost, proxyPort, _ = net.SplitHostPort(c.ProxyAddr)
		proxyHost = strings.ToLower(proxyHost)
		writeProxyComment(&b, proxyHost, proxyPort, hosts != nil)
		fmt.Fprintf(&b, "Host %s\n", proxyHost)
		fmt.Fprintf(&b, "    Port %s\n", proxyPort)
		fmt.Fprintf(&b, "    User %s\n", c.User)
		c.writeTrust(&b)
	}
	b.WriteString("\n")
	if hosts == nil {
		fmt.Fprintf(&b, "# No host patterns for the cluster's hosts: %s gives no\n"+
			"# domain to default to. Log in again with --hosts and the patterns of\n"+
			"# the cluster's hosts, such as --hosts '*.prod.example.com'.\n", c.defaultSource())
		return b.String(), nil
	}
	fmt.Fprintf(&b, "# The cluster's hosts: %s\n# (%s).\n", strings.Join(hosts, " "), c.hostsSource())
	if c.ProxyAddr == "" {
		b.WriteString("# The cluster has no proxy registered yet, so they are reached directly;\n" +
			"# log in again once it has one.\n")
	} else {
		b.WriteString("# They are reached through the proxy.\n")
	}
	b.WriteString("# Their host keys are trusted only through the cluster's host CA (the\n" +
		"# @cert-authority line in UserKnownHostsFile): HostKeyAlgorithms lists only\n" +
		"# certificate types, so a host without a certificate from that CA is\n" +
		"# refused, never trusted on first use.\n")
	pattern := strings.Join(hosts, " ")
	if proxyHost != "" {
		pattern += " !" + proxyHost
	}
	fmt.Fprintf(&b, "Host %s\n", pattern)
	if c.ProxyAddr != "" {
		fmt.Fprintf(&b, "    ProxyJump %s@%s\n", c.User, net.JoinHostPort(proxyHost, proxyPort))
	}
	c.writeTrust(&b)
	return b.String(), nil
}

// writeProxyComment explains the proxy's block and the two ways through
// the proxy: ProxyJump with the hosts' block, when there is one, and the
// single hop, "LOGIN@NODE" as the user name on the proxy, which needs no
// block but the proxy's (a user name on the command line wins over the
// block's User, and ssh, scp and sftp split user@host at the last "@").
func writeProxyComment(b *strings.Builder, host, port string, hosts bool) {
	// scp and sftp take an IPv6 address in brackets; ssh takes it bare.
	bracketed := host
	if strings.Contains(host, ":") {
		bracketed = "[" + host + "]"
	}
	b.WriteString("\n# The cluster's proxy. You log in to it as your cluster user; it presents\n" +
		"# a host certificate from the cluster's host CA. To list the nodes you may\n" +
		"# log in to, and who is logged in to them:\n")
	fmt.Fprintf(b, "#   ssh %s\n", host)
	b.WriteString("#   teleport-keyhelper sessions\n#\n" +
		"# One hop: this block alone reaches a node when the user name holds the\n" +
		"# login and the node's name (ssh, scp and sftp split user@host at the last\n" +
		"# \"@\", and a user name on the command line wins over User below):\n")
	fmt.Fprintf(b, "#   ssh -p %s LOGIN@NODE@%s\n", port, host)
	fmt.Fprintf(b, "#   scp -P %s FILE LOGIN@NODE@%s:PATH\n", port, bracketed)
	fmt.Fprintf(b, "#   sftp -P %s LOGIN@NODE@%s\n", port, bracketed)
	b.WriteString("# The block supplies the port (so -p and -P may be left out), the\n" +
		"# certificate and the host CA. NODE is the node's name as the proxy lists\n" +
		"# it, whether or not it matches the host patterns of the cluster.\n")
	if hosts {
		b.WriteString("# The block of the cluster's hosts below reaches them through the proxy\n" +
			"# with ProxyJump instead (ssh LOGIN@HOST), as ssh -J does.\n")
	}
}

// writeTrust writes the options every block of the cluster shares.
func (c SSHConfig) writeTrust(b *strings.Builder) {
	fmt.Fprintf(b, "    UserKnownHostsFile %s\n", quotePath(c.KnownHostsFile))
	b.WriteString("    StrictHostKeyChecking yes\n")
	fmt.Fprintf(b, "    HostKeyAlgorithms %s\n", strings.Join(HostKeyAlgorithms, ","))
	fmt.Fprintf(b, "    CertificateFile %s\n", quotePath(c.CertFile))
	fmt.Fprintf(b, "    IdentityFile %s\n", quotePath(c.IdentityFile))
	b.WriteString("    IdentitiesOnly yes\n")
}

func (c SSHConfig) hostsSource() string {
	if c.Hosts != nil {
		return "from --hosts"
	}
	return "the default: the domain of " + c.defaultSource() + "; choose others with --hosts"
}

func (c SSHConfig) defaultSource() string {
	if c.ProxyAddr != "" {
		return "the proxy's name"
	}
	return "the CA's name"
}

// check refuses values that would not stay one ssh_config argument.
func (c SSHConfig) check(hosts []string) error {
	if !userNameRE.MatchString(c.User) {
		return fmt.Errorf("keyhelper: user name %q cannot go into ssh_config", c.User)
	}
	if c.ProxyAddr != "" {
		if err := CheckProxyAddr(c.ProxyAddr); err != nil {
			return err
		}
	}
	for _, h := range hosts {
		if !hostPatternRE.MatchString(h) {
			return fmt.Errorf("keyhelper: host pattern %q cannot go into ssh_config", h)
		}
	}
	for _, p := range []string{c.KnownHostsFile, c.CertFile, c.IdentityFile, c.IncludeGlob} {
		if err := checkConfigPath(p); err != nil {
			return err
		}
	}
	return nil
}

// checkConfigPath refuses paths that ssh_config would read as something
// else: tokens (%), environment references ($), quotes and escapes.
func checkConfigPath(p string) error {
	if strings.ContainsAny(p, "%$\"'\\") || strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("keyhelper: path %q holds characters ssh_config would expand (%%, $, quotes, backslashes or control characters); choose a state directory without them with --home", p)
	}
	return nil
}

// safePathRE matches paths that need no quotes in ssh_config.
var safePathRE = regexp.MustCompile(`^[A-Za-z0-9/._+,@=*~-]*$`)

// quotePath quotes a path that holds spaces or other characters ssh_config
// would split on.
func quotePath(p string) string {
	if safePathRE.MatchString(p) {
		return p
	}
	return `"` + p + `"`
}
