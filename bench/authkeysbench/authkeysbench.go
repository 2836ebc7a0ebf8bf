// Package authkeysbench measures what a node adds to every sshd login:
// the exec of teleport-authkeys answering AuthorizedPrincipalsCommand or
// AuthorizedKeysCommand from a warm policy cache, side by side with the
// stock OpenSSH paths (an exec that does nothing, and a command that
// prints a principals file, the stock AuthorizedPrincipalsCommand). The
// aim of the nodes issue is a median of 5 ms or less, exec included.
package authkeysbench

import (
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
	principals := filepath.Join(o.Dir, "principals")
	if err := os.WriteFile(principals, []byte("root\n"), 0o644); err != nil {
		return nil, err
	}
	certType, certB64, err := userCert(caSigner, "user=u5 proxy=p1 session=s1")
	if err != nil {
		return nil, err
	}
	keyID := "user=u5 proxy=p1 session=s1"
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"stock: exec /bin/true (fork+exec floor)", []string{"/bin/true"}, ""},
		{"stock: cat principals file (AuthorizedPrincipalsCommand)", []string{"/bin/cat", principals}, "root\n"},
		{"teleport-authkeys principals, 10 users", []string{o.Authkeys, "--data-dir", small, "principals", "root", keyID, "42"}, "root\n"},
		{fmt.Sprintf("teleport-authkeys principals, %d users", o.Users), []string{o.Authkeys, "--data-dir", large, "principals", "root", keyID, "42"}, "root\n"},
		{fmt.Sprintf("teleport-authkeys keys, %d users", o.Users), []string{o.Authkeys, "--data-dir", large, "keys", "root", certType, certB64}, "cert-authority"},
	}
	var rows []Row
	for _, c := range cases {
		rows = append(rows, measure(c.name, c.args, c.want, o.Runs))
	}
	return rows, nil
}

func measure(name string, args []string, want string, runs int) Row {
	r := Row{Name: name, Runs: runs}
	times := make([]time.Duration, 0, runs)
	for i := 0; i < runs+10; i++ {
		start := time.Now()
		out, err := exec.Command(args[0], args[1:]...).Output()
		d := time.Since(start)
		if err != nil || !strings.HasPrefix(string(out), want) {
			r.Err = fmt.Errorf("%s: %v: %q", name, err, out)
			return r
		}
		if i >= 10 { // the first runs warm the page cache
			times = append(times, d)
		}
	}
	slices.Sort(times)
	r.P50, r.P99, r.Max = times[len(times)/2], times[len(times)*99/100], times[len(times)-1]
	return r
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
