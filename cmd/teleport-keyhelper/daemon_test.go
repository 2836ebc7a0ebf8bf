package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"github.com/chromedp/chromedp"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/testbin"
)

// browser is a stand-in for a web browser on the CA's pages: a cookie
// jar, no redirects followed, and the Origin and Sec-Fetch-Site headers a
// browser sends with a form of the page's own origin.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowser(t *testing.T, ca *testbin.CA) *browser {
	t.Helper()
	rootPEM, err := os.ReadFile(filepath.Join(ca.DataDir, "tls_root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatal("tls_root.crt holds no certificate")
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, base: ca.URL(), c: &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// form GETs page, takes the CSRF token of its form, and POSTs fields to
// action with it; it returns the POST's status and Location.
func (b *browser) form(page, action string, fields url.Values) (int, string) {
	b.t.Helper()
	resp, err := b.c.Get(b.base + page)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfRE.FindStringSubmatch(string(body))
	if m == nil {
		b.t.Fatalf("GET %s: %d, no CSRF token in:\n%s", page, resp.StatusCode, body)
	}
	fields.Set("csrf", html.UnescapeString(m[1]))
	req, _ := http.NewRequest(http.MethodPost, b.base+action, strings.NewReader(fields.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err = b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("POST %s: %d\n%s", action, resp.StatusCode, body)
	}
	return resp.StatusCode, resp.Header.Get("Location")
}

// notifySocket is a stand-in for systemd's notification socket.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(testbin.ShortTempDir(t), "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, strings.Split(strings.TrimSpace(string(buf[:k])), "\n")...)
			n.mu.Unlock()
		}
	}()
	return n
}

// has reports whether a message starting with prefix has arrived.
func (n *notifySocket) has(prefix string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.msgs {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}

func (n *notifySocket) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.msgs, "\n")
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The built binary as systemd runs it: it registers with a token, tells
// systemd it is ready, and feeds the watchdog; a sign-in on the web page
// (the real form, CSRF and all, against the real teleport-ca) puts a
// certificate into the real ssh-agent (ssh-add -L) and the file
// (ssh-keygen -L reads it) within seconds; signing out on the page takes
// it away; SIGTERM stops it with exit 0 and STOPPING=1. Logs are JSON
// lines when standard error is not a terminal.
func TestDaemonWebSignIn(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, "github.com/opensshca/suite/cmd/teleport-keyhelper")["teleport-keyhelper"]
	c := startCluster(t)
	secret := c.addUser(t, "gwen", "gwen", "root")
	tok, err := c.ca.Admin().AddToken(context.Background(), api.AddTokenRequest{Role: "keyhelper", User: "gwen"})
	if err != nil {
		t.Fatal(err)
	}
	ag := testbin.StartAgent(t)
	notify := listenNotify(t)
	home := filepath.Join(t.TempDir(), ".teleport")
	cmd, exited, stderr := startDaemon(t, bin, c, ag, notify, home, "gwen", tok.Secret)
	waitUntil(t, 10*time.Second, "READY=1", func() bool { return notify.has("READY=1") })
	waitUntil(t, 5*time.Second, "a status line and watchdog pings", func() bool {
		return notify.has("STATUS=waiting for sign-in at "+c.ca.URL()) && notify.has("WATCHDOG=1")
	})

	b := newBrowser(t, c.ca)
	if _, loc := b.form("/", "/signin", url.Values{"user": {"gwen"}, "password": {password("gwen")},
		"code": {strings.TrimSpace(strings.Split(credentials(t, "gwen", secret, time.Now()), "\n")[1])}}); loc != "/account" {
		t.Fatalf("sign-in redirected to %q, want /account", loc)
	}
	certPath := filepath.Join(c.stateDir(home), "key-cert.pub")
	waitUntil(t, 5*time.Second, "the certificate in ssh-add -L and the file", func() bool {
		certs := c.agentCerts(t, ag)
		if len(certs) != 1 {
			return false
		}
		_, err := os.Stat(certPath)
		return err == nil && readCert(t, certPath).Serial == certs[0].Serial
	})
	out, err := exec.Command("ssh-keygen", "-L", "-f", certPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `Key ID: "gwen"`) || !regexp.MustCompile(`(?m)^\s+root$`).Match(out) {
		t.Errorf("ssh-keygen -L: %v\n%s", err, out)
	}
	if fi, err := os.Stat(certPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, mode %v", certPath, err, fi.Mode())
	}
	waitUntil(t, 5*time.Second, "a status line for the certificate", func() bool { return notify.has("STATUS=signed in until ") })
	if st := kh(t, nil, "", "status", "--home", home); !strings.Contains(st.stdout, "Sign-in:      on the web page, valid until") {
		t.Errorf("status:\n%s", st.stdout)
	}

	b.form("/account", "/signout", url.Values{})
	waitUntil(t, 5*time.Second, "the certificate gone from the agent and the file after the web sign-out", func() bool {
		_, err := os.Stat(certPath)
		return len(c.agentCerts(t, ag)) == 0 && os.IsNotExist(err)
	})

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not exit within 10 s of SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	if !notify.has("STOPPING=1") {
		t.Error("no STOPPING=1")
	}
	delivered := false
	for line := range strings.SplitSeq(strings.TrimSpace(stderr.String()), "\n") {
		var rec struct{ Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("stderr line is not JSON: %q", line)
		}
		delivered = delivered || rec.Msg == "certificate delivered"
	}
	if !delivered {
		t.Error("no \"certificate delivered\" log record")
	}
}

