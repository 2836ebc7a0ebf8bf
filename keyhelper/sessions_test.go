package keyhelper

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/testbin"
)

// testSigner makes an ed25519 key and its signer.
func testSigner(t *testing.T) (ed25519.PrivateKey, ssh.Signer) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, s
}

// testCert signs a certificate for key with ca.
func testCert(t *testing.T, ca ssh.Signer, key ssh.PublicKey, typ uint32, id string, principals []string, from, to time.Time) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{
		Key: key, Serial: 7, CertType: typ, KeyId: id, ValidPrincipals: principals,
		ValidAfter: uint64(from.Unix()), ValidBefore: uint64(to.Unix()),
	}
	if typ == ssh.UserCert {
		c.Extensions = map[string]string{"permit-pty": ""}
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

// proxyAnswer is what the fake proxy's command writes and exits with.
type proxyAnswer struct {
	stdout, stderr string
	status         uint32
}

// fakeProxy is an x/crypto SSH server on loopback standing in for
// teleport-proxy: it presents hostKey, accepts user certificates from
// userCA and answers exec requests with answer.
type fakeProxy struct {
	addr     string
	accepted atomic.Int32 // TCP connections

	mu       sync.Mutex
	users    []string // certificate users that logged in
	commands []string
}

func startFakeProxy(t *testing.T, hostKey ssh.Signer, userCA ssh.PublicKey, answer func(cmd string) proxyAnswer) *fakeProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	fp := &fakeProxy{addr: l.Addr().String()}
	checker := &ssh.CertChecker{IsUserAuthority: func(auth ssh.PublicKey) bool {
		return bytes.Equal(auth.Marshal(), userCA.Marshal())
	}}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		perms, err := checker.Authenticate(conn, key)
		if err == nil {
			fp.mu.Lock()
			fp.users = append(fp.users, key.(*ssh.Certificate).KeyId)
			fp.mu.Unlock()
		}
		return perms, err
	}}
	cfg.AddHostKey(hostKey)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			fp.accepted.Add(1)
			go fp.serve(conn, cfg, answer)
		}
	}()
	return fp
}

func (fp *fakeProxy) serve(conn net.Conn, cfg *ssh.ServerConfig, answer func(string) proxyAnswer) {
	defer conn.Close()
	sconn, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	defer sconn.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for r := range creqs {
				if r.Type != "exec" {
					_ = r.Reply(false, nil)
					continue
				}
				var cmd struct{ Command string }
				_ = ssh.Unmarshal(r.Payload, &cmd)
				_ = r.Reply(true, nil)
				fp.mu.Lock()
				fp.commands = append(fp.commands, cmd.Command)
				fp.mu.Unlock()
				a := answer(cmd.Command)
				_, _ = ch.Write([]byte(a.stdout))
				_, _ = ch.Stderr().Write([]byte(a.stderr))
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{a.status}))
				return
			}
		}()
	}
}

func (fp *fakeProxy) seen() (users, commands []string) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return append([]string(nil), fp.users...), append([]string(nil), fp.commands...)
}

// proxyTest is a cluster with a user CA and a host CA, and alice's state
// as a login leaves it: key, certificate, known_hosts, profile.
type proxyTest struct {
	userCA, hostCA ssh.Signer
	home           *Home
	server         Server
	profile        *Profile
	key            ed25519.PrivateKey
	cert           *ssh.Certificate
	now            time.Time
}

func newProxyTest(t *testing.T) *proxyTest {
	t.Helper()
	pt := &proxyTest{home: newHome(t), server: Server{Host: "ca.example.com", Port: "3080"}, now: time.Now()}
	_, pt.userCA = testSigner(t)
	_, pt.hostCA = testSigner(t)
	var key ssh.Signer
	pt.key, key = testSigner(t)
	pt.cert = testCert(t, pt.userCA, key.PublicKey(), ssh.UserCert, "alice", []string{"alice", "root"}, pt.now.Add(-time.Minute), pt.now.Add(time.Hour))
	p, err := pt.home.newProfile(pt.server)
	if err != nil {
		t.Fatal(err)
	}
	p.User = "alice"
	p.KeyFile, p.CertFile = filepath.Join(p.dir, keyFile), filepath.Join(p.dir, certFile)
	pt.profile = p
	blk, err := ssh.MarshalPrivateKey(pt.key, "")
	if err != nil {
		t.Fatal(err)
	}
	kh, err := knownHosts(string(ssh.MarshalAuthorizedKey(pt.hostCA.PublicKey())), pt.server)
	if err != nil {
		t.Fatal(err)
	}
	for path, data := range map[string][]byte{
		p.KeyFile:          pem.EncodeToMemory(blk),
		p.CertFile:         ssh.MarshalAuthorizedKey(pt.cert),
		p.KnownHostsFile(): []byte(kh),
	} {
		if err := writeFile(path, data); err != nil {
			t.Fatal(err)
		}
	}
	return pt
}

