package ca

import (
	"net/http"
	"strconv"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// adminHandler serves caadm over the admin socket. Every request passes
// the SO_PEERCRED check first; the socket's file mode is a second wall,
// not the only one.
func (s *Server) adminHandler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET "+api.PathAdminUsers, s.adminUsers)
	m.HandleFunc("POST "+api.PathAdminUsers, s.adminAddUser)
	m.HandleFunc("DELETE "+api.PathAdminUser+"{name}", s.adminRemoveUser)
	m.HandleFunc("POST "+api.PathAdminUser+"{name}/lock", s.adminLock)
	m.HandleFunc("POST "+api.PathAdminUser+"{name}/unlock", s.adminUnlock)
	m.HandleFunc("PATCH "+api.PathAdminUser+"{name}", s.adminUpdateUser)
	m.HandleFunc("POST "+api.PathAdminUser+"{name}/reset", s.adminResetUser)
	m.HandleFunc("GET "+api.PathAdminRoles, s.adminRoles)
	m.HandleFunc("POST "+api.PathAdminRoles, s.adminAddRole)
	m.HandleFunc("DELETE "+api.PathAdminRole+"{name}", s.adminRemoveRole)
	m.HandleFunc("GET "+api.PathAdminTokens, s.adminTokens)
	m.HandleFunc("POST "+api.PathAdminTokens, s.adminAddToken)
	m.HandleFunc("DELETE "+api.PathAdminToken+"{id}", s.adminRemoveToken)
	m.HandleFunc("POST "+api.PathAdminSign, s.adminSign)
	m.HandleFunc("GET "+api.PathAdminCA, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.a.InfoWithProxies(r.Context()))
	})
	m.HandleFunc("GET "+api.PathAdminAudit, s.adminAudit)
	m.HandleFunc("GET "+api.PathAdminBackup, func(w http.ResponseWriter, r *http.Request) {
		b, err := s.a.Backup(r.Context(), r.URL.Query().Get("keys") == "1", actor(r))
		s.reply(w, r, b, err)
	})
	m.HandleFunc("GET "+api.PathAdminCerts, s.adminCerts)
	m.HandleFunc("GET "+api.PathAdminDevices, func(w http.ResponseWriter, r *http.Request) {
		v, err := s.a.Devices(r.Context(), r.URL.Query().Get("user"))
		s.reply(w, r, v, err)
	})
	m.HandleFunc("POST "+api.PathAdminDevice+"{user}/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, r, struct{}{}, s.a.RevokeDevice(r.Context(), r.PathValue("user"), r.PathValue("id"), actor(r)))
	})
	m.HandleFunc("GET "+api.PathAdminNodes, func(w http.ResponseWriter, r *http.Request) {
		v, err := s.a.Nodes(r.Context())
		s.reply(w, r, v, err)
	})
	m.HandleFunc("DELETE "+api.PathAdminNode+"{name}", func(w http.ResponseWriter, r *http.Request) {
		s.reply(w, r, struct{}{}, s.a.RemoveNode(r.Context(), r.PathValue("name"), actor(r)))
	})
	m.HandleFunc("POST "+api.PathAdminRevoke, func(w http.ResponseWriter, r *http.Request) {
		req, err := readRequest[api.RevokeRequest](w, r)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		v, err := s.a.Revoke(r.Context(), req, actor(r))
		s.reply(w, r, v, err)
	})
	m.HandleFunc("GET "+api.PathAdminRevoked, func(w http.ResponseWriter, r *http.Request) {
		v, err := s.a.Revoked(r.Context())
		s.reply(w, r, v, err)
	})
	s.mountAdminProxies(m)
	return s.requireAdmin(m)
}

