package keyhelper

import (
	"fmt"
	"os"

	"golang.org/x/crypto/ssh"
)

// Status is what is known locally about one cluster: no request is made to
// the CA.
type Status struct {
	Server  Server
	Profile *Profile
	// Cert is the certificate in Profile.CertFile, or nil with CertErr
	// saying why.
	Cert    *ssh.Certificate
	CertErr error
	// InAgent says whether the agent holds Cert; it is meaningful only
	// when AgentErr is nil. AgentErr is ErrNoAgent without
	// $SSH_AUTH_SOCK.
	InAgent  bool
	AgentErr error
}

// Status reads the state of cluster s and asks the agent at agentSocket
// ("" for none) whether it holds the certificate.
func (h *Home) Status(s Server, agentSocket string) (*Status, error) {
	p, err := h.LoadProfile(s)
	if err != nil {
		return nil, err
	}
	st := &Status{Server: s, Profile: p}
	st.Cert, st.CertErr = readCert(p.CertFile)
	if st.Cert == nil {
		return st, nil
	}
	ag, err := DialAgent(agentSocket)
	if err != nil {
		st.AgentErr = err
		return st, nil
	}
	defer ag.Close()
	st.InAgent, st.AgentErr = ag.Holds(st.Cert)
	return st, nil
}

// readCert reads a certificate file.
func readCert(path string) (*ssh.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, fmt.Errorf("keyhelper: %s: %w", path, err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("keyhelper: %s holds no certificate", path)
	}
	return cert, nil
}
