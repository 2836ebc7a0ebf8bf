package ca

// The web pages (DESIGN.md section 3, "User, browser"): sign-in at /,
// enrollment at /enroll/<token>, the signed-in user's page at /account.
// Server-rendered html/template with one embedded stylesheet and no
// JavaScript, served next to the JSON API by publicHandler.
//
// A web sign-in IS a sign-in session: the page calls Authority.Login, the
// same call as POST /v1/login (lockout, replay protection, per-address
// throttle, audit), and keeps the session token in a cookie.
//
// Cookies are __Host- prefixed (Secure, Path=/, no Domain: a sibling
// host cannot plant them), HttpOnly and SameSite=Strict.
//
// CSRF: every POST form carries a token, HMAC-SHA256(key, binding), where
// binding is the sign-in session token (signed-in forms) or the random
// pre-session cookie __Host-tca_csrf (sign-in and enrollment forms): a
// double-submit whose token an attacker can neither read nor compute.
// The key is 32 random bytes kept in the store ("meta/csrf_key", made on
// first use), so every CA instance on a shared store accepts the others'
// forms and a restart does not void open forms. A POST must also come
// from the same origin: Origin, else Referer, must be this server when
// present, and Sec-Fetch-Site, when present, same-origin.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

//go:embed webui
var webFS embed.FS

// Cookie names. The __Host- prefix makes browsers refuse the cookie
// unless it is Secure, has Path=/ and no Domain.
const (
	cookieSession = "__Host-tca_session"
	cookieCSRF    = "__Host-tca_csrf"
)

const csrfKeyName = "meta/csrf_key"

// webPage is the data of every page template; each page uses its part.
type webPage struct {
	Title  string
	Error  string
	Notice string
	// CSRF is the token the page's forms carry.
	CSRF string
	// SignedIn shows the sign-out button (CSRF is then session-bound).
	SignedIn bool

	// User is the name typed into the sign-in form (kept after an error;
	// the password and code never are).
	User string

	Enroll Enrollment
	Token  string       // the enrollment link's secret, for form actions
	QR     template.URL // data: URI of the QR code PNG

	Account *accountView

	// Link and LinkText: where a message page sends the user next.
	Link, LinkText string
}

// webUI serves the pages of one Server.
type webUI struct {
	a     *Authority
	pages map[string]*template.Template
	css   []byte

	keyMu sync.Mutex
	key   []byte // CSRF key, loaded on first use
}

var webTemplates = []string{"signin", "account", "enroll_password", "enroll_code", "enroll_done", "message"}

func newWebUI(a *Authority) *webUI {
	funcs := template.FuncMap{
		"fmtTime": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
		"expired": func(t time.Time) bool { return !a.now().Before(t) },
	}
	base := template.Must(template.New("layout").Funcs(funcs).ParseFS(webFS, "webui/layout.html"))
	w := &webUI{a: a, pages: map[string]*template.Template{}}
	for _, name := range webTemplates {
		w.pages[name] = template.Must(template.Must(base.Clone()).ParseFS(webFS, "webui/"+name+".html"))
	}
	css, err := webFS.ReadFile("webui/style.css")
	if err != nil {
		panic(err) // embedded at build time
	}
	w.css = css
	return w
}

// mountWeb adds the web pages to the public mux.
func (s *Server) mountWeb(m *http.ServeMux) {
	w := newWebUI(s.a)
	m.HandleFunc("GET /{$}", w.signinPage)
	m.HandleFunc("POST /signin", w.preSessionForm(w.signin))
	m.HandleFunc("POST /signout", w.sessionForm(w.signout))
	m.HandleFunc("GET /account", w.accountPage)
	m.HandleFunc("POST /account/devices", w.sessionForm(w.addDevice))
	m.HandleFunc("GET /enroll/{token}", w.enrollPage)
	m.HandleFunc("POST /enroll/{token}", w.preSessionForm(w.enrollPassword))
	m.HandleFunc("POST /enroll/{token}/confirm", w.preSessionForm(w.enrollConfirm))
	m.HandleFunc("GET /assets/style.css", w.style)
}

// webHeaders are the security headers of every response of the public
// listener (securityHeaders sets them). The policy allows the one
// stylesheet, data: images (the QR code), forms to this origin only, and
// nothing else: no script, no frames, no external fetches.
//
// Referrer-Policy is same-origin rather than no-referrer: under
// no-referrer browsers send "Origin: null" with form POSTs, which would
// defeat the same-origin check. same-origin sends the Referer (with an
// enrollment link's token) only back to the CA, which knows it already;
// the pages load and link nothing from other origins.
var webHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
	"X-Frame-Options":         "DENY",
	"Referrer-Policy":         "same-origin",
}

