package ca

import (
	"net/http"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// mountNodes adds the node endpoints to the public mux.
func (s *Server) mountNodes(m *http.ServeMux) {
	m.HandleFunc("POST "+api.PathNodeJoin, s.handleNodeJoin)
	m.HandleFunc("POST "+api.PathNodeRenew, s.handleNodeRenew)
	m.HandleFunc("GET "+api.PathNodePolicy, s.handleNodePolicy)
	m.HandleFunc("POST "+api.PathNodeAudit, s.handleNodeAudit)
}

func (s *Server) handleNodeAudit(w http.ResponseWriter, r *http.Request) {
	n, err := s.a.authenticateNode(r.Context(), clientLeaf(r))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	evs, err := readRequestLimit[[]api.NodeDenial](w, r, maxListBody)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.reply(w, r, struct{}{}, s.a.NodeAudit(r.Context(), n, evs))
}

func (s *Server) handleNodeJoin(w http.ResponseWriter, r *http.Request) {
	exchangeToken(s, w, r, s.a.JoinNode)
}

func (s *Server) handleNodeRenew(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest[api.NodeRenewRequest](w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	id, err := s.a.RenewNode(r.Context(), clientLeaf(r), req, remoteHost(r))
	s.reply(w, r, id, err)
}

func (s *Server) handleNodePolicy(w http.ResponseWriter, r *http.Request) {
	n, err := s.a.authenticateNode(r.Context(), clientLeaf(r))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
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
	ctx := r.Context()
	s.holdOpen(w, min(wait, MaxPolicyWait))
	p, err := s.a.NodePolicy(ctx, n, q.Get("hash"), wait, remoteHost(r))
	s.reply(w, r, p, err)
}