// save writes the profile with the proxy at addr.
func (pt *proxyTest) save(t *testing.T, addr string) {
	t.Helper()
	pt.profile.ProxyAddr = addr
	if err := pt.profile.Save(); err != nil {
		t.Fatal(err)
	}
}

// hostKey returns a host key with a certificate from ca for principals.
func (pt *proxyTest) hostKey(t *testing.T, ca ssh.Signer, principals ...string) ssh.Signer {
	t.Helper()
	_, host := testSigner(t)
	cert := testCert(t, ca, host.PublicKey(), ssh.HostCert, "proxy1", principals, pt.now.Add(-time.Minute), pt.now.Add(24*time.Hour))
	s, err := ssh.NewCertSigner(cert, host)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (pt *proxyTest) list(ctx context.Context) ([]api.Session, error) {
	return ListSessions(ctx, SessionsConfig{Home: pt.home, Server: pt.server, Timeout: 10 * time.Second})
}

// testSessions is what the fake proxy lists: out of order, and one
// running a command that would recolour the terminal.
var testSessions = []api.Session{
	{ID: "6f1c2b7e", Proxy: "proxy2", User: "bob", Login: "postgres", Node: "node2",
		ClientAddr: "198.51.100.9:40022", Started: time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC), Recorded: true,
		Channels: []string{"exec: printf '\x1b[31mred\x1b[0m'"}},
	{ID: "0a9d44c1", Proxy: "proxy1", User: "carol", Login: "root", Node: "node1",
		ClientAddr: "203.0.113.7:51234", Started: time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC), Recorded: true,
		Channels: []string{"shell", "direct-tcpip 127.0.0.1:5432"}},
	{ID: "93b0e5aa", Proxy: "proxy1", User: "alice", Login: "root", Node: "node1",
		Started: time.Date(2031, 5, 6, 6, 0, 0, 0, time.UTC), Recorded: true},
}

