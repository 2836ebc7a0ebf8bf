package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// ServerConfig configures the HTTPS and admin listeners.
type ServerConfig struct {
	// Listener for the HTTPS API; nil serves no API (admin only).
	Listener net.Listener
	// AdminListener is a Unix socket listener for caadm; nil serves none.
	AdminListener net.Listener
	// AdminGroup may use the admin socket besides root and the CA's uid.
	AdminGroup string

	// TLSNames are the DNS names and IP addresses the self-issued server
	// certificate carries. Ignored with TLSCertFile.
	TLSNames []string
	// TLSCertFile and TLSKeyFile: the operator's own server certificate;
	// re-read when the files change.
	TLSCertFile, TLSKeyFile string

	// Timeouts of both listeners; zero means the defaults in parentheses.
	// ReadHeaderTimeout also bounds the TLS handshake (net/http uses the
	// shortest of the three read and write timeouts for it), so a client
	// that connects and stalls is closed after it. WriteTimeout counts
	// from the end of the request's headers; the long polls (policy,
	// sign-in state) extend it by the time they hold the request.
	ReadHeaderTimeout time.Duration // 5s
	ReadTimeout       time.Duration // 15s
	WriteTimeout      time.Duration // 30s
	IdleTimeout       time.Duration // 120s
}

// holdOpen lets a long poll that holds its request for up to wait still
// answer: it moves the write deadline to wait plus the WriteTimeout from
// now. Without it, a WriteTimeout set below the polls' 25 s would cut
// every poll that runs its course.
func (s *Server) holdOpen(w http.ResponseWriter, wait time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(wait + orDefault(s.cfg.WriteTimeout, DefaultWriteTimeout)))
}

// Server serves an Authority.
type Server struct {
	a     *Authority
	cfg   ServerConfig
	log   *slog.Logger
	admin adminPolicy
	https *http.Server
	adm   *http.Server

	// base is every request's parent context; it ends when shutdown
	// starts, so that long polls answer at once instead of holding the
	// shutdown, and do so while the store is still open.
	base     context.Context
	stopBase context.CancelFunc

	// refusals bounds the refused requests audited per client
	// (refusals.go).
	refusals addrThrottle
}

// NewServer prepares the servers; Serve runs them.
func NewServer(a *Authority, cfg ServerConfig) (*Server, error) {
	for _, d := range []time.Duration{cfg.ReadHeaderTimeout, cfg.ReadTimeout, cfg.WriteTimeout, cfg.IdleTimeout} {
		if d < 0 {
			return nil, fmt.Errorf("ca: timeout %v is negative: a listener without timeouts lets stalled clients pile up", d)
		}
	}
	s := &Server{a: a, cfg: cfg, log: a.log, refusals: newRefusalLimiter()}
	s.base, s.stopBase = context.WithCancel(context.Background())
	var err error
	if s.admin, err = newAdminPolicy(cfg.AdminGroup); err != nil {
		return nil, err
	}
	if cfg.Listener != nil {
		tc, err := s.tlsConfig()
		if err != nil {
			return nil, err
		}
		s.https = s.httpServer(s.publicHandler())
		s.https.TLSConfig = tc
	}
	if cfg.AdminListener != nil {
		s.adm = s.httpServer(s.adminHandler())
		s.adm.ConnContext = peerConnContext
	}
	return s, nil
}

// orDefault returns v, or def when v is zero.
func orDefault(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// Default timeouts of ServerConfig.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
)

func (s *Server) httpServer(h http.Handler) *http.Server {
	d := orDefault
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: d(s.cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		ReadTimeout:       d(s.cfg.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:      d(s.cfg.WriteTimeout, DefaultWriteTimeout),
		IdleTimeout:       d(s.cfg.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return s.base },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

func (s *Server) tlsConfig() (*tls.Config, error) {
	// Devices (and later nodes and proxies) authenticate with client
	// certificates from the TLS root; browsers and the plain API send
	// none, so one is verified only if given.
	clients := x509.NewCertPool()
	clients.AddCert(s.a.keys.tls.cert)
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  clients,
	}
	if s.cfg.TLSCertFile != "" || s.cfg.TLSKeyFile != "" {
		fc := &fileCert{cert: s.cfg.TLSCertFile, key: s.cfg.TLSKeyFile}
		if _, err := fc.get(nil); err != nil {
			return nil, err
		}
		tc.GetCertificate = fc.get
		return tc, nil
	}
	names := s.cfg.TLSNames
	if len(names) == 0 {
		names = defaultTLSNames()
	}
	for _, n := range names {
		if err := ValidateHostPrincipal(n); err != nil {
			return nil, fmt.Errorf("ca: --tls-names: %w", err)
		}
	}
	sc := &serverCerts{root: s.a.keys.tls, names: names, dir: s.a.cfg.DataDir, clock: s.a.clock, rand: s.a.rand}
	if _, err := sc.get(nil); err != nil {
		return nil, err
	}
	tc.GetCertificate = sc.get
	return tc, nil
}

func defaultTLSNames() []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil && ValidateHostPrincipal(h) == nil && h != "localhost" {
		names = append(names, h)
	}
	return names
}

// fileCert serves an operator-provided certificate, re-reading the files
// when their modification time changes (checked at most every 10 s).
type fileCert struct {
	cert, key string

	mu      sync.Mutex
	cur     *tls.Certificate
	mod     time.Time
	checked time.Time
}

func (f *fileCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur != nil && time.Since(f.checked) < 10*time.Second {
		return f.cur, nil
	}
	f.checked = time.Now()
	mod := latestMod(f.cert, f.key)
	if f.cur != nil && mod.Equal(f.mod) {
		return f.cur, nil
	}
	c, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		if f.cur != nil {
			return f.cur, nil // keep serving the last good pair
		}
		return nil, fmt.Errorf("ca: --tls-cert/--tls-key: %w", err)
	}
	f.cur, f.mod = &c, mod
	return f.cur, nil
}

