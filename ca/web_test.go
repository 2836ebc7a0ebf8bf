package ca

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"html"
	"image/png"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// webClient is a browser stand-in: its own cookie jar, no redirects
// followed, and the Origin and Sec-Fetch-Site a browser sends with a form
// of the same origin unless a test overrides them.
type webClient struct {
	t    *testing.T
	c    *http.Client
	base string
}

func newWebClient(t *testing.T, c *http.Client, base string) *webClient {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &webClient{t: t, base: base, c: &http.Client{
		Transport:     c.Transport,
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type webResp struct {
	status int
	body   string
	header http.Header
	resp   *http.Response
}

func (w *webClient) do(req *http.Request) webResp {
	w.t.Helper()
	resp, err := w.c.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return webResp{status: resp.StatusCode, body: string(b), header: resp.Header, resp: resp}
}

func (w *webClient) get(p string) webResp {
	w.t.Helper()
	req, _ := http.NewRequest("GET", w.base+p, nil)
	return w.do(req)
}

// post sends a form; hdr are header name/value pairs that replace the
// defaults ("" as value removes one).
func (w *webClient) post(p string, form url.Values, hdr ...string) webResp {
	w.t.Helper()
	req, _ := http.NewRequest("POST", w.base+p, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", w.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	return w.do(req)
}

func (w *webClient) cookie(name string) string {
	u, _ := url.Parse(w.base)
	for _, c := range w.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

var (
	csrfRE   = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	secretRE = regexp.MustCompile(`<code id="totp-secret"[^>]*>([A-Z2-7]+)</code>`)
	qrRE     = regexp.MustCompile(`<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"`)
	tokenRE  = regexp.MustCompile(`<code id="device-token">([0-9a-f]{64})</code>`)
)

func match(t *testing.T, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(html.UnescapeString(body))
	if m == nil {
		t.Fatalf("page has no match for %s:\n%s", re, body)
	}
	return m[1]
}

// signIn signs in through the form and returns the sign-in page's
// response to the POST.
func (w *webClient) signIn(user, password, code string, hdr ...string) webResp {
	w.t.Helper()
	csrf := match(w.t, csrfRE, w.get("/").body)
	return w.post("/signin", url.Values{"csrf": {csrf}, "user": {user}, "password": {password}, "code": {code}}, hdr...)
}

func wantPage(t *testing.T, r webResp, status int, contains ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d:\n%s", r.status, status, r.body)
	}
	body := html.UnescapeString(r.body)
	for _, c := range contains {
		if !strings.Contains(body, c) {
			t.Fatalf("page does not contain %q:\n%s", c, r.body)
		}
	}
}

func TestWebHeadersAndCookies(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	secret := addUser(t, a, "alice", []string{"alice"}, nil)
	c, base := startServer(t, a)
	w := newWebClient(t, c, base)

	r := w.get("/")
	wantPage(t, r, 200, "Sign in", `name="csrf"`)
	for k, v := range map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Frame-Options":         "DENY",
		"Cache-Control":           "no-store",
		"Referrer-Policy":         "same-origin",
		"X-Content-Type-Options":  "nosniff",
		"Content-Type":            "text/html; charset=utf-8",
	} {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	checkCookie := func(c *http.Cookie) {
		t.Helper()
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("cookie %s: Secure=%v HttpOnly=%v SameSite=%v Path=%q Domain=%q; want Secure, HttpOnly, Strict, /, no domain",
				c.Name, c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain)
		}
	}
	pre := r.resp.Cookies()
	if len(pre) != 1 || pre[0].Name != cookieCSRF {
		t.Fatalf("GET / set cookies %v, want one %s", pre, cookieCSRF)
	}
	checkCookie(pre[0])
	if again := w.get("/"); len(again.resp.Cookies()) != 0 {
		t.Errorf("second GET / set cookies again: %v", again.resp.Cookies())
	}

	r = w.signIn("alice", pw, oathtool(t, secret, clk.Now()))
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/account" {
		t.Fatalf("sign-in: %d %s", r.status, r.body)
	}
	cs := r.resp.Cookies()
	if len(cs) != 1 || cs[0].Name != cookieSession {
		t.Fatalf("sign-in set cookies %v, want one %s", cs, cookieSession)
	}
	checkCookie(cs[0])
	if want := clk.Now().Add(12 * time.Hour).Truncate(time.Second); !cs[0].Expires.Equal(want) {
		t.Errorf("session cookie expires %v, want the session's expiry %v", cs[0].Expires, want)
	}

	css := w.get("/assets/style.css")
	if css.status != 200 || css.header.Get("Content-Type") != "text/css; charset=utf-8" || !strings.Contains(css.body, "body {") {
		t.Errorf("style.css: %d %q", css.status, css.header.Get("Content-Type"))
	}
	// The JSON API is where it was.
	if r := w.get(api.PathPing); r.status != 200 || !strings.Contains(r.body, `"version":"v1"`) {
		t.Errorf("ping: %d %s", r.status, r.body)
	}
	if r := w.get("/nosuchpage"); r.status != 404 {
		t.Errorf("unknown page: %d", r.status)
	}
}

func TestWebCSRF(t *testing.T) {
	a, clk := newTestAuthority(t, nil)
	secret := addUser(t, a, "alice", []string{"alice"}, nil)
	c, base := startServer(t, a)
	w := newWebClient(t, c, base)
	csrf := match(t, csrfRE, w.get("/").body)
	other := newWebClient(t, c, base)
	otherCSRF := match(t, csrfRE, other.get("/").body)
	if otherCSRF == csrf {
		t.Fatal("two browsers got the same CSRF token")
	}
	fresh := newWebClient(t, c, base) // never loaded a page: no cookie
	form := func(csrf string) url.Values {
		return url.Values{"csrf": {csrf}, "user": {"alice"}, "password": {pw}, "code": {oathtool(t, secret, clk.Now())}}
	}

	tests := []struct {
		name   string
		client *webClient
		form   url.Values
		hdr    []string
		want   string
	}{
		{"missing token", w, url.Values{"user": {"alice"}, "password": {pw}}, nil, "expired or belongs to another session"},
		{"token of another browser", w, form(otherCSRF), nil, "expired or belongs to another session"},
		{"token without its cookie", fresh, form(csrf), nil, "did not send the cookie"},
		{"cross-origin Origin", w, form(csrf), []string{"Origin", "https://evil.example"}, "sent from another site"},
		{"null Origin", w, form(csrf), []string{"Origin", "null"}, "sent from another site"},
		{"cross-origin Referer", w, form(csrf), []string{"Origin", "", "Referer", "https://evil.example/page"}, "sent from another site"},
		{"cross-site fetch", w, form(csrf), []string{"Sec-Fetch-Site", "cross-site"}, "sent from another site"},
		{"same-site fetch", w, form(csrf), []string{"Sec-Fetch-Site", "same-site"}, "sent from another site"},
		{"cross-origin without cookie", fresh, form(csrf), []string{"Origin", "https://evil.example"}, "sent from another site"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.client.post("/signin", tt.form, tt.hdr...)
			wantPage(t, r, http.StatusForbidden, "Form refused", tt.want)
			if len(r.resp.Cookies()) != 0 {
				t.Errorf("refused form set cookies %v", r.resp.Cookies())
			}
		})
	}
	// None of those reached Login: no sign-in attempt was audited.
	if evs, _ := a.Audit(context.Background(), AuditFilter{Type: "user.login"}); len(evs) != 0 {
		t.Fatalf("refused forms were sign-in attempts: %+v", evs)
	}

	// A session-bound token is not a pre-session token, and the reverse.
	r := w.post("/signin", form(csrf), "Origin", "", "Sec-Fetch-Site", "") // a client that sends neither header
	if r.status != http.StatusSeeOther {
		t.Fatalf("valid form: %d %s", r.status, r.body)
	}
	acct := w.get("/account")
	sessCSRF := match(t, csrfRE, acct.body)
	if sessCSRF == csrf {
		t.Fatal("the signed-in page reuses the pre-session token")
	}
	if r := w.post("/account/devices", url.Values{"csrf": {csrf}}); r.status != http.StatusForbidden {
		t.Errorf("device form with the pre-session token: %d", r.status)
	}
	clk.Advance(30 * time.Second)
	if r := w.post("/signin", url.Values{"csrf": {sessCSRF}, "user": {"alice"}, "password": {pw}, "code": {oathtool(t, secret, clk.Now())}}); r.status != http.StatusForbidden {
		t.Errorf("sign-in form with the session token: %d", r.status)
	}
	// A wrong content type is refused too.
	req, _ := http.NewRequest("POST", base+"/signin", strings.NewReader(`{"user":"alice"}`))
	req.Header.Set("Content-Type", "application/json")
	if r := w.do(req); r.status != http.StatusBadRequest {
		t.Errorf("JSON to the form: %d", r.status)
	}
}

func TestWebSignIn(t *testing.T) {
	ctx := context.Background()
	a, clk := newTestAuthority(t, nil)
	secret := addUser(t, a, "alice", []string{"alice", "www"}, nil)
	addUser(t, a, "bob", []string{"bob"}, nil)
	addPending(t, a, "pat")
	c, base := startServer(t, a)
	w := newWebClient(t, c, base)

	// Without a session the account page asks to sign in.
	wantPage(t, w.get("/account"), http.StatusUnauthorized, "Sign in to see your account.")

	tests := []struct {
		name, user, password, code string
		status                     int
		want                       string
		keepsUser                  bool
	}{
		{"wrong password", "alice", "not the password", oathtool(t, secret, clk.Now()), 401, "Wrong user name, password or code.", true},
		{"wrong code", "alice", pw, oathtool(t, secret, clk.Now().Add(5*time.Minute)), 401, "Wrong user name, password or code.", true},
		{"unknown user", "nobody", pw, "123456", 401, "Wrong user name, password or code.", true},
		{"not enrolled", "pat", pw, "123456", 403, "Account is not enrolled yet", true},
		{"malformed name", "<script>", pw, "123456", 401, "Wrong user name, password or code.", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := w.signIn(tt.user, tt.password, tt.code)
			wantPage(t, r, tt.status, tt.want)
			if got := strings.Contains(r.body, `value="`+tt.user+`"`); got != tt.keepsUser {
				t.Errorf("form keeps the user name: %v, want %v", got, tt.keepsUser)
			}
			if strings.Contains(r.body, tt.password) || strings.Contains(r.body, `value="`+tt.code+`"`) {
				t.Error("the page repeats the password or the code")
			}
			if w.cookie(cookieSession) != "" {
				t.Error("a failed sign-in set a session cookie")
			}
		})
	}

	// A lock shows until when.
	until := clk.Now().Add(time.Hour).Truncate(time.Second)
	if err := a.LockUser(ctx, "bob", api.LockRequest{Until: &until, Reason: "on leave"}, "test"); err != nil {
		t.Fatal(err)
	}
	wantPage(t, w.signIn("bob", pw, "123456"), 403, "Account is locked (on leave) until "+until.UTC().Format(time.RFC3339))

	// Success: the web session is an API sign-in session.
	code := oathtool(t, secret, clk.Now())
	r := w.signIn("alice", pw, code)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/account" {
		t.Fatalf("sign-in: %d %s", r.status, r.body)
	}
	wantPage(t, w.get("/account"), 200, "Your account", `<dd id="account-user">alice</dd>`, "<code>alice</code>, <code>www</code>", "Sign out")
	wantPage(t, w.get("/"), http.StatusSeeOther) // signed in: / sends to /account
	sess := w.cookie(cookieSession)
	st, _, body := post(t, c, base+api.PathUserCert, "application/json", sess, `{"public_key":"`+authorizedKey(newPub(t))+`"}`)
	if st != 200 {
		t.Fatalf("the web session as an API bearer token: %d %s", st, body)
	}
	// (Events at one fake instant have no order: count them.)
	loginEvents := func() map[string]int {
		evs, _ := a.Audit(ctx, AuditFilter{User: "alice", Type: "user.login"})
		n := map[string]int{}
		for _, ev := range evs {
			if ev.Remote != "127.0.0.1" {
				t.Errorf("event %+v: remote is not the client's address", ev)
			}
			if ev.Success {
				n["ok"]++
			} else {
				n[ev.Fields["reason"]]++
			}
		}
		return n
	}
	if n := loginEvents(); n["ok"] != 1 {
		t.Fatalf("web sign-in audit: %v", n)
	}

	// Sign out: session ended, cookie cleared.
	csrf := match(t, csrfRE, w.get("/account").body)
	r = w.post("/signout", url.Values{"csrf": {csrf}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Fatalf("sign-out: %d %s", r.status, r.body)
	}
	if cs := r.resp.Cookies(); len(cs) != 1 || cs[0].Name != cookieSession || cs[0].MaxAge >= 0 {
		t.Errorf("sign-out cookies %v, want %s cleared", cs, cookieSession)
	}
	if _, _, err := a.sessionUser(ctx, sess); err == nil {
		t.Error("session still valid after sign-out")
	}
	if evs, _ := a.Audit(ctx, AuditFilter{User: "alice", Type: "user.logout"}); len(evs) != 1 {
		t.Errorf("logout events %+v", evs)
	}

	// The code just used cannot sign in again (replay).
	wantPage(t, w.signIn("alice", pw, code), 401, "Wrong user name, password or code.")
	if n := loginEvents(); n["code already used"] != 1 {
		t.Errorf("replay not audited as such: %v", n)
	}

	// Lockout: the replay above plus these are 5 failures in a row.
	for range 3 {
		w.signIn("alice", "wrong password", "123456")
	}
	r = w.signIn("alice", "wrong password", "123456")
	wantPage(t, r, 403, "Account is locked (5 failed sign-ins in a row) until ")
}

