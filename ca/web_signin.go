package ca

import (
	"errors"
	"net/http"
	"strings"

	"github.com/opensshca/suite/ca/api"
)

// signinPage serves / : the sign-in form, or the account page's address
// for a browser that is signed in already.
func (w *webUI) signinPage(rw http.ResponseWriter, r *http.Request) {
	if tok := cookieToken(r, cookieSession); tok != "" {
		if _, _, err := w.a.sessionUser(r.Context(), tok); err == nil {
			http.Redirect(rw, r, "/account", http.StatusSeeOther)
			return
		}
	}
	w.signinForm(rw, r, http.StatusOK, &webPage{})
}

// signinForm renders the sign-in page with p's error or notice.
func (w *webUI) signinForm(rw http.ResponseWriter, r *http.Request, status int, p *webPage) {
	c, err := w.preSession(rw, r)
	if err == nil {
		p.CSRF, err = w.csrfToken(r.Context(), preBinding(c))
	}
	if err != nil {
		status, msg := w.errorText(rw, r, err)
		w.message(rw, r, status, "Sign in", msg)
		return
	}
	p.Title = "Sign in"
	w.render(rw, r, status, "signin", p)
}

// signin handles the sign-in form with Authority.Login: the same lockout,
// replay protection, address throttle and audit as POST /v1/login, and
// the same kind of session, kept in a cookie.
func (w *webUI) signin(rw http.ResponseWriter, r *http.Request) {
	user := strings.TrimSpace(r.PostForm.Get("user"))
	req := api.LoginRequest{
		User:     user,
		Password: r.PostForm.Get("password"),
		TOTP:     strings.ReplaceAll(strings.TrimSpace(r.PostForm.Get("code")), " ", ""),
	}
	resp, err := w.a.Login(r.Context(), req, remoteHost(r))
	if err != nil {
		status, msg := w.errorText(rw, r, err)
		if len(user) > 64 || ValidateUserName(user) != nil {
			user = "" // only a plausible name goes back into the form
		}
		w.signinForm(rw, r, status, &webPage{User: user, Error: msg})
		return
	}
	// A session this browser held before (another tab, another user)
	// ends: its cookie is about to be replaced, and a session no browser
	// can end would keep the user's devices signed in.
	if old := cookieToken(r, cookieSession); old != "" && old != resp.Session {
		if err := w.a.Logout(r.Context(), old, remoteHost(r)); err != nil && !errors.Is(err, ErrSessionExpired) {
			w.a.log.Error("web: ending the replaced session", "err", err)
		}
	}
	setCookie(rw, cookieSession, resp.Session, resp.Expires)
	http.Redirect(rw, r, "/account", http.StatusSeeOther)
}

// signout ends the sign-in session (Authority.Logout, audited) and
// clears its cookie.
func (w *webUI) signout(rw http.ResponseWriter, r *http.Request, session string) {
	err := w.a.Logout(r.Context(), session, remoteHost(r))
	clearCookie(rw, cookieSession)
	if err != nil && !errors.Is(err, ErrSessionExpired) {
		status, msg := w.errorText(rw, r, err)
		w.message(rw, r, status, "Sign out", msg)
		return
	}
	http.Redirect(rw, r, "/", http.StatusSeeOther)
}
