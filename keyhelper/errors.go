package keyhelper

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/client"
)

// RemoteError is a failed call to the CA: the server refused
// (*api.Error), its TLS key did not match the pin
// (*client.PinMismatchError), or it could not be reached.
type RemoteError struct {
	Server Server
	Err    error
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("keyhelper: CA %s: %v", e.Server, e.Err)
}

func (e *RemoteError) Unwrap() error { return e.Err }

// remote wraps a client error with the server it came from.
func remote(s Server, err error) error {
	if err == nil {
		return nil
	}
	return &RemoteError{Server: s, Err: err}
}

// maxServerMessage caps how much of the CA's message is shown.
const maxServerMessage = 300

// Describe returns the one line a user sees for err: what went wrong and
// what to do about it.
func Describe(err error) string {
	var (
		re  *RemoteError
		pe  *client.PinMismatchError
		ae  *api.Error
		ue  *UnsafeError
		ee  *ExpiredError
		age *AgentError
		rge *RegistrationError
		pxe *ProxyError
	)
	where := "the CA"
	if errors.As(err, &re) {
		where = "the CA at " + re.Server.URL()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return "interrupted"
	case errors.As(err, &rge):
		return strings.TrimPrefix(rge.Error(), "keyhelper: ")
	case errors.As(err, &pe):
		return fmt.Sprintf("%s is not the CA the pin names: the pin is %s, but the server's TLS certificates have %s. "+
			"You may be talking to the wrong server; check --ca-pin with your administrator (caadm ca show) and do not sign in until it matches",
			where, strings.Join(pe.Want, " or "), orNone(pe.Got))
	case errors.As(err, &ae):
		return describeAPI(ae, where)
	case errors.Is(err, ErrNoProxy):
		return "no proxy is known for this cluster: it had none when you last logged in. " +
			"Log in again (teleport-keyhelper login) once the cluster has a proxy"
	case errors.As(err, &pxe):
		return describeProxy(pxe)
	case errors.Is(err, ErrNotLoggedIn):
		return "not logged in: run teleport-keyhelper login --server https://HOST:3080 --user NAME"
	case errors.As(err, &ue):
		return strings.TrimPrefix(ue.Error(), "keyhelper: ")
	case errors.As(err, &ee) && ee.Skew != 0:
		return fmt.Sprintf("the certificate expired at %s by this machine's clock, which is %s; fix the clock (timedatectl; check NTP), then run teleport-keyhelper login again",
			ee.ValidBefore.Local().Format(timeLayout), skewPhrase(ee.Skew))
	case errors.As(err, &ee):
		return fmt.Sprintf("the certificate expired at %s (is this machine's clock right?); run teleport-keyhelper login again", ee.ValidBefore.Local().Format(timeLayout))
	case errors.As(err, &age):
		return oneLine(strings.TrimPrefix(age.Error(), "keyhelper: ")) + "; is the agent running? start one with: eval \"$(ssh-agent)\""
	case re != nil:
		return describeReach(re.Err, where)
	}
	return oneLine(strings.TrimPrefix(strings.TrimPrefix(err.Error(), "keyhelper: "), "client: "))
}

// describeAPI explains a refusal by the CA. The CA's own message is shown
// where it carries what the user needs (until when a lock lasts, which
// login is not allowed), cleaned of control characters and shortened.
func describeAPI(ae *api.Error, where string) string {
	msg := serverMessage(ae.Message)
	switch ae.Code {
	case api.CodeBadCredentials:
		return "wrong user name, password or one-time code: check them and try again. " +
			"A code works only once, so wait for the next one; several failures in a row lock the account"
	case api.CodeLocked:
		if strings.Contains(msg, "locked") {
			return msg // says until when and what to do
		}
		return "your account is locked (" + msg + "); ask an administrator to unlock it"
	case api.CodeSessionExpired, api.CodeUnauthorized:
		return "your sign-in has expired or was ended: run teleport-keyhelper login again"
	case api.CodeTooMany:
		return msg + " (too many failed sign-ins from this address; wait, then check the user name, password and code)"
	case api.CodeForbidden:
		return where + " refused: " + msg
	case api.CodeBadRequest, api.CodeTooLarge, api.CodeNotFound:
		return where + " rejected the request: " + msg
	}
	return where + " failed: " + msg + " (tell your administrator)"
}