// TestWebSignInReplacesSession: signing in again in the same browser ends
// the session whose cookie it replaces.
func TestWebSignInReplacesSession(t *testing.T) {
	ctx := context.Background()
	a, clk := newTestAuthority(t, nil)
	sa := addUser(t, a, "alice", []string{"alice"}, nil)
	sb := addUser(t, a, "bob", []string{"bob"}, nil)
	c, base := startServer(t, a)
	w := newWebClient(t, c, base)
	if r := w.signIn("alice", pw, oathtool(t, sa, clk.Now())); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", r.status)
	}
	first := w.cookie(cookieSession)
	// Signed in, / sends to /account; a second tab still has the form.
	csrf, err := newWebUI(a).csrfToken(ctx, preBinding(w.cookie(cookieCSRF)))
	if err != nil {
		t.Fatal(err)
	}
	r := w.post("/signin", url.Values{"csrf": {csrf}, "user": {"bob"}, "password": {pw}, "code": {oathtool(t, sb, clk.Now())}})
	if r.status != http.StatusSeeOther {
		t.Fatalf("second sign-in: %d %s", r.status, r.body)
	}
	if _, _, err := a.sessionUser(ctx, first); err == nil {
		t.Error("the replaced session is still valid")
	}
	wantPage(t, w.get("/account"), 200, `<dd id="account-user">bob</dd>`)
}

