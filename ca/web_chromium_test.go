package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/testbin"
)

// The web pages in a real browser: Debian's headless Chromium driven over
// the DevTools protocol (chromedp). The CA serves its own TLS, with a
// server certificate for 127.0.0.1 from its TLS root. Chromium does not
// know that root; rather than --ignore-certificate-errors (which would
// accept any certificate), the test trusts exactly the server's key with
// --ignore-certificate-errors-spki-list=<base64 SHA-256 of the leaf's
// SubjectPublicKeyInfo>, so the pages run in a secure context as they do
// in production (Secure and __Host- cookies, HSTS).

// webServer serves a fresh authority (real clock: the browser and
// oathtool live in real time) whose public URL is the server itself.
func webServer(t *testing.T) (*Authority, string, []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + ln.Addr().String()
	a, _ := newTestAuthority(t, func(c *Config) { c.Clock, c.PublicURL = nil, base })
	s, err := NewServer(a, ServerConfig{Listener: ln, TLSNames: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	// The leaf the server presents, verified against the CA's root.
	pool := x509.NewCertPool()
	pool.AddCert(a.keys.tls.cert)
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return a, base, conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo
}

// startChromium starts the browser for the test; see testbin.StartChromium.
func startChromium(t *testing.T, spkis ...[]byte) context.Context {
	t.Helper()
	return testbin.StartChromium(t, spkis...)
}

// tab opens a tab with its own cookies; see testbin.ChromiumTab.
func tab(t *testing.T, bctx context.Context) context.Context {
	t.Helper()
	return testbin.ChromiumTab(t, bctx)
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// navigate loads a page and returns its HTTP status.
func navigate(t *testing.T, ctx context.Context, url string) int64 {
	t.Helper()
	resp := run(t, ctx, chromedp.NavigateResponse(url))
	return resp.Status
}

// submit clicks a form's button, waits for the page it loads and returns
// that page's HTTP status (after redirects).
func submit(t *testing.T, ctx context.Context, button string) int64 {
	t.Helper()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(button)))
	if err != nil {
		t.Fatalf("submitting with %s: %v", button, err)
	}
	return resp.Status
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return strings.TrimSpace(run(t, ctx, chromedp.Text(chromedp.CSS(sel))))
}

// fillSignIn fills the sign-in form on the current page.
func fillSignIn(t *testing.T, ctx context.Context, user, password, code string) {
	t.Helper()
	do(t, ctx,
		chromedp.SetValue(chromedp.CSS("#user"), user),
		chromedp.SetValue(chromedp.CSS("#password"), password),
		chromedp.SetValue(chromedp.CSS("#code"), code),
	)
}

// wrongCode returns a code that matches secret neither now nor in the
// next step, so the server refuses it whenever it checks.
func wrongCode(t *testing.T, secret string) string {
	now := time.Now()
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", i*7919%1000000)
		_, ok1 := matchTOTP(secret, c, now)
		_, ok2 := matchTOTP(secret, c, now.Add(totpPeriod*time.Second))
		if !ok1 && !ok2 {
			return c
		}
	}
}

