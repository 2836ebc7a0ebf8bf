package ca

import (
	"crypto/x509"
	"errors"
	"net/http"

	"github.com/opensshca/suite/ca/api"
)

// mountDevices adds the device endpoints to the public mux.
func (s *Server) mountDevices(m *http.ServeMux) {
	m.HandleFunc("POST "+api.PathDeviceRegister, s.handleDeviceRegister)
	m.HandleFunc("POST "+api.PathDeviceRenew, s.handleDeviceRenew)
}

func (s *Server) handleDeviceRegister(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest[api.RegisterDeviceRequest](w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	// Token guesses count against the address like failed sign-ins.
	now := s.a.now()
	if err := s.a.throttle.check(remoteHost(r), now); err != nil {
		s.writeErr(w, r, err)
		return
	}
	id, err := s.a.RegisterDevice(r.Context(), req, remoteHost(r))
	if errors.Is(err, ErrBadToken) {
		s.a.countFailure(r.Context(), remoteHost(r), now)
	}
	s.reply(w, r, id, err)
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
