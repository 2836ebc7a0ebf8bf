package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsageAndBadFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "proxy")
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"--help"}, 0, "ssh -J alice@proxy.example.com:3023 root@web1"},
		{"no public address", []string{"--data-dir", dir}, 1, "--public-addr is required"},
		{"bad public address", []string{"--data-dir", dir, "--public-addr", "proxy"}, 1, `--public-addr "proxy" is not host:port`},
		{"first start without a token", []string{"--data-dir", dir, "--public-addr", "proxy:3023"}, 1, "the first start needs --server, --token"},
		{"bad recording failure mode", []string{"--data-dir", dir, "--public-addr", "proxy:3023", "--on-recording-failure", "ignore"}, 1, `"ignore" is not refuse or continue`},
		{"stray argument", []string{"extra"}, 2, "unexpected arguments"},
		{"unknown flag", []string{"--nope"}, 2, "flag provided but not defined"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(context.Background(), c.args, &stderr); code != c.code || !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("exit %d, want %d; stderr:\n%s\nwant %q", code, c.code, stderr.String(), c.want)
			}
		})
	}
}