func latestMod(paths ...string) time.Time {
	var t time.Time
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}

// Serve runs the servers until ctx is done, then shuts them down
// gracefully, giving in-flight requests up to 10 s.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 2)
	n := 0
	if s.https != nil {
		n++
		go func() { errc <- s.https.ServeTLS(s.cfg.Listener, "", "") }()
	}
	if s.adm != nil {
		n++
		go func() { errc <- s.adm.Serve(s.cfg.AdminListener) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		n--
	}
	s.stopBase()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, h := range []*http.Server{s.https, s.adm} {
		if h != nil {
			_ = h.Shutdown(sctx)
		}
	}
	for ; n > 0; n-- {
		<-errc
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *Server) publicHandler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET "+api.PathPing, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.Ping{Version: "v1", Time: s.a.now().UTC()})
	})
	m.HandleFunc("GET "+api.PathCA, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.a.InfoWithProxies(r.Context()))
	})
	m.HandleFunc("POST "+api.PathLogin, s.handleLogin)
	m.HandleFunc("POST "+api.PathLogout, s.handleLogout)
	m.HandleFunc("POST "+api.PathUserCert, s.handleUserCert)
	s.mountDevices(m)
	s.mountNodes(m)
	s.mountProxies(m)
	s.mountWeb(m) // the web pages: /, /account, /enroll/{token}, /assets/
	return s.a.metrics.instrument(securityHeaders(m))
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		for k, v := range webHeaders { // CSP, framing, referrer: see web.go
			w.Header().Set(k, v)
		}
		h.ServeHTTP(w, r)
	})
}

func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	req, err := readRequest[api.LoginRequest](w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	resp, err := s.a.Login(r.Context(), req, remoteHost(r))
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func bearer(r *http.Request) string {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), api.BearerPrefix)
	return tok
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if err := s.a.Logout(r.Context(), bearer(r), remoteHost(r)); err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) handleUserCert(w http.ResponseWriter, r *http.Request) {
	tok := bearer(r)
	if tok == "" {
		s.writeErr(w, r, ErrSessionExpired)
		return
	}
	req, err := readRequest[api.SignUserRequest](w, r)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	c, err := s.a.SignWithSession(r.Context(), tok, req)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, CertView(c))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeErr maps an error to a status and a message a user can act on.
// Unexpected errors reach the log in full and the client as a generic
// message with a request id to quote.
func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if s.base.Err() != nil {
			writeJSON(w, http.StatusServiceUnavailable, api.Error{Code: api.CodeUnavailable, Message: "teleport-ca is shutting down; try again shortly"})
			return
		}
		if r.Context().Err() != nil { // the client went away: nothing to answer
			s.log.Debug("client gone", "path", r.URL.Path, "remote", r.RemoteAddr)
			return
		}
	}
	status, code := classify(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		id := fmt.Sprintf("%x", time.Now().UnixNano())
		s.log.Error("request failed", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err, "request_id", id)
		msg = "internal error in teleport-ca; the CA log has details (request id " + id + ")"
	}
	msg = strings.TrimPrefix(msg, "ca: ")
	s.auditRefusal(r, status, msg)
	var te *ThrottledError
	if errors.As(err, &te) {
		w.Header().Set("Retry-After", strconv.Itoa(int(te.RetryAfter.Seconds())+1))
	}
	writeJSON(w, status, api.Error{Code: code, Message: msg})
}

func classify(err error) (int, string) {
	var le *LockedError
	var pe *PolicyError
	var mbe *http.MaxBytesError
	var te *ThrottledError
	switch {
	case errors.As(err, &te):
		return http.StatusTooManyRequests, api.CodeTooMany
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, api.CodeTooLarge
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest, api.CodeBadRequest
	case errors.Is(err, ErrBadCredentials):
		return http.StatusUnauthorized, api.CodeBadCredentials
	case errors.Is(err, ErrSessionExpired):
		return http.StatusUnauthorized, api.CodeSessionExpired
	case errors.As(err, &le):
		return http.StatusForbidden, api.CodeLocked
	case errors.Is(err, ErrBadDevice):
		return http.StatusForbidden, api.CodeDeviceRevoked
	case errors.Is(err, ErrBadNode):
		return http.StatusForbidden, api.CodeNodeRemoved
	case errors.As(err, &pe), errors.Is(err, ErrNotEnrolled), errors.Is(err, ErrBadToken):
		return http.StatusForbidden, api.CodeForbidden
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, api.CodeNotFound
	case errors.Is(err, ErrExists):
		return http.StatusConflict, api.CodeExists
	}
	return http.StatusInternalServerError, api.CodeInternal
}
