package keyhelper

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/opensshca/suite/ca/api"
)

// SessionsCommand is what the proxy runs for ListSessions: its own
// command, answered with a JSON array of api.Session.
const SessionsCommand = "sessions --json"

// SessionsConfig says whose sessions to list. Zero fields have the
// documented defaults.
type SessionsConfig struct {
	Home   *Home
	Server Server
	// AgentSocket is $SSH_AUTH_SOCK, asked for the certificate's private
	// key when the key file holds none that can be used (login --confirm
	// keeps the key only in the agent); empty means no agent.
	AgentSocket string
	// Timeout bounds the conversation with the proxy; zero means
	// DefaultProxyTimeout.
	Timeout time.Duration
	// Clock returns the time; nil is time.Now. It decides whether the
	// user's certificate and the proxy's host certificate are valid.
	Clock func() time.Time
}

// ListSessions returns the active SSH sessions, through any proxy of the
// cluster, on the nodes where the user of the last login has a login
// ("is someone else on this node?"). It logs in to the proxy the login
// learned, as the cluster user, with the certificate of that login and
// its key (from the key file, or else from the agent); it trusts the
// proxy only through a host certificate from the cluster's host CA in
// the cluster's known_hosts, valid for the proxy's address; and it runs
// the proxy's own command SessionsCommand.
//
// Nothing is sent before the certificate is found valid: a missing one
// is ErrNotLoggedIn, an expired one an *ExpiredError. A cluster without a
// proxy is ErrNoProxy; failures at the proxy are *ProxyError.
func ListSessions(ctx context.Context, cfg SessionsConfig) ([]api.Session, error) {
	clock := cfg.Clock
	if clock == nil {
		clock = time.Now
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultProxyTimeout
	}
	p, err := cfg.Home.LoadProfile(cfg.Server)
	if err != nil {
		return nil, err
	}
	cert, err := p.proxyCert(clock())
	if err != nil {
		return nil, err
	}
	if p.ProxyAddr == "" {
		return nil, fmt.Errorf("keyhelper: cluster %s: %w", cfg.Server, ErrNoProxy)
	}
	if err := CheckProxyAddr(p.ProxyAddr); err != nil {
		return nil, err
	}
	cas, err := readHostAuthorities(p.KnownHostsFile())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	signer, done, err := p.proxySigner(cert, cfg.AgentSocket, deadline)
	if err != nil {
		return nil, err
	}
	defer done()
	out, err := proxyExec(ctx, p.ProxyAddr, p.User, signer, cas, clock, SessionsCommand)
	if err != nil {
		return nil, err
	}
	list := []api.Session{}
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, &ProxyError{Addr: p.ProxyAddr, Stage: ProxyCommand,
			Err: fmt.Errorf("%q answered with something other than a list of sessions (%v)", SessionsCommand, err)}
	}
	if list == nil { // "null"
		list = []api.Session{}
	}
	slices.SortStableFunc(list, func(a, b api.Session) int {
		return cmp.Or(strings.Compare(a.Node, b.Node), a.Started.Compare(b.Started), strings.Compare(a.ID, b.ID))
	})
	return list, nil
}

// WriteSessionsJSON writes list as an indented JSON array ("[]" when it
// is empty).
func WriteSessionsJSON(w io.Writer, list []api.Session) error {
	if list == nil {
		list = []api.Session{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(list)
}

// maxCell caps a table cell, in runes; RUNNING gets maxRunningCell.
const (
	maxCell        = 40
	maxRunningCell = 80
)

// WriteSessionsTable writes list as a table with the columns SESSION,
// USER, LOGIN, NODE, PROXY, STARTED (in loc), FROM and RUNNING (the
// session's channels: shell, exec commands, subsystems, forwards), or a
// line saying there are none. Every cell is made safe for a terminal: the
// values come from the proxy, and a command another user ran may hold
// escape sequences. Control and other non-printing characters become
// "?", and long cells are cut.
func WriteSessionsTable(w io.Writer, list []api.Session, loc *time.Location) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "No active sessions on the nodes you may log in to.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tUSER\tLOGIN\tNODE\tPROXY\tSTARTED\tFROM\tRUNNING")
	for _, s := range list {
		started := ""
		if !s.Started.IsZero() {
			started = s.Started.In(loc).Format(timeLayout)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(s.ID, maxCell), cell(s.User, maxCell), cell(s.Login, maxCell), cell(s.Node, maxCell),
			cell(s.Proxy, maxCell), cell(started, maxCell), cell(s.ClientAddr, maxCell),
			cell(strings.Join(s.Channels, "; "), maxRunningCell))
	}
	return tw.Flush()
}

// cell makes s one safe table cell of at most limit runes; empty is "-".
func cell(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
	if r := []rune(s); len(r) > limit {
		s = string(r[:limit-3]) + "..."
	}
	if s == "" {
		return "-"
	}
	return s
}
