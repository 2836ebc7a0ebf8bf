package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// mountDevices adds the device endpoints to the public mux.
func (s *Server) mountDevices(m *http.ServeMux) {
	m.HandleFunc("POST "+api.PathDeviceRegister, s.handleDeviceRegister)
	m.HandleFunc("POST "+api.PathDeviceRenew, s.handleDeviceRenew)
	m.HandleFunc("GET "+api.PathDeviceSignIn, s.handleDeviceSignIn)
	m.HandleFunc("POST "+api.PathDeviceCert, s.handleDeviceCert)
}

// device authenticates the request's client certificate, or writes the
// refusal and returns nil.
func (s *Server) device(w http.ResponseWriter, r *http.Request) *device {
	d, err := s.a.authenticateDevice(r.Context(), clientLeaf(r))
	if err != nil {
		s.writeErr(w, r, err)
		return nil
	}
	return d
}

func (s *Server) handleDeviceSignIn(w http.ResponseWriter, r *http.Request) {
	d := s.device(w, r)
	if d == nil {
		return
	}
	q := r.URL.Query()
	have := api.SignInState{SignedIn: q.Get("signed_in") == "true"}
	if v := q.Get("expires"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			s.writeErr(w, r, invalidf("expires %q is not an RFC 3339 time", v))
			return
		}
		have.Expires = t
	}
	wait := MaxSignInWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			s.writeErr(w, r, invalidf("wait %q is not a duration", v))
			return
		}
		wait = d
	}
	s.holdOpen(w, min(wait, MaxSignInWait))
	st, err := s.a.WaitSignIn(r.Context(), d, have, wait)
	s.reply(w, r, st, err)
}

func (s *Server) handleDeviceCert(w http.ResponseWriter, r *http.Request) {
	d := s.device(w, r)
	if d == nil {
		return
	}
	req, err := readRequest[api.DeviceCertRequest](w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	c, err := s.a.IssueDeviceCert(r.Context(), d, req)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, CertView(c))
}

func (s *Server) handleDeviceRegister(w http.ResponseWriter, r *http.Request) {
	exchangeToken(s, w, r, s.a.RegisterDevice)
}

// exchangeToken serves an endpoint that trades a token for an identity.
// Token guesses count against the client address like failed sign-ins.
func exchangeToken[Req, Resp any](s *Server, w http.ResponseWriter, r *http.Request, fn func(context.Context, Req, string) (Resp, error)) {
	req, err := readRequest[Req](w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	now := s.a.now()
	if err := s.a.throttle.check(remoteHost(r), now); err != nil {
		s.writeErr(w, r, err)
		return
	}
	resp, err := fn(r.Context(), req, remoteHost(r))
	if errors.Is(err, ErrBadToken) {
		s.a.countFailure(r.Context(), remoteHost(r), now)
	}
	s.reply(w, r, resp, err)
}

// clientLeaf returns the client certificate the TLS layer verified
// against the TLS root, or nil.
func clientLeaf(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

func (s *Server) handleDeviceRenew(w http.ResponseWriter, r *http.Request) {
	leaf := clientLeaf(r)
	if leaf == nil {
		s.writeErr(w, r, ErrBadDevice)
		return
	}
	id, err := s.a.RenewDevice(r.Context(), leaf, remoteHost(r))
	s.reply(w, r, id, err)
}
