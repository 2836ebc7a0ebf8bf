package ca

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// accountCerts is how many recent certificates the account page lists.
const accountCerts = 5

// accountView is what the account page shows a signed-in user.
type accountView struct {
	User          string
	Roles         []string
	Logins        []string
	SignInExpires time.Time
	// Certs: the newest user certificates issued to the user, newest first.
	Certs []api.IssuedCert
	// Devices: the user's registered keyhelper devices.
	Devices []api.Device
	// Tokens: the user's unused keyhelper device tokens.
	Tokens []api.Token
	// NewToken and Command: a device token just made, shown once, and the
	// command that registers a device with it.
	NewToken *api.AddTokenResponse
	Command  string
}

// account gathers the account page of u.
func (a *Authority) account(ctx context.Context, u *userRecord, s *session) (*accountView, error) {
	g, err := a.userGrant(ctx, u)
	if err != nil {
		return nil, err
	}
	v := &accountView{User: u.Name, Roles: u.Roles, Logins: g.logins, SignInExpires: s.Expires}
	certs, err := a.IssuedCerts(ctx, u.Name, "")
	if err != nil {
		return nil, err
	}
	for _, c := range slices.Backward(certs) {
		if c.Type == "user" && c.User == u.Name {
			v.Certs = append(v.Certs, c)
			if len(v.Certs) == accountCerts {
				break
			}
		}
	}
	if v.Devices, err = a.Devices(ctx, u.Name); err != nil {
		return nil, err
	}
	tokens, err := a.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range tokens {
		if t.Role == TokenKeyhelper && t.User == u.Name {
			v.Tokens = append(v.Tokens, t)
		}
	}
	slices.SortFunc(v.Tokens, func(x, y api.Token) int { return x.Created.Compare(y.Created) })
	return v, nil
}

// signedIn resolves the browser's session. When it has none (or it
// ended, or the account is locked) it answers with the sign-in page and
// returns ok == false.
func (w *webUI) signedIn(rw http.ResponseWriter, r *http.Request, tok string) (*userRecord, *session, bool) {
	u, s, err := w.a.sessionUser(r.Context(), tok)
	var le *LockedError
	switch {
	case err == nil:
		return u, s, true
	case errors.Is(err, ErrSessionExpired):
		clearCookie(rw, cookieSession)
		w.signinForm(rw, r, http.StatusUnauthorized, &webPage{Notice: "Sign in to see your account."})
	case errors.As(err, &le):
		status, msg := w.errorText(rw, r, err)
		w.signinForm(rw, r, status, &webPage{User: "", Error: msg})
	default:
		status, msg := w.errorText(rw, r, err)
		w.message(rw, r, status, "Account", msg)
	}
	return nil, nil, false
}

func (w *webUI) accountPage(rw http.ResponseWriter, r *http.Request) {
	w.showAccount(rw, r, cookieToken(r, cookieSession), nil)
}

// showAccount renders the account page, with a device token just made.
func (w *webUI) showAccount(rw http.ResponseWriter, r *http.Request, tok string, added *api.AddTokenResponse) {
	u, s, ok := w.signedIn(rw, r, tok)
	if !ok {
		return
	}
	v, err := w.a.account(r.Context(), u, s)
	var csrf string
	if err == nil {
		csrf, err = w.csrfToken(r.Context(), sessionBinding(tok))
	}
	if err != nil {
		status, msg := w.errorText(rw, r, err)
		w.message(rw, r, status, "Account", msg)
		return
	}
	if added != nil {
		v.NewToken = added
		v.Command = w.daemonCommand(r, u.Name, added.Secret)
	}
	w.render(rw, r, http.StatusOK, "account", &webPage{Title: "Your account", CSRF: csrf, SignedIn: true, Account: v})
}

// addDevice makes a single-use keyhelper token for the signed-in user
// (audited as token.add with the user as actor) and shows it once.
func (w *webUI) addDevice(rw http.ResponseWriter, r *http.Request, tok string) {
	u, _, ok := w.signedIn(rw, r, tok)
	if !ok {
		return
	}
	resp, err := w.a.AddToken(r.Context(), api.AddTokenRequest{Role: TokenKeyhelper, User: u.Name}, u.Name)
	if err != nil {
		status, msg := w.errorText(rw, r, err)
		w.message(rw, r, status, "Add a device", msg)
		return
	}
	w.showAccount(rw, r, tok, &resp)
}

// daemonCommand is the command that registers a keyhelper device.
func (w *webUI) daemonCommand(r *http.Request, user, token string) string {
	server := strings.TrimSuffix(w.a.cfg.PublicURL, "/")
	if server == "" {
		server = "https://" + r.Host
	}
	return "teleport-keyhelper daemon --server " + server + " --auth " + user + " --token " + token + " --ca-pin " + w.a.Pin()
}
