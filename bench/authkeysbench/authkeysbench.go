// Package authkeysbench measures what a node adds to every sshd login:
// the exec of teleport-authkeys answering AuthorizedPrincipalsCommand or
// AuthorizedKeysCommand from a warm policy cache, side by side with the
// stock OpenSSH paths (an exec that does nothing, and a command that
// prints a principals file, the stock AuthorizedPrincipalsCommand). The
// aim of the nodes issue is a median of 5 ms or less, exec included.
// The large cache is measured as teleport-node writes it (format v2,
// found by binary search) and in format v1 (every line checked).
package authkeysbench

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/authkeys"
	"github.com/opensshca/suite/internal/nodedir"
)

// Row is one measured command.
type Row struct {
	Name          string
	Runs          int
	P50, P99, Max time.Duration
	Err           error
}

// Options of a run.
type Options struct {
	// Authkeys is the teleport-authkeys binary.
	Authkeys string
	// AuthkeysCgo, when set, is the same program linked with cgo (go
	// build's default), measured in one more row: the net package makes
	// that build load the C library at every start.
	AuthkeysCgo string
	// Runs per row (default 300).
	Runs int
	// Users in the large cache (default 10000).
	Users int
	Dir   string // scratch directory
}

// Run measures every row.
func Run(o Options) ([]Row, error) {
	if o.Runs == 0 {
		o.Runs = 300
	}
	if o.Users == 0 {
		o.Users = 10000
	}
	_, caPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	caSigner, err := ssh.NewSignerFromKey(caPriv)
	if err != nil {
		return nil, err
	}
	small, err := writeCache(filepath.Join(o.Dir, "small"), caSigner.PublicKey(), 10)
	if err != nil {
		return nil, err
	}
	large, err := writeCache(filepath.Join(o.Dir, "large"), caSigner.PublicKey(), o.Users)
	if err != nil {
		return nil, err
	}
	largeV1, err := writeCache(filepath.Join(o.Dir, "large-v1"), caSigner.PublicKey(), o.Users)
	if err == nil {
		err = toV1(filepath.Join(largeV1, nodedir.Cache))
	}
	if err != nil {
		return nil, err
	}
	principals := filepath.Join(o.Dir, "principals")
	if err := os.WriteFile(principals, []byte("root\n"), 0o644); err != nil {
		return nil, err
	}
	certType, certB64, err := userCert(caSigner, "user=u5 proxy=p1 session=s1")
	if err != nil {
		return nil, err
	}
	keyID := "user=u5 proxy=p1 session=s1"
	type row struct {
		name string
		args []string
		want string
	}
	cases := []row{
		{"stock: exec /bin/true (fork+exec floor)", []string{"/bin/true"}, ""},
		{"stock: cat principals file (AuthorizedPrincipalsCommand)", []string{"/bin/cat", principals}, "root\n"},
		{"teleport-authkeys principals, 10 users", []string{o.Authkeys, "--data-dir", small, "principals", "root", keyID, "42"}, "root\n"},
		{fmt.Sprintf("teleport-authkeys principals, %d users", o.Users), []string{o.Authkeys, "--data-dir", large, "principals", "root", keyID, "42"}, "root\n"},
		{fmt.Sprintf("teleport-authkeys keys, %d users", o.Users), []string{o.Authkeys, "--data-dir", large, "keys", "root", certType, certB64}, "cert-authority"},
		{fmt.Sprintf("teleport-authkeys principals, %d users, v1 cache (older teleport-node)", o.Users), []string{o.Authkeys, "--data-dir", largeV1, "principals", "root", keyID, "42"}, "root\n"},
	}
	if o.AuthkeysCgo != "" {
		cases = append(cases, row{fmt.Sprintf("teleport-authkeys principals, %d users, cgo build (not shipped)", o.Users), []string{o.AuthkeysCgo, "--data-dir", large, "principals", "root", keyID, "42"}, "root\n"})
	}
	// The rows take turns, one run each, so that a machine whose load
	// changes during the run slows every row alike.
	rows := make([]Row, len(cases))
	times := make([][]time.Duration, len(cases))
	for i := range o.Runs + 10 {
		for j, c := range cases {
			if rows[j].Err != nil {
				continue
			}
			d, err := measure(c.args, c.want)
			if err != nil {
				rows[j].Err = fmt.Errorf("%s: %w", c.name, err)
			}
			if i >= 10 { // the first runs warm the page cache
				times[j] = append(times[j], d)
			}
		}
	}
	for j, c := range cases {
		rows[j].Name, rows[j].Runs = c.name, o.Runs
		if t := times[j]; rows[j].Err == nil {
			slices.Sort(t)
			rows[j].P50, rows[j].P99, rows[j].Max = t[len(t)/2], t[len(t)*99/100], t[len(t)-1]
		}
	}
	return rows, nil
}

// measure runs a command once and returns its wall time from fork to
// exit; it fails unless the command succeeds and its output starts with
// want.
func measure(args []string, want string) (time.Duration, error) {
	start := time.Now()
	out, err := exec.Command(args[0], args[1:]...).Output()
	d := time.Since(start)
	if err != nil || !strings.HasPrefix(string(out), want) {
		return 0, fmt.Errorf("%v: %q", err, out)
	}
	return d, nil
}

// writeCache writes a node data dir whose cache allows users u0..u(n-1)
// to log in as root, confirmed now.
func writeCache(dir string, ca ssh.PublicKey, n int) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, nodedir.CacheDir), 0o755); err != nil {
		return "", err
	}
	c := &authkeys.Cache{Node: "bench", Confirmed: time.Now(), Generated: time.Now(), Hash: "00",
		Mode: authkeys.ModeProxy, TrustedCA: ca, Users: make(map[string]authkeys.Access, n)}
	for i := range n {
		c.Users["u"+strconv.Itoa(i)] = authkeys.Access{Logins: []string{"root", "deploy"}}
	}
	b, err := c.Marshal()
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, nodedir.Cache), b, 0o644)
}

// toV1 rewrites a cache file in format v1, as teleport-node wrote it
// before v2: the same lines under the v1 first line, each checked on
// every login.
func toV1(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	_, body, _ := bytes.Cut(b, []byte("\n"))
	return os.WriteFile(path, append([]byte(authkeys.Header+"\n"), body...), 0o644)
}

func userCert(ca ssh.Signer, keyID string) (string, string, error) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	sp, _ := ssh.NewPublicKey(pub)
	c := &ssh.Certificate{Key: sp, Serial: 42, CertType: ssh.UserCert, KeyId: keyID, ValidPrincipals: []string{"root"},
		ValidAfter: uint64(time.Now().Add(-time.Minute).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		return "", "", err
	}
	return c.Type(), base64.StdEncoding.EncodeToString(c.Marshal()), nil
}

// Write prints the rows as a Markdown table.
func Write(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "| command | runs | p50 | p99 | max |\n|---|---:|---:|---:|---:|\n")
	for _, r := range rows {
		if r.Err != nil {
			fmt.Fprintf(w, "| %s | failed: %v | | | |\n", r.Name, r.Err)
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s |\n", r.Name, r.Runs, ms(r.P50), ms(r.P99), ms(r.Max))
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
