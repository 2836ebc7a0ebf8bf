package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/opensshca/suite/ca/api"
)

// The device methods present the client certificate and send the poll's
// state as the server reads it: signed_in, expires in RFC 3339 with its
// fraction (the server compares it exactly), and wait.
func TestDeviceRequests(t *testing.T) {
	p := newPKI(t, "127.0.0.1")
	devKey := newKey(t)
	devTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "alice"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	dev := createCert(t, devTmpl, devTmpl, &devKey.PublicKey, devKey) // the server here checks only that it is presented
	expires := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)

	var (
		mu    sync.Mutex
		calls []string
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if len(r.TLS.PeerCertificates) != 1 || !r.TLS.PeerCertificates[0].Equal(dev) {
			writeJSON(w, http.StatusForbidden, api.Error{Code: api.CodeForbidden, Message: "no client certificate"})
			return
		}
		calls = append(calls, r.Method+" "+r.URL.String())
		switch r.URL.Path {
		case api.PathDeviceRenew:
			writeJSON(w, http.StatusOK, api.DeviceIdentity{DeviceID: "d1", User: "alice"})
		case api.PathDeviceSignIn:
			q := r.URL.Query()
			got, err := time.Parse(time.RFC3339Nano, q.Get("expires"))
			if q.Get("signed_in") != "true" || err != nil || !got.Equal(expires) || q.Get("wait") != "25s" {
				writeJSON(w, http.StatusBadRequest, api.Error{Code: api.CodeBadRequest, Message: "bad query " + r.URL.RawQuery})
				return
			}
			writeJSON(w, http.StatusOK, api.SignInState{})
		case api.PathDeviceCert:
			var req api.DeviceCertRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.PublicKey != "ssh-ed25519 AAAA" || req.TTL != api.Duration(time.Hour) {
				writeJSON(w, http.StatusBadRequest, api.Error{Code: api.CodeBadRequest, Message: "bad request"})
				return
			}
			writeJSON(w, http.StatusOK, api.Cert{Serial: "9"})
		}
	})
	srv := newTLSServer(t, p, h)
	srv.TLS.ClientAuth = tls.RequireAnyClientCert
	c := newTLSClient(t, srv.URL, Options{Pin: PinOf(p.root), ClientCert: &tls.Certificate{Certificate: [][]byte{dev.Raw}, PrivateKey: devKey}})
	defer c.CloseIdleConnections()
	ctx := context.Background()

	if id, err := c.RenewDevice(ctx); err != nil || id.DeviceID != "d1" {
		t.Errorf("RenewDevice: %+v, %v", id, err)
	}
	if st, err := c.SignInState(ctx, api.SignInState{SignedIn: true, Expires: expires}, 25*time.Second); err != nil || st.SignedIn {
		t.Errorf("SignInState: %+v, %v", st, err)
	}
	if cert, err := c.DeviceCert(ctx, api.DeviceCertRequest{PublicKey: "ssh-ed25519 AAAA", TTL: api.Duration(time.Hour)}); err != nil || cert.Serial != "9" {
		t.Errorf("DeviceCert: %+v, %v", cert, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 3 || calls[0] != "POST "+api.PathDeviceRenew || calls[2] != "POST "+api.PathDeviceCert {
		t.Errorf("calls: %q", calls)
	}
}