func (s *Server) requireAdmin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := peerFrom(r.Context())
		if !ok || !s.admin.allows(p) {
			s.log.Warn("admin socket: refused peer", "uid", p.UID, "gid", p.GID, "pid", p.PID, "path", r.URL.Path)
			who := p.String()
			if !ok {
				who = "admin(no peer credentials)"
			}
			s.auditRefused(r.Context(), "admin.refused", who, "", map[string]string{
				"uid": strconv.Itoa(p.UID), "gid": strconv.Itoa(p.GID), "pid": strconv.Itoa(p.PID),
				"method": r.Method, "path": cutField(r.URL.EscapedPath(), 256),
				"reason": "not root, the CA's user or the admin group",
			})
			writeJSON(w, http.StatusForbidden, api.Error{Code: api.CodeForbidden,
				Message: "admin socket: uid " + strconv.Itoa(p.UID) + " may not administer this CA (root, the CA's user or the admin group only)"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

func actor(r *http.Request) string {
	p, _ := peerFrom(r.Context())
	return p.String()
}

// reply writes v, or the error.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) adminUsers(w http.ResponseWriter, r *http.Request) {
	v, err := s.a.Users(r.Context())
	s.reply(w, r, v, err)
}

func (s *Server) adminAddUser(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest[api.AddUserRequest](w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	v, err := s.a.AddUser(r.Context(), req, actor(r))
	s.reply(w, r, v, err)
}

func (s *Server) adminRemoveUser(w http.ResponseWriter, r *http.Request) {
	s.reply(w, r, struct{}{}, s.a.RemoveUser(r.Context(), r.PathValue("name"), actor(r)))
}

func (s *Server) adminLock(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest[api.LockRequest](w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.reply(w, r, struct{}{}, s.a.LockUser(r.Context(), r.PathValue("name"), req, actor(r)))
}

func (s *Server) adminUnlock(w http.ResponseWriter, r *http.Request) {
	s.reply(w, r, struct{}{}, s.a.UnlockUser(r.Context(), r.PathValue("name"), actor(r)))
}

func (s *Server) adminUpdateUser(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest[api.UpdateUserRequest](w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	v, err := s.a.UpdateUser(r.Context(), r.PathValue("name"), req, actor(r))
	s.reply(w, r, v, err)
}

func (s *Server) adminResetUser(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest[api.ResetUserRequest](w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	v, err := s.a.ResetUser(r.Context(), r.PathValue("name"), req, actor(r))
	s.reply(w, r, v, err)
}

func (s *Server) adminRoles(w http.ResponseWriter, r *http.Request) {
	v, err := s.a.Roles(r.Context())
	s.reply(w, r, v, err)
}

func (s *Server) adminAddRole(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest[api.Role](w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	v, err := s.a.AddRole(r.Context(), req, actor(r))
	s.reply(w, r, v, err)
}

func (s *Server) adminRemoveRole(w http.ResponseWriter, r *http.Request) {
	s.reply(w, r, struct{}{}, s.a.RemoveRole(r.Context(), r.PathValue("name"), actor(r)))
}

func (s *Server) adminTokens(w http.ResponseWriter, r *http.Request) {
	v, err := s.a.Tokens(r.Context())
	s.reply(w, r, v, err)
}

func (s *Server) adminAddToken(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest[api.AddTokenRequest](w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	v, err := s.a.AddToken(r.Context(), req, actor(r))
	s.reply(w, r, v, err)
}

func (s *Server) adminRemoveToken(w http.ResponseWriter, r *http.Request) {
	s.reply(w, r, struct{}{}, s.a.RemoveToken(r.Context(), r.PathValue("id"), actor(r)))
}

func (s *Server) adminSign(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest[api.AdminSignRequest](w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	c, err := s.a.AdminSign(r.Context(), req, actor(r))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, CertView(c))
}

func (s *Server) adminAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := AuditFilter{User: q.Get("user"), Type: q.Get("type")}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			s.writeErr(w, r, invalidf("since %q is not an RFC 3339 time", v))
			return
		}
		f.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			s.writeErr(w, r, invalidf("limit %q is not a non-negative number", v))
			return
		}
		f.Limit = n
	}
	v, err := s.a.Audit(r.Context(), f)
	s.reply(w, r, v, err)
}

func (s *Server) adminCerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v, err := s.a.IssuedCerts(r.Context(), q.Get("user"), q.Get("serial"))
	s.reply(w, r, v, err)
}