func TestWebChromium(t *testing.T) {
	start := time.Now()
	a, base, spki := webServer(t)
	// A second origin on the same site (another port of 127.0.0.1) for
	// the cross-origin form; its own key, trusted the same way.
	evil, evilSPKI := evilServer(t, a)
	bctx := startChromium(t, spki, evilSPKI)
	ctx := context.Background()

	t.Run("enroll", func(t *testing.T) {
		resp, err := a.AddUser(ctx, api.AddUserRequest{Name: "erin", Logins: []string{"erin"}}, "admin")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(resp.EnrollURL, base+"/enroll/") {
			t.Fatalf("enrollment link %q is not on the test server %s", resp.EnrollURL, base)
		}
		b := tab(t, bctx)
		if st := navigate(t, b, resp.EnrollURL); st != 200 {
			t.Fatalf("enrollment page: HTTP %d", st)
		}
		if got := text(t, b, "#enroll-user"); got != "erin" {
			t.Fatalf("enrollment page names %q", got)
		}
		// The stylesheet loaded under the page's Content-Security-Policy.
		if disp := run(t, b, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("header")).display`)); disp != "flex" {
			t.Errorf("header display %q: /assets/style.css did not apply", disp)
		}
		do(t, b,
			chromedp.SetValue(chromedp.CSS("#password"), pw),
			chromedp.SetValue(chromedp.CSS("#password2"), pw),
		)
		if st := submit(t, b, "#set-password"); st != 200 {
			t.Fatalf("password form: HTTP %d", st)
		}
		secret := text(t, b, "#totp-secret")
		if len(secret) != 32 {
			t.Fatalf("secret on the page %q", secret)
		}
		// The QR code (a data: PNG) rendered under the policy.
		if w := run(t, b, chromedp.Evaluate[int](`document.querySelector("img").naturalWidth`)); w != 256 {
			t.Errorf("QR code image width %d, want 256 (not loaded?)", w)
		}
		// A wrong code is refused and the same secret shown again.
		do(t, b, chromedp.SetValue(chromedp.CSS("#code"), wrongCode(t, secret)))
		if st := submit(t, b, "#confirm"); st != 400 {
			t.Errorf("wrong code: HTTP %d", st)
		}
		if got := text(t, b, "#error"); !strings.Contains(got, "That code is wrong") {
			t.Errorf("wrong code: error %q", got)
		}
		if got := text(t, b, "#totp-secret"); got != secret {
			t.Fatalf("secret changed after a wrong code: %q, was %q", got, secret)
		}
		code := oathtool(t, secret, time.Now())
		do(t, b, chromedp.SetValue(chromedp.CSS("#code"), code))
		if st := submit(t, b, "#confirm"); st != 200 {
			t.Fatalf("confirm: HTTP %d", st)
		}
		if got := text(t, b, "#enrolled"); got != "The account erin is active." {
			t.Fatalf("after confirmation: %q", got)
		}
		if u, _, err := a.getUser(ctx, "erin"); err != nil || u.Pending {
			t.Fatalf("erin after enrollment: %+v, %v", u, err)
		}
		// The code that activated the account cannot sign in.
		navigate(t, b, base+"/")
		fillSignIn(t, b, "erin", pw, code)
		if st := submit(t, b, "#signin"); st != 401 {
			t.Errorf("enrollment code replayed: HTTP %d", st)
		}
		if got := text(t, b, "#error"); got != "Wrong user name, password or code." {
			t.Errorf("enrollment code replayed: error %q", got)
		}
		// The link is used up.
		if st := navigate(t, b, resp.EnrollURL); st != 404 {
			t.Errorf("used link: HTTP %d", st)
		}
		if got := text(t, b, "#error"); !strings.Contains(got, "ask your administrator for a new one") {
			t.Errorf("used link: %q", got)
		}
	})

	t.Run("sign in, device, sign out, replay", func(t *testing.T) {
		secret := addUser(t, a, "carol", []string{"carol", "deploy"}, nil)
		b := tab(t, bctx)
		if st := navigate(t, b, base+"/"); st != 200 {
			t.Fatalf("sign-in page: HTTP %d", st)
		}
		// A wrong code: refused with the error, the name kept, the
		// password not.
		fillSignIn(t, b, "carol", pw, wrongCode(t, secret))
		if st := submit(t, b, "#signin"); st != 401 {
			t.Errorf("wrong code: HTTP %d", st)
		}
		if got := text(t, b, "#error"); got != "Wrong user name, password or code." {
			t.Errorf("wrong code: error %q", got)
		}
		if u, p := run(t, b, chromedp.Value(chromedp.CSS("#user"))), run(t, b, chromedp.Value(chromedp.CSS("#password"))); u != "carol" || p != "" {
			t.Errorf("after an error the form holds user %q, password %q; want carol and empty", u, p)
		}

		code := oathtool(t, secret, time.Now())
		fillSignIn(t, b, "carol", pw, code)
		if st := submit(t, b, "#signin"); st != 200 {
			t.Fatalf("sign-in: HTTP %d", st)
		}
		if loc := run(t, b, chromedp.Location()); loc != base+"/account" {
			t.Fatalf("after sign-in at %s", loc)
		}
		if got := text(t, b, "#account-user"); got != "carol" {
			t.Fatalf("account page names %q", got)
		}
		if got := text(t, b, "#account-logins"); got != "carol, deploy" {
			t.Errorf("logins %q", got)
		}
		// The browser holds the session cookie as the server meant it.
		cookies, err := chromedp.Call(b, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
		if err != nil {
			t.Fatal(err)
		}
		var sess *network.Cookie
		for _, c := range cookies.Cookies {
			if c.Name == cookieSession {
				sess = c
			}
		}
		if sess == nil || !sess.HTTPOnly || !sess.Secure || sess.SameSite != network.CookieSameSiteStrict || sess.Path != "/" || sess.Expires <= float64(time.Now().Unix()) {
			t.Fatalf("session cookie in the browser: %+v", sess)
		}
		if dc := run(t, b, chromedp.Evaluate[string](`document.cookie`)); dc != "" {
			t.Errorf("page script can read cookies: %q", dc)
		}

		// Add a keyhelper device: the token and the command, once.
		if st := submit(t, b, "#add-device"); st != 200 {
			t.Fatalf("add device: HTTP %d", st)
		}
		tok := text(t, b, "#device-token")
		want := "teleport-keyhelper daemon --server " + base + " --auth carol --token " + tok + " --ca-pin " + a.Pin()
		if got := text(t, b, "#device-command"); len(tok) != 64 || got != want {
			t.Fatalf("device command %q, want %q", got, want)
		}
		toks, err := a.Tokens(ctx)
		if err != nil || len(toks) != 1 || toks[0].User != "carol" || toks[0].Role != TokenKeyhelper {
			t.Fatalf("tokens after the button: %+v, %v", toks, err)
		}

		// A form on another origin of the same site, carrying a valid
		// token for this session (as if stolen): the browser sends the
		// SameSite=Strict cookie (same site), and the server still
		// refuses it for its Origin.
		csrf, err := newWebUI(a).csrfToken(ctx, sessionBinding(sess.Value))
		if err != nil {
			t.Fatal(err)
		}
		if st := navigate(t, b, evil.URL+"?to="+url.QueryEscape(base+"/account/devices")+"&csrf="+csrf); st != 200 {
			t.Fatalf("other origin's page: HTTP %d", st)
		}
		if st := submit(t, b, "#go"); st != 403 {
			t.Errorf("cross-origin form: HTTP %d, want 403", st)
		}
		if got := text(t, b, "#error"); !strings.Contains(got, "sent from another site") {
			t.Errorf("cross-origin form: %q", got)
		}
		if toks, _ := a.Tokens(ctx); len(toks) != 1 {
			t.Errorf("the cross-origin form made a token: %+v", toks)
		}

		// Sign out, then the code just used is a replay.
		navigate(t, b, base+"/account")
		if st := submit(t, b, "form.signout button"); st != 200 {
			t.Fatalf("sign-out: HTTP %d", st)
		}
		if loc := run(t, b, chromedp.Location()); loc != base+"/" {
			t.Fatalf("after sign-out at %s", loc)
		}
		if _, _, err := a.sessionUser(ctx, sess.Value); err == nil {
			t.Error("session still valid after signing out")
		}
		fillSignIn(t, b, "carol", pw, code)
		if st := submit(t, b, "#signin"); st != 401 {
			t.Errorf("replayed code: HTTP %d", st)
		}
		if got := text(t, b, "#error"); got != "Wrong user name, password or code." {
			t.Errorf("replayed code: error %q", got)
		}
		if st := navigate(t, b, base+"/account"); st != 401 {
			t.Errorf("account page after sign-out: HTTP %d", st)
		}
	})
	t.Logf("Chromium tests took %v", time.Since(start).Round(time.Millisecond))
}

// evilServer serves, on another port of 127.0.0.1 (same site, another
// origin), a page with a form that posts to ?to= with the csrf= value.
func evilServer(t *testing.T, a *Authority) (*evilSite, []byte) {
	t.Helper()
	cert, err := a.keys.tls.issueServerCert([]string{"127.0.0.1"}, time.Now(), a.rand)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, `<!doctype html><form method="post" action="%s"><input type="hidden" name="csrf" value="%s"><button id="go">Win a prize</button></form>`,
				r.URL.Query().Get("to"), r.URL.Query().Get("csrf"))
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{*cert}},
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return &evilSite{URL: "https://" + ln.Addr().String() + "/"}, cert.Leaf.RawSubjectPublicKeyInfo
}

type evilSite struct{ URL string }
