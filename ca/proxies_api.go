package ca

import (
	"io"
	"net/http"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// recordingTransferTimeout bounds one recording upload or export; the
// server's usual 15 s read timeout is far too short for a long session.
const recordingTransferTimeout = 30 * time.Minute

// maxListBody caps a proxy's session list and audit batch.
const maxListBody = 4 << 20

// mountProxies adds the proxy endpoints to the public mux. Every one but
// join needs the proxy's client certificate.
func (s *Server) mountProxies(m *http.ServeMux) {
	m.HandleFunc("POST "+api.PathProxyJoin, func(w http.ResponseWriter, r *http.Request) {
		exchangeToken(s, w, r, s.a.JoinProxy)
	})
	m.HandleFunc("POST "+api.PathProxyRenew, func(w http.ResponseWriter, r *http.Request) {
		req, err := readRequest[api.ProxyRenewRequest](w, r)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		id, err := s.a.RenewProxy(r.Context(), clientLeaf(r), req, remoteHost(r))
		s.reply(w, r, id, err)
	})
	m.HandleFunc("GET "+api.PathProxyPolicy, s.proxyOnly(s.handleProxyPolicy))
	m.HandleFunc("POST "+api.PathProxySessionCert, s.proxyOnly(func(w http.ResponseWriter, r *http.Request, p *authenticatedProxy) {
		req, err := readRequest[api.SessionCertRequest](w, r)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		c, err := s.a.ProxySessionCert(r.Context(), p, req)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, CertView(c))
	}))
	m.HandleFunc("POST "+api.PathProxyTargetCert, s.proxyOnly(func(w http.ResponseWriter, r *http.Request, p *authenticatedProxy) {
		req, err := readRequest[api.TargetCertRequest](w, r)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		c, err := s.a.ProxyTargetCert(r.Context(), p, req)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, CertView(c))
	}))
	m.HandleFunc("PUT "+api.PathProxySessions, s.proxyOnly(func(w http.ResponseWriter, r *http.Request, p *authenticatedProxy) {
		req, err := readRequestLimit[api.ActiveSessions](w, r, maxListBody)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		s.reply(w, r, struct{}{}, s.a.PutProxySessions(r.Context(), p, req))
	}))
	m.HandleFunc("GET "+api.PathProxySessions, s.proxyOnly(func(w http.ResponseWriter, r *http.Request, p *authenticatedProxy) {
		v, err := s.a.Sessions(r.Context())
		s.reply(w, r, v, err)
	}))
	m.HandleFunc("POST "+api.PathProxyAudit, s.proxyOnly(func(w http.ResponseWriter, r *http.Request, p *authenticatedProxy) {
		req, err := readRequestLimit[[]api.ProxyEvent](w, r, maxListBody)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		s.reply(w, r, struct{}{}, s.a.ProxyAudit(r.Context(), p, req))
	}))
	m.HandleFunc("PUT "+api.PathProxyRecording+"{id}", s.proxyOnly(func(w http.ResponseWriter, r *http.Request, p *authenticatedProxy) {
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(recordingTransferTimeout))
		_ = rc.SetWriteDeadline(time.Now().Add(recordingTransferTimeout))
		rec, err := s.a.StoreRecording(r.Context(), p, r.PathValue("id"), r.Body)
		s.reply(w, r, rec, err)
	}))
}

// proxyOnly authenticates the caller as a joined proxy.
func (s *Server) proxyOnly(h func(http.ResponseWriter, *http.Request, *authenticatedProxy)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.a.authenticateProxy(r.Context(), clientLeaf(r))
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		h(w, r, p)
	}
}

func (s *Server) handleProxyPolicy(w http.ResponseWriter, r *http.Request, p *authenticatedProxy) {
	q := r.URL.Query()
	wait := MaxPolicyWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			s.writeErr(w, r, invalidf("wait %q is not a duration", v))
			return
		}
		wait = d
	}
	s.holdOpen(w, min(wait, MaxPolicyWait))
	pol, err := s.a.ProxyPolicy(r.Context(), p, q.Get("hash"), wait, remoteHost(r))
	s.reply(w, r, pol, err)
}

// mountAdminProxies adds the proxy, session and recording admin routes.
func (s *Server) mountAdminProxies(m *http.ServeMux) {
	m.HandleFunc("GET "+api.PathAdminProxies, func(w http.ResponseWriter, r *http.Request) {
		v, err := s.a.Proxies(r.Context())
		s.reply(w, r, v, err)
	})
	m.HandleFunc("DELETE "+api.PathAdminProxy+"{name}", func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, r, struct{}{}, s.a.RemoveProxy(r.Context(), r.PathValue("name"), actor(r)))
	})
	m.HandleFunc("GET "+api.PathAdminSessions, func(w http.ResponseWriter, r *http.Request) {
		v, err := s.a.Sessions(r.Context())
		s.reply(w, r, v, err)
	})
	m.HandleFunc("GET "+api.PathAdminRecording, func(w http.ResponseWriter, r *http.Request) {
		v, err := s.a.Recordings(r.Context())
		s.reply(w, r, v, err)
	})
	m.HandleFunc("GET "+api.PathAdminRecording+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		f, err := s.a.OpenRecording(r.Context(), r.PathValue("id"))
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		defer f.Close()
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(recordingTransferTimeout))
		w.Header().Set("Content-Type", "application/x-asciicast")
		_, _ = io.Copy(w, f)
	})
}
