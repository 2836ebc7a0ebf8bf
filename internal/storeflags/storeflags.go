// Package storeflags holds the flags that select the authority's store,
// the embedded bbolt file in the data dir or an etcd cluster, shared by
// teleport-ca (which runs on it) and caadm restore (which fills it).
package storeflags

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/opensshca/suite/ca"
	"github.com/opensshca/suite/ca/store"
)

// Defaults of the etcd flags.
const (
	defaultEtcdPrefix  = "/teleport-ca/"
	defaultEtcdTimeout = 5 * time.Second
)

// Options select the store: the embedded bbolt file in the data dir,
// or an etcd cluster that several CA replicas share.
type Options struct {
	backend      string
	endpoints    string
	prefix       string
	caFile       string
	certFile     string
	keyFile      string
	user         string
	passwordFile string
	timeout      time.Duration
	// sealKeyFile is --key-file: the key that seals the CA keys in etcd.
	sealKeyFile string
}

// Flags registers --storage, the --etcd-* flags and --key-file.
func (s *Options) Flags(fs *flag.FlagSet) {
	fs.StringVar(&s.backend, "storage", "bolt", `where the CA keeps its state: "bolt" (a file in --data-dir) or "etcd" (--etcd-* flags)`)
	fs.StringVar(&s.endpoints, "etcd-endpoints", "", "comma-separated etcd client URLs, such as https://etcd1:2379,https://etcd2:2379")
	fs.StringVar(&s.prefix, "etcd-prefix", defaultEtcdPrefix, "etcd key prefix of this CA cluster's state (ends in /)")
	fs.StringVar(&s.caFile, "etcd-ca", "", "PEM file of the CA that signs the etcd servers' certificates (default: the system's roots, with https:// endpoints)")
	fs.StringVar(&s.certFile, "etcd-cert", "", "client certificate (PEM) for etcd's --client-cert-auth")
	fs.StringVar(&s.keyFile, "etcd-key", "", "private key for --etcd-cert")
	fs.StringVar(&s.user, "etcd-user", "", "etcd user name, when etcd has authentication enabled (needs readwrite on --etcd-prefix)")
	fs.StringVar(&s.passwordFile, "etcd-password-file", "", "file holding the password of --etcd-user (one line)")
	fs.DurationVar(&s.timeout, "etcd-timeout", defaultEtcdTimeout, "how long to wait for etcd to connect and to answer each request")
	fs.StringVar(&s.sealKeyFile, "key-file", "", "with --storage etcd (required): file of the key that encrypts the CA keys kept in etcd; every replica needs a copy (make one with: teleport-ca gen-key-file PATH)")
}

// Open returns the store the options select, or nil for bbolt, which
// ca.New opens in the data dir itself, and with etcd the key that seals
// the CA keys kept there (read before etcd is contacted, so a missing or
// unsafe key file stops the start without a request to etcd).
func (s *Options) Open(ctx context.Context, log *slog.Logger) (store.Store, []byte, error) {
	switch s.backend {
	case "bolt":
		if set := s.etcdFlagsSet(); len(set) > 0 {
			return nil, nil, fmt.Errorf("%s set, but --storage is bolt: set --storage etcd to keep the state in etcd", strings.Join(set, ", "))
		}
		if s.sealKeyFile != "" {
			return nil, nil, errors.New("--key-file set, but --storage is bolt: with bolt the CA keys are files in --data-dir; --key-file seals them in etcd")
		}
		return nil, nil, nil
	case "etcd":
	default:
		return nil, nil, fmt.Errorf(`--storage %q: want "bolt" or "etcd"`, s.backend)
	}
	opts, err := s.etcdOptions(log)
	if err != nil {
		return nil, nil, err
	}
	if s.sealKeyFile == "" {
		return nil, nil, errors.New("--storage etcd needs --key-file: the CA keys are kept in etcd encrypted with the key in that file, and every replica needs a copy of it (make one with: teleport-ca gen-key-file PATH)")
	}
	kek, err := ca.ReadKeyFile(s.sealKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--key-file: %w", err)
	}
	st, err := store.OpenEtcd(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	log.Info("state in etcd", "endpoints", opts.Endpoints, "prefix", opts.Prefix, "user", opts.Username, "key_file", s.sealKeyFile)
	return st, kek, nil
}

// etcdFlagsSet names the etcd flags that differ from their defaults.
func (s *Options) etcdFlagsSet() []string {
	var set []string
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"--etcd-endpoints", s.endpoints != ""},
		{"--etcd-prefix", s.prefix != defaultEtcdPrefix},
		{"--etcd-ca", s.caFile != ""},
		{"--etcd-cert", s.certFile != ""},
		{"--etcd-key", s.keyFile != ""},
		{"--etcd-user", s.user != ""},
		{"--etcd-password-file", s.passwordFile != ""},
		{"--etcd-timeout", s.timeout != defaultEtcdTimeout},
	} {
		if f.set {
			set = append(set, f.name)
		}
	}
	return set
}

func (s *Options) etcdOptions(log *slog.Logger) (store.EtcdOptions, error) {
	opts := store.EtcdOptions{
		Endpoints: splitComma(s.endpoints),
		Prefix:    s.prefix,
		CAFile:    s.caFile, CertFile: s.certFile, KeyFile: s.keyFile,
		Username:    s.user,
		DialTimeout: s.timeout, RequestTimeout: s.timeout,
	}
	switch {
	case len(opts.Endpoints) == 0:
		return opts, errors.New("--storage etcd needs --etcd-endpoints")
	case s.timeout <= 0:
		return opts, fmt.Errorf("--etcd-timeout %v must be positive", s.timeout)
	case (s.user == "") != (s.passwordFile == ""):
		return opts, errors.New("--etcd-user and --etcd-password-file go together")
	case (s.certFile == "") != (s.keyFile == ""):
		return opts, errors.New("--etcd-cert and --etcd-key go together")
	}
	if s.passwordFile == "" {
		return opts, nil
	}
	b, err := os.ReadFile(s.passwordFile)
	if err != nil {
		return opts, fmt.Errorf("--etcd-password-file: %w", err)
	}
	if fi, err := os.Stat(s.passwordFile); err == nil && fi.Mode().Perm()&0o007 != 0 {
		log.Warn("the etcd password file is readable by other users; make it mode 0600 or 0640", "file", s.passwordFile)
	}
	opts.Password = strings.TrimRight(string(b), "\r\n")
	if opts.Password == "" {
		return opts, fmt.Errorf("--etcd-password-file %s is empty", s.passwordFile)
	}
	return opts, nil
}

// Backend is "bolt" or "etcd".
func (s *Options) Backend() string { return s.backend }

// Prefix is the etcd key prefix.
func (s *Options) Prefix() string { return s.prefix }

// KeyFile is --key-file.
func (s *Options) KeyFile() string { return s.sealKeyFile }

func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
