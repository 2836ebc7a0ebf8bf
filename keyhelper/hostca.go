package keyhelper

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// hostAuthorities are the host CA keys of a cluster's known_hosts file, as
// the ssh_config block makes ssh use them: "@cert-authority" lines whose
// host patterns name the host, and "@revoked" keys (sshd(8), "SSH_KNOWN_HOSTS
// FILE FORMAT"). Plain host key lines are ignored: a cluster host must
// present a certificate.
type hostAuthorities struct {
	lines   []caLine
	revoked [][]byte
}

// caLine is one "@cert-authority" line.
type caLine struct {
	patterns []string
	key      []byte // wire form
}

// readHostAuthorities reads the known_hosts file at path.
func readHostAuthorities(path string) (*hostAuthorities, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: reading the cluster's host CA: %w", err)
	}
	h := &hostAuthorities{}
	for rest := b; len(rest) > 0; {
		var (
			marker string
			hosts  []string
			key    ssh.PublicKey
		)
		marker, hosts, key, _, rest, err = ssh.ParseKnownHosts(rest)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("keyhelper: %s is damaged (%v); log in again", path, err)
		}
		switch marker {
		case "cert-authority":
			h.lines = append(h.lines, caLine{patterns: hosts, key: key.Marshal()})
		case "revoked":
			h.revoked = append(h.revoked, key.Marshal())
		}
	}
	if len(h.lines) == 0 {
		return nil, fmt.Errorf("keyhelper: %s holds no @cert-authority line; log in again", path)
	}
	return h, nil
}

// checker returns the CertChecker that accepts, for a connection to addr
// ("host:port"), only a host certificate valid at clock's time for host,
// signed by a host CA whose line names addr, with neither CA nor key
// revoked. It has no HostKeyFallback: a plain host key is refused.
func (h *hostAuthorities) checker(clock func() time.Time) *ssh.CertChecker {
	return &ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, addr string) bool {
			name := knownHostsName(addr)
			blob := auth.Marshal()
			if h.isRevoked(blob) {
				return false
			}
			for _, l := range h.lines {
				if bytes.Equal(l.key, blob) && matchHostPatterns(l.patterns, name) {
					return true
				}
			}
			return false
		},
		IsRevoked: func(cert *ssh.Certificate) bool {
			return h.isRevoked(cert.Marshal()) || h.isRevoked(cert.Key.Marshal())
		},
		Clock: clock,
	}
}

func (h *hostAuthorities) isRevoked(blob []byte) bool {
	for _, r := range h.revoked {
		if bytes.Equal(r, blob) {
			return true
		}
	}
	return false
}

// knownHostsName is how known_hosts names the host of addr: "host" on
// port 22, "[host]:port" on others.
func knownHostsName(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return strings.ToLower(addr)
	}
	host = strings.ToLower(host)
	if port == "22" {
		return host
	}
	return "[" + host + "]:" + port
}

// matchHostPatterns reports whether a known_hosts host list names name:
// some pattern matches it and no negated ("!") pattern does. Patterns use
// the wildcards * and ?; hashed names ("|1|...") never match.
func matchHostPatterns(patterns []string, name string) bool {
	matched := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		if !wildcardMatch(strings.ToLower(strings.TrimPrefix(p, "!")), name) {
			continue
		}
		if neg {
			return false
		}
		matched = true
	}
	return matched
}

// wildcardMatch matches s against pattern, where * stands for any run of
// characters and ? for any one.
func wildcardMatch(pattern, s string) bool {
	px, sx := 0, 0
	star, next := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pattern) && (pattern[px] == '?' || pattern[px] == s[sx]):
			px++
			sx++
		case px < len(pattern) && pattern[px] == '*':
			star, next = px, sx
			px++
		case star >= 0:
			next++
			px, sx = star+1, next
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}
