package ca

import (
	"bytes"
	"encoding/base64"
	"errors"
	"html/template"
	"image/png"
	"net/http"
	"strings"

	"github.com/pquerna/otp"
)

// The enrollment pages; the logic is in enroll.go.

// enrollPage serves GET /enroll/{token}: the form to choose a password.
func (w *webUI) enrollPage(rw http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	e, err := w.a.Enrollment(r.Context(), token)
	if err != nil {
		w.enrollError(rw, r, err)
		return
	}
	w.passwordForm(rw, r, http.StatusOK, token, e, "")
}

func (w *webUI) passwordForm(rw http.ResponseWriter, r *http.Request, status int, token string, e Enrollment, errText string) {
	p := &webPage{Title: "Set up your account", Enroll: e, Token: token, Error: errText}
	if !w.preSessionCSRF(rw, r, p) {
		return
	}
	w.render(rw, r, status, "enroll_password", p)
}

func (w *webUI) codeForm(rw http.ResponseWriter, r *http.Request, status int, token string, e Enrollment, errText string) {
	qr, err := qrDataURI(e.OTPAuthURI)
	if err != nil {
		w.enrollError(rw, r, err)
		return
	}
	p := &webPage{Title: "Set up your authenticator", Enroll: e, Token: token, QR: qr, Error: errText}
	if !w.preSessionCSRF(rw, r, p) {
		return
	}
	w.render(rw, r, status, "enroll_code", p)
}

// preSessionCSRF fills in the CSRF token of a pre-session page.
func (w *webUI) preSessionCSRF(rw http.ResponseWriter, r *http.Request, p *webPage) bool {
	c, err := w.preSession(rw, r)
	if err == nil {
		p.CSRF, err = w.csrfToken(r.Context(), preBinding(c))
	}
	if err != nil {
		w.enrollError(rw, r, err)
		return false
	}
	return true
}

// enrollError answers a refused enrollment step.
func (w *webUI) enrollError(rw http.ResponseWriter, r *http.Request, err error) {
	status, msg := w.errorText(rw, r, err)
	title := "Enrollment"
	if errors.Is(err, ErrBadEnrollment) {
		title = "This enrollment link does not work"
	}
	w.message(rw, r, status, title, msg)
}

// enrollPassword handles the password form: on success it shows the new
// TOTP secret and asks for one code.
func (w *webUI) enrollPassword(rw http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	pw := r.PostForm.Get("password")
	if pw != r.PostForm.Get("password2") {
		e, err := w.a.Enrollment(r.Context(), token)
		if err != nil {
			w.enrollError(rw, r, err)
			return
		}
		w.passwordForm(rw, r, http.StatusBadRequest, token, e, "The two passwords are not the same; type the same password twice.")
		return
	}
	e, err := w.a.EnrollPassword(r.Context(), token, pw)
	switch {
	case errors.Is(err, ErrInvalid):
		e, err2 := w.a.Enrollment(r.Context(), token)
		if err2 != nil {
			w.enrollError(rw, r, err2)
			return
		}
		status, msg := w.errorText(rw, r, err)
		w.passwordForm(rw, r, status, token, e, msg)
	case err != nil:
		w.enrollError(rw, r, err)
	default:
		w.codeForm(rw, r, http.StatusOK, token, e, "")
	}
}

// enrollConfirm handles the code form: a right code activates the
// account; a wrong one shows the same secret again.
func (w *webUI) enrollConfirm(rw http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	code := strings.ReplaceAll(strings.TrimSpace(r.PostForm.Get("code")), " ", "")
	e, err := w.a.EnrollConfirm(r.Context(), token, code, remoteHost(r))
	switch {
	case errors.Is(err, ErrEnrollCode):
		status, msg := w.errorText(rw, r, err)
		w.codeForm(rw, r, status, token, e, msg)
	case errors.Is(err, ErrEnrollPasswordFirst):
		status, msg := w.errorText(rw, r, err)
		w.passwordForm(rw, r, status, token, e, msg)
	case err != nil:
		w.enrollError(rw, r, err)
	default:
		w.render(rw, r, http.StatusOK, "enroll_done", &webPage{Title: "Account active", Enroll: e})
	}
}

// qrDataURI renders an otpauth URI as a QR code PNG in a data: URI, so
// the page loads nothing from elsewhere (the policy allows data: images).
func qrDataURI(uri string) (template.URL, error) {
	k, err := otp.NewKeyFromURL(uri)
	if err != nil {
		return "", err
	}
	img, err := k.Image(256, 256)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", err
	}
	// The URI is built here from PNG bytes: safe to mark as a URL.
	return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes())), nil
}