// describeReach explains a CA that could not be reached or whose TLS
// certificate is not trusted.
func describeReach(err error, where string) string {
	var (
		uae x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		dns *net.DNSError
		ne  net.Error
	)
	switch {
	case errors.As(err, &uae):
		return where + " presents a TLS certificate this machine does not trust: pass --ca-pin sha256:<hex> " +
			"(your administrator gets the pin from caadm ca show)"
	case errors.As(err, &he):
		return fmt.Sprintf("%s presents a TLS certificate for other names (%s): use a name it was issued for "+
			"in --server, or ask the administrator to add this one (teleport-ca --tls-names)", where, oneLine(he.Error()))
	case errors.As(err, &ci):
		return fmt.Sprintf("%s presents an invalid TLS certificate (%s): check this machine's clock, or tell your administrator", where, oneLine(ci.Error()))
	case errors.As(err, &dns):
		return fmt.Sprintf("cannot reach %s: the name %s does not resolve; check --server", where, dns.Name)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("cannot reach %s: connection refused; check --server and that teleport-ca runs there", where)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("cannot reach %s: timed out; check --server and your network", where)
	}
	return fmt.Sprintf("cannot reach %s: %s; check --server and your network", where,
		oneLine(strings.TrimPrefix(err.Error(), "client: ")))
}

// describeProxy explains a failed conversation with the proxy.
func describeProxy(e *ProxyError) string {
	where := "the proxy at " + e.Addr
	var (
		ce  *ProxyCommandError
		dns *net.DNSError
		ne  net.Error
	)
	switch {
	case errors.As(e.Err, &ne) && ne.Timeout():
		return fmt.Sprintf("%s did not answer in time (%s); check your network", where, e.Stage)
	case e.Stage == ProxyHostKey:
		return fmt.Sprintf("%s does not present a valid host certificate from the cluster's host CA (%s): "+
			"it may not be the cluster's proxy. Do not use it; tell your administrator (or log in again if the cluster's host CA changed)",
			where, oneLine(e.Err.Error()))
	case e.Stage == ProxyAuth:
		return where + " refused your certificate: log in again (teleport-keyhelper login); " +
			"if it still refuses, your user may be locked or removed: ask your administrator"
	case errors.As(e.Err, &ce):
		return fmt.Sprintf("%s could not run %q (exit status %d): %s", where, ce.Command, ce.Status, serverMessage(ce.Stderr))
	case e.Stage == ProxyCommand:
		return fmt.Sprintf("%s failed: %s", where, serverMessage(strings.TrimPrefix(e.Err.Error(), "ssh: ")))
	case errors.As(e.Err, &dns):
		return fmt.Sprintf("cannot reach %s: the name %s does not resolve; check your network, or log in again if the proxy moved", where, dns.Name)
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		return fmt.Sprintf("cannot reach %s: connection refused; is teleport-proxy running there? Log in again if the proxy moved", where)
	}
	return fmt.Sprintf("cannot reach %s: %s", where, oneLine(e.Err.Error()))
}

func orNone(pins []string) string {
	if len(pins) == 0 {
		return "none"
	}
	return strings.Join(pins, ", ")
}

// serverMessage makes a message from the CA safe to print: one line, no
// control characters, not too long.
func serverMessage(s string) string {
	s = oneLine(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s))
	if r := []rune(s); len(r) > maxServerMessage {
		s = string(r[:maxServerMessage]) + "..."
	}
	if s == "" {
		return "no reason given"
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