func (w *webUI) style(rw http.ResponseWriter, r *http.Request) {
	rw.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = rw.Write(w.css)
}

// render writes a page; a template failure becomes a plain 500.
func (w *webUI) render(rw http.ResponseWriter, r *http.Request, status int, name string, p *webPage) {
	var buf bytes.Buffer
	if err := w.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		w.a.log.Error("web: rendering page", "page", name, "path", r.URL.Path, "err", err)
		http.Error(rw, "internal error in teleport-ca; the CA log has details", http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(status)
	_, _ = rw.Write(buf.Bytes())
}

// message renders a page that only says something.
func (w *webUI) message(rw http.ResponseWriter, r *http.Request, status int, title, msg string) {
	w.render(rw, r, status, "message", &webPage{Title: title, Error: msg, Link: "/", LinkText: "Go to the sign-in page"})
}

// errorText turns an error into a status and a sentence for a page.
// Unexpected errors reach the log in full and the page as a request id.
func (w *webUI) errorText(rw http.ResponseWriter, r *http.Request, err error) (int, string) {
	var te *ThrottledError
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, ErrBadCredentials):
		return http.StatusUnauthorized, "Wrong user name, password or code."
	case errors.As(err, &te):
		rw.Header().Set("Retry-After", strconv.Itoa(int(te.RetryAfter.Seconds())+1))
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, "The form is too large."
	case errors.Is(err, ErrBadEnrollment):
		return http.StatusNotFound, sentence(err.Error())
	case errors.Is(err, ErrEnrollCode), errors.Is(err, ErrEnrollPasswordFirst):
		return http.StatusBadRequest, sentence(err.Error())
	}
	status, _ := classify(err)
	if status == http.StatusInternalServerError {
		id := fmt.Sprintf("%x", time.Now().UnixNano())
		w.a.log.Error("web request failed", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err, "request_id", id)
		return status, "Something went wrong in teleport-ca. Try again; if it keeps failing, give your administrator this request id, which the CA log explains: " + id + "."
	}
	return status, sentence(err.Error())
}

// sentence makes an error message a sentence for a page.
func sentence(s string) string {
	s = strings.TrimPrefix(s, "ca: ")
	s = strings.TrimPrefix(s, ErrInvalid.Error()+": ")
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	s = string(unicode.ToUpper(r)) + s[n:]
	if !strings.HasSuffix(s, ".") && !strings.HasSuffix(s, "?") {
		s += "."
	}
	return s
}

// --- cookies ---

func setCookie(rw http.ResponseWriter, name, value string, expires time.Time) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode}
	if !expires.IsZero() {
		c.Expires = expires.UTC()
	}
	http.SetCookie(rw, c)
}