func TestWebThrottle(t *testing.T) {
	a, _ := newTestAuthority(t, func(c *Config) { c.SignInFailuresPerAddress, c.SignInFailureWindow = 2, time.Minute })
	c, base := startServer(t, a)
	w := newWebClient(t, c, base)
	w.signIn("x", "y", "000000")
	w.signIn("x", "y", "000000")
	r := w.signIn("x", "y", "000000")
	wantPage(t, r, http.StatusTooManyRequests, "Too many failed sign-ins from your address; try again in 1m0s.")
	if r.header.Get("Retry-After") != "61" {
		t.Errorf("Retry-After = %q", r.header.Get("Retry-After"))
	}
}

func TestWebEnroll(t *testing.T) {
	ctx := context.Background()
	a, clk := newTestAuthority(t, nil)
	resp, err := a.AddUser(ctx, api.AddUserRequest{Name: "erin", Logins: []string{"erin"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	c, base := startServer(t, a)
	w := newWebClient(t, c, base)
	link := "/enroll/" + path.Base(resp.EnrollURL)

	r := w.get(link)
	wantPage(t, r, 200, "Set up your account", `<strong id="enroll-user">erin</strong>`, `autocomplete="new-password"`)
	if r.header.Get("Referrer-Policy") != "same-origin" {
		t.Errorf("Referrer-Policy = %q", r.header.Get("Referrer-Policy"))
	}
	csrf := match(t, csrfRE, r.body)

	wantPage(t, w.post(link, url.Values{"csrf": {csrf}, "password": {pw}, "password2": {pw + "x"}}), 400, "The two passwords are not the same")
	wantPage(t, w.post(link, url.Values{"csrf": {csrf}, "password": {"short"}, "password2": {"short"}}), 400, "Password is shorter than 8 characters.")
	wantPage(t, w.post(link, url.Values{"password": {pw}, "password2": {pw}}), 403, "Form refused")

	r = w.post(link, url.Values{"csrf": {csrf}, "password": {pw}, "password2": {pw}})
	wantPage(t, r, 200, "Set up your authenticator")
	secret := match(t, secretRE, r.body)
	img, err := png.Decode(base64.NewDecoder(base64.StdEncoding, strings.NewReader(match(t, qrRE, r.body))))
	if err != nil || img.Bounds().Dx() != 256 {
		t.Fatalf("QR code image: %v", err)
	}
	u, _, _ := a.getUser(ctx, "erin")
	if u.TOTPSecret != secret || !u.Pending {
		t.Fatalf("stored secret %q pending=%v, page shows %q", u.TOTPSecret, u.Pending, secret)
	}
	if strings.Contains(r.body, pw) {
		t.Error("the page repeats the password")
	}

	// A wrong code keeps the same secret.
	confirm := link + "/confirm"
	r = w.post(confirm, url.Values{"csrf": {csrf}, "code": {oathtool(t, secret, clk.Now().Add(10*time.Minute))}})
	wantPage(t, r, 400, "That code is wrong")
	if got := match(t, secretRE, r.body); got != secret {
		t.Fatalf("secret after a wrong code %q, want %q", got, secret)
	}
	// The right code activates the account.
	code := oathtool(t, secret, clk.Now())
	wantPage(t, w.post(confirm, url.Values{"csrf": {csrf}, "code": {code[:3] + " " + code[3:]}}), 200, `<p id="enrolled">The account <strong>erin</strong> is active.</p>`)

	// The link is used up, and says what to do.
	for _, r := range []webResp{w.get(link), w.post(link, url.Values{"csrf": {csrf}, "password": {pw}, "password2": {pw}}), w.post(confirm, url.Values{"csrf": {csrf}, "code": {code}})} {
		wantPage(t, r, 404, "This enrollment link does not work", "ask your administrator for a new one (caadm users reset NAME)")
	}
	// The code that confirmed cannot sign in; the next one can.
	wantPage(t, w.signIn("erin", pw, code), 401, "Wrong user name, password or code.")
	clk.Advance(30 * time.Second)
	if r := w.signIn("erin", pw, oathtool(t, secret, clk.Now())); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in after enrollment: %d %s", r.status, r.body)
	}

	// An expired link.
	resp, err = a.AddUser(ctx, api.AddUserRequest{Name: "late", Logins: []string{"late"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(25 * time.Hour)
	wantPage(t, w.get("/enroll/"+path.Base(resp.EnrollURL)), 404, "unknown, expired or already used")
}

func TestWebAccountAndDevices(t *testing.T) {
	ctx := context.Background()
	a, clk := newTestAuthority(t, nil)
	secret := addUser(t, a, "alice", []string{"alice"}, nil)
	c, base := startServer(t, a)
	w := newWebClient(t, c, base)

	// Without a session: no token, whatever the form carries.
	csrf := match(t, csrfRE, w.get("/").body)
	wantPage(t, w.post("/account/devices", url.Values{"csrf": {csrf}}), http.StatusUnauthorized, "Sign in")

	lr, err := login(a, "alice", pw, oathtool(t, secret, clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	// Certificates: seven issued, the five newest listed, newest first.
	// A host certificate named like the user is not hers.
	var serials []string
	for range 7 {
		clk.Advance(time.Second)
		cert, err := a.SignWithSession(ctx, lr.Session, api.SignUserRequest{PublicKey: authorizedKey(newPub(t))})
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, serialString(cert.Serial))
	}
	if _, err := a.IssueHostCert(ctx, HostCertRequest{Name: "alice", PublicKey: newPub(t), Requester: "test"}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * time.Second)
	if r := w.signIn("alice", pw, oathtool(t, secret, clk.Now())); r.status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d %s", r.status, r.body)
	}
	acct := w.get("/account")
	wantPage(t, acct, 200, "Recent certificates", "No devices registered yet.", "Add a keyhelper device")
	var at []int
	for _, s := range serials {
		at = append(at, strings.Index(acct.body, "<td>"+s+"</td>"))
	}
	if at[0] != -1 || at[1] != -1 || !(at[6] < at[5] && at[5] < at[4] && at[4] < at[3] && at[3] < at[2]) || at[6] == -1 {
		t.Errorf("certificate serials at %v in the page; want the 5 newest, newest first", at)
	}
	if n := strings.Count(acct.body, "<tr><td>"); n != 5 {
		t.Errorf("%d table rows, want 5 certificates", n)
	}
	sessCSRF := match(t, csrfRE, acct.body)

	// With a session but without a valid token: refused, nothing made.
	wantPage(t, w.post("/account/devices", url.Values{}), 403, "Form refused")
	wantPage(t, w.post("/account/devices", url.Values{"csrf": {csrf}}), 403, "Form refused")
	wantPage(t, w.post("/account/devices", url.Values{"csrf": {sessCSRF}}, "Origin", "https://evil.example"), 403, "Form refused")
	if toks, _ := a.Tokens(ctx); len(toks) != 0 {
		t.Fatalf("refused forms made tokens: %+v", toks)
	}

	r := w.post("/account/devices", url.Values{"csrf": {sessCSRF}})
	wantPage(t, r, 200, "New device token", "shown only once")
	tok := match(t, tokenRE, r.body)
	wantCmd := "teleport-keyhelper daemon --server https://ca.test:3080 --auth alice --token " + tok + " --ca-pin " + a.Pin()
	if !strings.Contains(r.body, `<pre id="device-command">`+wantCmd+`</pre>`) {
		t.Fatalf("page lacks the command %q:\n%s", wantCmd, r.body)
	}
	toks, err := a.Tokens(ctx)
	if err != nil || len(toks) != 1 || toks[0].Role != TokenKeyhelper || toks[0].User != "alice" || toks[0].Reusable {
		t.Fatalf("tokens %+v, %v", toks, err)
	}
	evs, _ := a.Audit(ctx, AuditFilter{Type: "token.add"})
	if len(evs) != 1 || evs[0].Actor != "alice" || evs[0].User != "alice" {
		t.Errorf("token.add events %+v, want one by alice", evs)
	}
	// The account page lists the unused token, without its secret.
	acct = w.get("/account")
	wantPage(t, acct, 200, "<code>"+toks[0].ID+"</code>")
	if strings.Contains(acct.body, tok) {
		t.Error("the account page shows the token's secret again")
	}
	// The token is real: it registers a device, which the page lists in
	// place of the used token.
	_, devPEM := newDeviceKey(t)
	dev, err := a.RegisterDevice(ctx, api.RegisterDeviceRequest{Token: tok, User: "alice", PublicKey: devPEM}, "127.0.0.1")
	if err != nil {
		t.Fatalf("RegisterDevice with the page's token: %v", err)
	}
	acct = w.get("/account")
	wantPage(t, acct, 200, `<table id="device-list">`, "<code>"+dev.DeviceID+"</code>")
	if strings.Contains(acct.body, "<code>"+toks[0].ID+"</code>") || strings.Contains(acct.body, "No devices registered yet.") {
		t.Error("the page still lists the used token, or no device")
	}

	// A lock shows on the account page; the session stays.
	if err := a.LockUser(ctx, "alice", api.LockRequest{Reason: "audit"}, "test"); err != nil {
		t.Fatal(err)
	}
	wantPage(t, w.get("/account"), 403, "Account is locked (audit)")
	wantPage(t, w.post("/account/devices", url.Values{"csrf": {sessCSRF}}), 403, "Account is locked (audit)")
}

// TestWebCSRFKey: the key is made once per store and shared, so another
// server on the same store (a restart, another instance) accepts the
// forms of the first.
func TestWebCSRFKey(t *testing.T) {
	a, _ := newTestAuthority(t, nil)
	ctx := context.Background()
	w1, w2 := newWebUI(a), newWebUI(a)
	t1, err := w1.csrfToken(ctx, preBinding("x"))
	if err != nil {
		t.Fatal(err)
	}
	t2, err := w2.csrfToken(ctx, preBinding("x"))
	if err != nil || t1 != t2 {
		t.Fatalf("two servers on one store: %q vs %q (%v)", t1, t2, err)
	}
	if t3, _ := w1.csrfToken(ctx, sessionBinding("x")); t3 == t1 {
		t.Fatal("a session binding and a pre-session binding of the same value share a token")
	}
	it, err := a.store.Get(ctx, csrfKeyName)
	var rec struct{ Key []byte }
	if err != nil || json.Unmarshal(it.Value, &rec) != nil || len(rec.Key) != 32 || bytes.Equal(rec.Key, make([]byte, 32)) {
		t.Fatalf("stored key: %v", err)
	}
}

func TestSentence(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ca: invalid request: password is short", "Password is short."},
		{"already a sentence.", "Already a sentence."},
		{"", ""},
	}
	for _, tt := range tests {
		if got := sentence(tt.in); got != tt.want {
			t.Errorf("sentence(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