func sessionsJSON(t *testing.T) string {
	t.Helper()
	b, err := json.MarshalIndent(testSessions, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

// sessions --json through a proxy with a host certificate from the
// cluster's host CA, as the cluster user: the sessions come back sorted
// by node and start, and print as a table safe for a terminal and as JSON.
func TestListSessions(t *testing.T) {
	t.Parallel()
	pt := newProxyTest(t)
	answer := sessionsJSON(t)
	fp := startFakeProxy(t, pt.hostKey(t, pt.hostCA, "127.0.0.1"), pt.userCA.PublicKey(), func(string) proxyAnswer {
		return proxyAnswer{stdout: answer}
	})
	pt.save(t, fp.addr)
	list, err := pt.list(context.Background())
	if err != nil {
		t.Fatalf("ListSessions: %v (%s)", err, Describe(err))
	}
	want := []api.Session{testSessions[2], testSessions[1], testSessions[0]}
	if !reflect.DeepEqual(list, want) {
		t.Errorf("ListSessions = %+v\nwant %+v", list, want)
	}
	users, commands := fp.seen()
	if !reflect.DeepEqual(users, []string{"alice"}) || !reflect.DeepEqual(commands, []string{SessionsCommand}) {
		t.Errorf("the proxy saw users %q and commands %q; want alice and %q", users, commands, SessionsCommand)
	}

	var table strings.Builder
	if err := WriteSessionsTable(&table, list, time.UTC); err != nil {
		t.Fatal(err)
	}
	golden(t, "sessions_table.golden", table.String())
	if strings.ContainsRune(table.String(), 0x1b) {
		t.Error("the table passes an escape character through to the terminal")
	}

	var js bytes.Buffer
	if err := WriteSessionsJSON(&js, list); err != nil {
		t.Fatal(err)
	}
	var back []api.Session
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("WriteSessionsJSON does not read back (%v):\n%s", err, js.String())
	}

	var empty strings.Builder
	_ = WriteSessionsJSON(&empty, nil)
	if empty.String() != "[]\n" {
		t.Errorf("WriteSessionsJSON(nil) = %q, want []", empty.String())
	}
	empty.Reset()
	_ = WriteSessionsTable(&empty, nil, time.UTC)
	if !strings.HasPrefix(empty.String(), "No active sessions") {
		t.Errorf("WriteSessionsTable(nil) = %q", empty.String())
	}
}

// Failures say what went wrong and what to do, and the checks that need
// no proxy come before any connection is made.
func TestListSessionsErrors(t *testing.T) {
	t.Parallel()
	ok := func(string) proxyAnswer { return proxyAnswer{stdout: "[]\n"} }
	tests := []struct {
		name string
		// setup returns the proxy address to save in the profile ("" for
		// none) and the fake proxy there, if any.
		setup     func(t *testing.T, pt *proxyTest) (addr string, fp *fakeProxy)
		wantErr   error      // errors.Is
		wantStage ProxyStage // of a *ProxyError, when not zero
		want      []string   // in Describe(err)
		// noDial: the proxy must see no connection; noLogin: no login
		// (the certificate is not offered to a proxy not verified).
		noDial, noLogin bool
	}{
		{
			name: "host certificate from another CA",
			setup: func(t *testing.T, pt *proxyTest) (string, *fakeProxy) {
				_, other := testSigner(t)
				fp := startFakeProxy(t, pt.hostKey(t, other, "127.0.0.1"), pt.userCA.PublicKey(), ok)
				return fp.addr, fp
			},
			wantStage: ProxyHostKey,
			noLogin:   true,
			want:      []string{"does not present a valid host certificate from the cluster's host CA", "no authorities for hostname"},
		},
		{
			name: "host certificate for another name",
			setup: func(t *testing.T, pt *proxyTest) (string, *fakeProxy) {
				fp := startFakeProxy(t, pt.hostKey(t, pt.hostCA, "proxy.example.com"), pt.userCA.PublicKey(), ok)
				return fp.addr, fp
			},
			wantStage: ProxyHostKey,
			noLogin:   true,
			want:      []string{"principal \"127.0.0.1\" not in the set of valid principals"},
		},
		{
			name: "plain host key",
			setup: func(t *testing.T, pt *proxyTest) (string, *fakeProxy) {
				_, plain := testSigner(t)
				fp := startFakeProxy(t, plain, pt.userCA.PublicKey(), ok)
				return fp.addr, fp
			},
			wantStage: ProxyHostKey,
			noLogin:   true,
			want:      []string{"offers no host certificate (only ssh-ed25519)"},
		},
		{
			name: "certificate refused",
			setup: func(t *testing.T, pt *proxyTest) (string, *fakeProxy) {
				_, otherUserCA := testSigner(t)
				fp := startFakeProxy(t, pt.hostKey(t, pt.hostCA, "127.0.0.1"), otherUserCA.PublicKey(), ok)
				return fp.addr, nil
			},
			wantStage: ProxyAuth,
			want:      []string{"refused your certificate: log in again"},
		},
		{
			name: "command fails",
			setup: func(t *testing.T, pt *proxyTest) (string, *fakeProxy) {
				fp := startFakeProxy(t, pt.hostKey(t, pt.hostCA, "127.0.0.1"), pt.userCA.PublicKey(), func(string) proxyAnswer {
					return proxyAnswer{stdout: "[", stderr: "cannot list sessions: the CA is down\r\n", status: 1}
				})
				return fp.addr, nil
			},
			wantStage: ProxyCommand,
			want:      []string{`could not run "sessions --json" (exit status 1): cannot list sessions: the CA is down`},
		},
		{
			name: "not a session list",
			setup: func(t *testing.T, pt *proxyTest) (string, *fakeProxy) {
				fp := startFakeProxy(t, pt.hostKey(t, pt.hostCA, "127.0.0.1"), pt.userCA.PublicKey(), func(string) proxyAnswer {
					return proxyAnswer{stdout: "This is teleport-proxy\r\n"}
				})
				return fp.addr, nil
			},
			wantStage: ProxyCommand,
			want:      []string{"answered with something other than a list of sessions"},
		},
		{
			name: "proxy unreachable",
			setup: func(t *testing.T, pt *proxyTest) (string, *fakeProxy) {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr := l.Addr().String()
				l.Close()
				return addr, nil
			},
			wantStage: ProxyConnect,
			want:      []string{"cannot reach the proxy at 127.0.0.1:", "connection refused"},
		},
		{
			name: "expired certificate",
			setup: func(t *testing.T, pt *proxyTest) (string, *fakeProxy) {
				_, key := testSigner(t)
				pt.cert = testCert(t, pt.userCA, key.PublicKey(), ssh.UserCert, "alice", []string{"alice"}, pt.now.Add(-2*time.Hour), pt.now.Add(-time.Hour))
				if err := writeFile(pt.profile.CertFile, ssh.MarshalAuthorizedKey(pt.cert)); err != nil {
					t.Fatal(err)
				}
				fp := startFakeProxy(t, pt.hostKey(t, pt.hostCA, "127.0.0.1"), pt.userCA.PublicKey(), ok)
				return fp.addr, fp
			},
			want:   []string{"the certificate expired at", "run teleport-keyhelper login again"},
			noDial: true,
		},
		{
			name: "no certificate",
			setup: func(t *testing.T, pt *proxyTest) (string, *fakeProxy) {
				if err := os.Remove(pt.profile.CertFile); err != nil {
					t.Fatal(err)
				}
				fp := startFakeProxy(t, pt.hostKey(t, pt.hostCA, "127.0.0.1"), pt.userCA.PublicKey(), ok)
				return fp.addr, fp
			},
			wantErr: ErrNotLoggedIn,
			want:    []string{"not logged in: run teleport-keyhelper login"},
			noDial:  true,
		},
		{
			name:    "no proxy",
			setup:   func(*testing.T, *proxyTest) (string, *fakeProxy) { return "", nil },
			wantErr: ErrNoProxy,
			want:    []string{"no proxy is known for this cluster", "once the cluster has a proxy"},
		},
		{
			name: "no key at hand",
			setup: func(t *testing.T, pt *proxyTest) (string, *fakeProxy) {
				pt.profile.KeyFile = filepath.Join(pt.profile.dir, pubKeyFile)
				if err := writeFile(pt.profile.KeyFile, ssh.MarshalAuthorizedKey(pt.cert.Key)); err != nil {
					t.Fatal(err)
				}
				fp := startFakeProxy(t, pt.hostKey(t, pt.hostCA, "127.0.0.1"), pt.userCA.PublicKey(), ok)
				return fp.addr, fp
			},
			want:   []string{"the certificate's private key is not at hand", "ssh-add"},
			noDial: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pt := newProxyTest(t)
			addr, fp := tt.setup(t, pt)
			pt.save(t, addr)
			list, err := pt.list(context.Background())
			if err == nil {
				t.Fatalf("ListSessions succeeded with %v", list)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			var pe *ProxyError
			switch {
			case tt.wantStage != 0 && (!errors.As(err, &pe) || pe.Stage != tt.wantStage):
				t.Errorf("error %v, want a *ProxyError at stage %v", err, tt.wantStage)
			case tt.wantStage == 0 && errors.As(err, &pe):
				t.Errorf("error %v came from the proxy, want it before any connection", err)
			}
			msg := Describe(err)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("Describe = %q, want it to hold %q", msg, w)
				}
			}
			if pe != nil && !strings.Contains(msg, pe.Addr) {
				t.Errorf("Describe = %q does not name the proxy's address %s", msg, pe.Addr)
			}
			if fp == nil {
				return
			}
			if tt.noDial && fp.accepted.Load() != 0 {
				t.Errorf("the proxy was dialed %d times", fp.accepted.Load())
			}
			if users, _ := fp.seen(); tt.noLogin && len(users) > 0 {
				t.Errorf("the certificate was offered to a proxy not verified")
			}
		})
	}
}

