package keyhelper

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// DefaultPort is the CA's HTTPS port (DESIGN.md section 6), assumed when a
// server address names none.
const DefaultPort = "3080"

// Server identifies a cluster by the HTTPS address of its CA.
type Server struct {
	// Host is a lower-case DNS name or an IP address (IPv6 without
	// brackets).
	Host string
	// Port is the decimal TCP port.
	Port string
}

// hostNameRE is what a DNS host name may hold here. Anything else would
// end up in file names and ssh_config lines.
var hostNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$`)

// ParseServer reads a CA address: "https://HOST[:PORT]", or "HOST[:PORT]"
// with https implied. A missing port means [DefaultPort]. Paths, queries,
// user info and other schemes are refused.
func ParseServer(s string) (Server, error) {
	raw := strings.TrimSpace(s)
	if raw == "" {
		return Server{}, fmt.Errorf("keyhelper: no CA address: pass --server https://HOST:%s", DefaultPort)
	}
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Server{}, fmt.Errorf("keyhelper: CA address %q is not a URL such as https://ca.example.com:%s", s, DefaultPort)
	}
	if u.Scheme != "https" {
		return Server{}, fmt.Errorf("keyhelper: CA address %q must start with https://", s)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return Server{}, fmt.Errorf("keyhelper: CA address %q must look like https://HOST[:PORT], with nothing after the port", s)
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = DefaultPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return Server{}, fmt.Errorf("keyhelper: CA address %q has a bad port %q", s, port)
	}
	if err := checkHost(host); err != nil {
		return Server{}, fmt.Errorf("keyhelper: CA address %q: %w", s, err)
	}
	return Server{Host: host, Port: port}, nil
}

// checkHost accepts a DNS name or an IP address without a zone.
func checkHost(host string) error {
	if host == "" {
		return fmt.Errorf("no host name")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return fmt.Errorf("host %q: IPv6 zones are not supported", host)
		}
		return nil
	}
	if len(host) > 253 || !hostNameRE.MatchString(host) {
		return fmt.Errorf("host %q is not a host name or IP address", host)
	}
	return nil
}

// Addr returns "host:port" ("[::1]:3080" for IPv6).
func (s Server) Addr() string { return net.JoinHostPort(s.Host, s.Port) }

// URL returns the base URL of the CA's HTTPS API.
func (s Server) URL() string { return "https://" + s.Addr() }

// String returns Addr.
func (s Server) String() string { return s.Addr() }

// dirName is the name of the cluster's state directory: "host_port", with
// the colons of an IPv6 address turned into "-". Host names cannot hold
// "_", so the name is unambiguous.
func (s Server) dirName() string {
	return strings.ReplaceAll(s.Host, ":", "-") + "_" + s.Port
}

// userNameRE is what a cluster user name may hold; it repeats
// ca.ValidateUserName so that the keyhelper does not link the CA, and
// keeps names that would split an ssh_config line or a comment out.
var userNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,63}$`)

// CheckUser checks a cluster user name.
func CheckUser(user string) error {
	if user == "" {
		return errors.New("keyhelper: no user: pass --user NAME")
	}
	if !userNameRE.MatchString(user) {
		return fmt.Errorf("keyhelper: user name %q: use lower-case letters, digits, '_', '.' and '-', starting with a letter or '_'", user)
	}
	return nil
}