func clearCookie(rw http.ResponseWriter, name string) {
	http.SetCookie(rw, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// cookieToken returns the value of cookie name if it is a well-formed
// random token (randomToken's 32 bytes in base64url), else "".
func cookieToken(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil || len(c.Value) != 43 {
		return ""
	}
	if b, err := base64.RawURLEncoding.DecodeString(c.Value); err != nil || len(b) != 32 {
		return ""
	}
	return c.Value
}

// preSession returns the pre-session CSRF cookie's value, setting a new
// one if the browser has none.
func (w *webUI) preSession(rw http.ResponseWriter, r *http.Request) (string, error) {
	if v := cookieToken(r, cookieCSRF); v != "" {
		return v, nil
	}
	v, err := randomToken(w.a.rand)
	if err != nil {
		return "", err
	}
	setCookie(rw, cookieCSRF, v, time.Time{})
	return v, nil
}

// --- CSRF ---

// csrfKey loads (or, the first time on this store, makes) the CSRF key.
func (w *webUI) csrfKey(ctx context.Context) ([]byte, error) {
	w.keyMu.Lock()
	defer w.keyMu.Unlock()
	if w.key != nil {
		return w.key, nil
	}
	var rec struct {
		Key []byte `json:"key"`
	}
	it, err := w.a.store.Get(ctx, csrfKeyName)
	if errors.Is(err, store.ErrNotFound) {
		rec.Key = make([]byte, 32)
		if _, err := io.ReadFull(w.a.rand, rec.Key); err != nil {
			return nil, err
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return nil, err
		}
		_, err = w.a.store.Create(ctx, csrfKeyName, b)
		if errors.Is(err, store.ErrExists) { // another instance won
			it, err = w.a.store.Get(ctx, csrfKeyName)
			if err == nil {
				err = json.Unmarshal(it.Value, &rec)
			}
		}
		if err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	} else if err := json.Unmarshal(it.Value, &rec); err != nil {
		return nil, fmt.Errorf("ca: damaged %s: %w", csrfKeyName, err)
	}
	if len(rec.Key) < 32 {
		return nil, fmt.Errorf("ca: damaged %s: key of %d bytes", csrfKeyName, len(rec.Key))
	}
	w.key = rec.Key
	return w.key, nil
}

// Bindings: what a CSRF token is bound to.
func sessionBinding(token string) string { return "session\x00" + token }
func preBinding(cookie string) string    { return "pre\x00" + cookie }

func (w *webUI) csrfToken(ctx context.Context, binding string) (string, error) {
	key, err := w.csrfKey(ctx)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("teleport-ca csrf v1\x00" + binding))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

// Why a form was refused; shown on the 403 page.
var (
	errCrossOrigin = errors.New("this form was sent from another site. teleport-ca accepts forms only from its own pages: open the sign-in page yourself and try again")
	errNoCookie    = errors.New("your browser did not send the cookie this form needs. Allow cookies for this site, reload the page and submit the form again")
	errBadCSRF     = errors.New("this form has expired or belongs to another session of this browser. Reload the page and submit the form again")
)

// sameOrigin refuses a request that a browser says came from elsewhere:
// Origin (or, without it, Referer) must be this server when present, and
// Sec-Fetch-Site, when present, same-origin (or none: typed by the user).
func sameOrigin(r *http.Request) error {
	self := "https://" + r.Host
	if o := r.Header.Get("Origin"); o != "" {
		if !strings.EqualFold(o, self) {
			return errCrossOrigin
		}
	} else if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		if err != nil || !strings.EqualFold(u.Scheme+"://"+u.Host, self) {
			return errCrossOrigin
		}
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return errCrossOrigin
	}
	return nil
}

// parseForm reads a urlencoded form body of at most api.MaxBodyBytes.
func parseForm(rw http.ResponseWriter, r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return invalidf("the form must be sent as application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(rw, r.Body, api.MaxBodyBytes)
	return r.ParseForm()
}

// checkForm runs the checks every POST passes before its handler: same
// origin, a parseable form, and a CSRF token that matches binding.
func (w *webUI) checkForm(rw http.ResponseWriter, r *http.Request, binding string) bool {
	if err := sameOrigin(r); err != nil {
		w.a.log.Warn("web: cross-origin form refused", "path", r.URL.Path, "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "referer", r.Header.Get("Referer"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
		w.message(rw, r, http.StatusForbidden, "Form refused", sentence(err.Error()))
		return false
	}
	if err := parseForm(rw, r); err != nil {
		status, msg := w.errorText(rw, r, err)
		w.message(rw, r, status, "Form refused", msg)
		return false
	}
	want, err := w.csrfToken(r.Context(), binding)
	if err != nil {
		status, msg := w.errorText(rw, r, err)
		w.message(rw, r, status, "Form refused", msg)
		return false
	}
	if !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(want)) {
		w.a.log.Info("web: form with a bad CSRF token refused", "path", r.URL.Path, "remote", r.RemoteAddr)
		w.message(rw, r, http.StatusForbidden, "Form refused", sentence(errBadCSRF.Error()))
		return false
	}
	return true
}

// preSessionForm guards a form sent before sign-in (sign-in, enrollment):
// its token is bound to the pre-session cookie.
func (w *webUI) preSessionForm(h http.HandlerFunc) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		c := cookieToken(r, cookieCSRF)
		if c == "" {
			if err := sameOrigin(r); err != nil {
				w.message(rw, r, http.StatusForbidden, "Form refused", sentence(err.Error()))
				return
			}
			w.message(rw, r, http.StatusForbidden, "Form refused", sentence(errNoCookie.Error()))
			return
		}
		if w.checkForm(rw, r, preBinding(c)) {
			h(rw, r)
		}
	}
}

// sessionForm guards a form of a signed-in page: its token is bound to
// the sign-in session. Without a session cookie the sign-in page answers.
func (w *webUI) sessionForm(h func(rw http.ResponseWriter, r *http.Request, session string)) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		tok := cookieToken(r, cookieSession)
		if tok == "" {
			if err := sameOrigin(r); err != nil {
				w.message(rw, r, http.StatusForbidden, "Form refused", sentence(err.Error()))
				return
			}
			w.signinForm(rw, r, http.StatusUnauthorized, &webPage{Error: sentence(ErrSessionExpired.Error())})
			return
		}
		if w.checkForm(rw, r, sessionBinding(tok)) {
			h(rw, r, tok)
		}
	}
}