// A proxy that accepts the connection and says nothing times out with a
// message, and so does a cancelled context, at once.
func TestListSessionsTimeout(t *testing.T) {
	t.Parallel()
	pt := newProxyTest(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	pt.save(t, l.Addr().String())
	start := time.Now()
	_, err = ListSessions(context.Background(), SessionsConfig{Home: pt.home, Server: pt.server, Timeout: 300 * time.Millisecond})
	var pe *ProxyError
	if !errors.As(err, &pe) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(Describe(err), "did not answer in time") {
		t.Errorf("silent proxy: %v (%s)", err, Describe(err))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the timeout of 300ms took %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := pt.list(ctx); !errors.Is(err, context.Canceled) || Describe(err) != "interrupted" {
		t.Errorf("cancelled: %v (%s)", err, Describe(err))
	}
}

// With login --confirm the key lives only in the agent: the agent's
// certificate entry signs.
func TestListSessionsAgentKey(t *testing.T) {
	t.Parallel()
	pt := newProxyTest(t)
	ag := testbin.StartAgent(t)
	pt.profile.KeyFile = filepath.Join(pt.profile.dir, pubKeyFile)
	if err := os.Remove(filepath.Join(pt.profile.dir, keyFile)); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(pt.profile.KeyFile, ssh.MarshalAuthorizedKey(pt.cert.Key)); err != nil {
		t.Fatal(err)
	}
	a, err := DialAgent(ag.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Add(AgentEntry{Server: pt.server, User: "alice", Key: pt.key, Cert: pt.cert, PlainKey: true}, time.Now()); err != nil {
		t.Fatal(err)
	}
	a.Close()
	fp := startFakeProxy(t, pt.hostKey(t, pt.hostCA, "127.0.0.1"), pt.userCA.PublicKey(), func(string) proxyAnswer {
		return proxyAnswer{stdout: "[]"}
	})
	pt.save(t, fp.addr)
	list, err := ListSessions(context.Background(), SessionsConfig{Home: pt.home, Server: pt.server, AgentSocket: ag.Socket})
	if err != nil || list == nil || len(list) != 0 {
		t.Fatalf("ListSessions = %v, %v (%s); want an empty list", list, err, Describe(err))
	}
	if users, _ := fp.seen(); !reflect.DeepEqual(users, []string{"alice"}) {
		t.Errorf("the proxy saw users %q", users)
	}
}

func TestMatchHostPatterns(t *testing.T) {
	tests := []struct {
		patterns []string
		name     string
		want     bool
	}{
		{[]string{"*"}, "[127.0.0.1]:3023", true},
		{[]string{"*"}, "bastion.example.com", true},
		{[]string{"*.example.com"}, "[bastion.example.com]:3023", false},
		{[]string{"[*.example.com]:3023"}, "[bastion.example.com]:3023", true},
		{[]string{"bastion.example.com"}, "bastion.example.com", true},
		{[]string{"BASTION.example.com"}, "bastion.example.com", true},
		{[]string{"bastion.example.co?"}, "bastion.example.com", true},
		{[]string{"*", "!bastion.example.com"}, "bastion.example.com", false},
		{[]string{"*", "!other.example.com"}, "bastion.example.com", true},
		{[]string{"!bastion.example.com"}, "other.example.com", false},
		{[]string{"|1|abc=|def="}, "bastion.example.com", false},
		{[]string{"a*b*c"}, "aXbYc", true},
		{[]string{"a*b*c"}, "aXbY", false},
	}
	for _, tt := range tests {
		if got := matchHostPatterns(tt.patterns, tt.name); got != tt.want {
			t.Errorf("matchHostPatterns(%q, %q) = %v, want %v", tt.patterns, tt.name, got, tt.want)
		}
	}
	if got := knownHostsName("Bastion.example.com:22"); got != "bastion.example.com" {
		t.Errorf("knownHostsName on port 22 = %q", got)
	}
	if got := knownHostsName("[2001:db8::1]:3023"); got != "[2001:db8::1]:3023" {
		t.Errorf("knownHostsName of IPv6 = %q", got)
	}
}

// The table never passes a control or non-printing character, and cuts
// long cells, whatever the proxy sends.
func FuzzSessionsTable(f *testing.F) {
	f.Add("sess", "bob", "exec: printf '\x1b[31mred'", "node\t1\n")
	f.Add("", "", "", "")
	f.Add("\u202e", "\x9b2J", strings.Repeat("x", 500), "n\r")
	f.Fuzz(func(t *testing.T, id, user, channel, node string) {
		var b strings.Builder
		s := api.Session{ID: id, User: user, Node: node, Channels: []string{channel}, Started: time.Unix(0, 0)}
		if err := WriteSessionsTable(&b, []api.Session{s}, time.UTC); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("%d lines, want 2:\n%s", len(lines), b.String())
		}
		for _, r := range lines[1] {
			if r != ' ' && !unicode.IsPrint(r) {
				t.Fatalf("the row holds %U:\n%q", r, lines[1])
			}
		}
	})
}

func FuzzReadHostAuthorities(f *testing.F) {
	_, ca, _ := ed25519.GenerateKey(rand.Reader)
	s, _ := ssh.NewSignerFromKey(ca)
	line := "@cert-authority * " + string(ssh.MarshalAuthorizedKey(s.PublicKey()))
	f.Add(line)
	f.Add("# comment\n" + line + "@revoked * " + string(ssh.MarshalAuthorizedKey(s.PublicKey())))
	f.Add("host ssh-ed25519 AAAA\n")
	f.Fuzz(func(t *testing.T, data string) {
		path := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		h, err := readHostAuthorities(path)
		if err != nil {
			return
		}
		if len(h.lines) == 0 {
			t.Fatal("accepted a file without @cert-authority lines")
		}
		c := h.checker(time.Now)
		_ = c.IsHostAuthority(s.PublicKey(), "127.0.0.1:3023")
	})
}