// A daemon that cannot run until the device is registered exits 3, which
// the systemd unit does not restart, with a line that says what to do.
func TestDaemonNotRegistered(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, "github.com/opensshca/suite/cmd/teleport-keyhelper")["teleport-keyhelper"]
	cmd := exec.Command(bin, "daemon", "--home", filepath.Join(t.TempDir(), ".teleport"), "--server", "https://127.0.0.1:1", "--auth", "gwen")
	cmd.Env = testbin.Environ()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitRegister ||
		!strings.HasSuffix(string(out), "teleport-keyhelper: this device is not registered: run with --token from caadm tokens add --role keyhelper --user NAME or the web page\n") {
		t.Errorf("exit %v, output:\n%s", err, out)
	}
}

// startDaemon runs the built daemon as a process for user with a fresh
// token, until the test ends.
func startDaemon(t *testing.T, bin string, c *cluster, ag *testbin.Agent, notify *notifySocket, home, user, token string) (*exec.Cmd, <-chan struct{}, *testbin.Buffer) {
	t.Helper()
	stderr := &testbin.Buffer{}
	cmd := exec.Command(bin, "daemon", "--home", home, "--server", c.ca.URL(), "--auth", user,
		"--token", token, "--ca-pin", c.ca.Pin)
	cmd.Env = append(testbin.Environ(), "SSH_AUTH_SOCK="+ag.Socket, "NOTIFY_SOCKET="+notify.path, "WATCHDOG_USEC=1000000")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("daemon stderr:\n%s\nnotifications:\n%s", stderr, notify)
		}
	})
	return cmd, exited, stderr
}

// TestDaemonChromiumSignIn is the seed's flow end to end with every real
// piece: the user signs in on the CA's web page in a real headless
// Chromium with a code from oathtool, and the running daemon (a separate
// process, registered with a device token) puts the certificate into the
// real ssh-agent; signing out on the page removes it.
func TestDaemonChromiumSignIn(t *testing.T) {
	t.Parallel()
	bin := testbin.Build(t, "github.com/opensshca/suite/cmd/teleport-keyhelper")["teleport-keyhelper"]
	c := startCluster(t)
	secret := c.addUser(t, "hana", "hana")
	tok, err := c.ca.Admin().AddToken(context.Background(), api.AddTokenRequest{Role: "keyhelper", User: "hana"})
	if err != nil {
		t.Fatal(err)
	}
	ag := testbin.StartAgent(t)
	notify := listenNotify(t)
	startDaemon(t, bin, c, ag, notify, filepath.Join(t.TempDir(), ".teleport"), "hana", tok.Secret)
	waitUntil(t, 10*time.Second, "the daemon waiting for a sign-in", func() bool {
		return notify.has("STATUS=waiting for sign-in at " + c.ca.URL())
	})

	b := testbin.ChromiumTab(t, testbin.StartChromium(t, caLeafSPKI(t, c)))
	if _, err := chromedp.RunResponse(b, chromedp.Navigate(c.ca.URL()+"/")); err != nil {
		t.Fatalf("opening the sign-in page: %v", err)
	}
	code := strings.TrimSpace(strings.Split(credentials(t, "hana", secret, time.Now()), "\n")[1])
	if err := chromedp.Do(b,
		chromedp.SetValue(chromedp.CSS("#user"), "hana"),
		chromedp.SetValue(chromedp.CSS("#password"), password("hana")),
		chromedp.SetValue(chromedp.CSS("#code"), code),
	); err != nil {
		t.Fatal(err)
	}
	if resp, err := chromedp.RunResponse(b, chromedp.Click(chromedp.CSS("#signin"))); err != nil || resp.Status != 200 {
		t.Fatalf("signing in on the page: %v %v", resp, err)
	}
	waitUntil(t, 10*time.Second, "the daemon's certificate in ssh-add -L after the web sign-in", func() bool {
		certs := c.agentCerts(t, ag)
		return len(certs) == 1 && certs[0].KeyId == "hana"
	})

	if resp, err := chromedp.RunResponse(b, chromedp.Click(chromedp.CSS("form.signout button"))); err != nil || resp.Status != 200 {
		t.Fatalf("signing out on the page: %v %v", resp, err)
	}
	waitUntil(t, 10*time.Second, "the certificate gone after the web sign-out", func() bool {
		return len(c.agentCerts(t, ag)) == 0
	})
}

// caLeafSPKI returns the SubjectPublicKeyInfo of the CA's TLS server
// certificate, verified against the CA's own root, for Chromium to trust.
func caLeafSPKI(t *testing.T, c *cluster) []byte {
	t.Helper()
	info, err := c.ca.Admin().AdminCA(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(info.TLSRoot)) {
		t.Fatal("no TLS root in CA info")
	}
	host, _, _ := net.SplitHostPort(c.ca.Listen)
	conn, err := tls.Dial("tcp", c.ca.Listen, &tls.Config{RootCAs: pool, ServerName: host})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo
}
