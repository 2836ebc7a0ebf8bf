package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca"
	"github.com/opensshca/suite/ca/api"
)

// rawPhase (rows 1a, 1b) signs and marshals certificates with the user CA
// key directly: no policy, no store, no network. What the certificate
// holds matches what the authority issues (two principals, permit-pty,
// random serial, one-hour validity).
func (e *env) rawPhase(ctx context.Context) []Row {
	sign := func(_ context.Context, w int) error {
		u := &e.users[w%len(e.users)]
		var s [8]byte
		if _, err := rand.Read(s[:]); err != nil {
			return err
		}
		now := time.Now()
		c := &ssh.Certificate{
			Key:             u.pub,
			Serial:          binary.BigEndian.Uint64(s[:]) | 1,
			CertType:        ssh.UserCert,
			KeyId:           u.name,
			ValidPrincipals: []string{u.name, "deploy"},
			ValidAfter:      uint64(now.Add(-time.Minute).Unix()),
			ValidBefore:     uint64(now.Add(time.Hour).Unix()),
			Permissions:     ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}},
		}
		if err := c.SignCert(rand.Reader, e.userCA); err != nil {
			return err
		}
		if len(c.Marshal()) == 0 {
			return errors.New("empty certificate")
		}
		return nil
	}
	n := runtime.GOMAXPROCS(0)
	d, warm := e.opts.Duration, e.opts.Warmup
	e.progress("1a raw SignCert+Marshal, 1 goroutine, %v", d)
	one := row("1a", "raw SignCert+Marshal (ed25519 user CA key), 1 goroutine", 1, closedLoop(ctx, e.cpu, 1, warm, d, sign))
	e.progress("1b raw SignCert+Marshal, %d goroutines, %v", n, d)
	all := row("1b", "raw SignCert+Marshal, GOMAXPROCS goroutines", n, closedLoop(ctx, e.cpu, n, warm, d, sign))
	return []Row{one, all}
}

// inProcPhase (row 2) calls IssueUserCert from concurrent callers: user
// and role lookups, policy, signing, invariants, and the fsync'd issuance
// record and audit event (the store groups concurrent writes into one
// commit).
func (e *env) inProcPhase(ctx context.Context) []Row {
	issue := func(ctx context.Context, w int) error {
		u := &e.users[w%len(e.users)]
		c, err := e.a.IssueUserCert(ctx, ca.UserCertRequest{User: u.name, PublicKey: u.pub, Requester: "cabench"})
		if err != nil {
			return err
		}
		if len(c.Marshal()) == 0 {
			return errors.New("empty certificate")
		}
		return nil
	}
	n, d := e.opts.Callers, e.opts.Duration
	e.progress("2 in-process IssueUserCert, %d callers, %v", n, d)
	s0 := e.st.snapshot()
	r := row("2", "in-process IssueUserCert, durable records", n, closedLoop(ctx, e.cpu, n, e.opts.Warmup, d, issue))
	return []Row{e.withBatch(r, s0)}
}

// apiIssue returns the op of rows 3 and 4: one POST /v1/certs/user with
// the bearer session of the worker's user over the shared keep-alive
// transport, the JSON answer decoded and checked.
func (e *env) apiIssue() op {
	url := e.url + api.PathUserCert
	hc := &http.Client{Transport: e.tr, Timeout: 30 * time.Second}
	prefix := ssh.CertAlgoED25519v01 + " "
	return func(ctx context.Context, w int) error {
		u := &e.users[w%len(e.users)]
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(u.body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", api.BearerPrefix+u.session)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
		}
		var c api.Cert
		err = json.NewDecoder(resp.Body).Decode(&c)
		_, _ = io.Copy(io.Discard, resp.Body) // read to EOF so the connection is reused
		if err != nil {
			return fmt.Errorf("decoding the answer: %w", err)
		}
		if !strings.HasPrefix(c.Certificate, prefix) {
			return fmt.Errorf("answer holds no ed25519 user certificate: %.40q", c.Certificate)
		}
		return nil
	}
}

// apiPing returns the op of the floor row: GET /v1/ping over the same
// transport, which costs the HTTPS round trip and nothing else (no
// signing, no store), so it bounds what any API call can reach here.
func (e *env) apiPing() op {
	url := e.url + api.PathPing
	hc := &http.Client{Transport: e.tr, Timeout: 30 * time.Second}
	return func(ctx context.Context, w int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ping: %s", resp.Status)
		}
		return nil
	}
}

// apiPhase (rows 3a, 3b, ...) drives the HTTPS API closed loop: each of N
// clients sends its next request when the last one is answered.
func (e *env) apiPhase(ctx context.Context) []Row {
	var rows []Row
	issue := e.apiIssue()
	for i, n := range e.opts.Clients {
		id := fmt.Sprintf("3%c", 'a'+i)
		e.progress("%s HTTPS API, %d keep-alive clients, %v", id, n, e.opts.Duration)
		s0 := e.st.snapshot()
		r := row(id, "HTTPS API POST /v1/certs/user, keep-alive clients", n, closedLoop(ctx, e.cpu, n, e.opts.Warmup, e.opts.Duration, issue))
		r = e.withBatch(r, s0)
		r.API = true
		rows = append(rows, r)
	}
	return rows
}

// floorPhase (row 3z) is the floor under rows 3: the same clients pinging.
func (e *env) floorPhase(ctx context.Context) []Row {
	n := slices.Max(e.opts.Clients)
	e.progress("3z HTTPS floor, GET /v1/ping, %d keep-alive clients, %v", n, e.opts.Duration)
	return []Row{row("3z", "HTTPS floor: GET /v1/ping (no signing, no store), same clients", n, closedLoop(ctx, e.cpu, n, e.opts.Warmup, e.opts.Duration, e.apiPing()))}
}

// latencyPhase (row 4) offers a fixed request rate to the HTTPS API over
// the largest client pool and reports latency from scheduled send time.
func (e *env) latencyPhase(ctx context.Context) []Row {
	n, rate, d := slices.Max(e.opts.Clients), e.opts.Rate, e.opts.LatencyDuration
	issue := e.apiIssue()
	closedLoop(ctx, e.cpu, n, e.opts.Warmup, 0, issue) // open the connections
	e.progress("4 HTTPS API, open loop at %d req/s over %d connections, %v", rate, n, d)
	s0 := e.st.snapshot()
	r := row("4", fmt.Sprintf("HTTPS API, open loop at %d req/s offered", rate), n, openLoop(ctx, e.cpu, n, rate, d, issue))
	r = e.withBatch(r, s0)
	r.Offered, r.API = rate, true
	return []Row{r}
}

// keygenPhase (rows 5a, 5b) signs with stock OpenSSH the way an operator
// would without a CA service: one ssh-keygen -s process per certificate,
// reading the same user CA key file.
func (e *env) keygenPhase(ctx context.Context) []Row {
	const (
		seqName = "ssh-keygen -s, exec per cert, sequential"
		parName = "ssh-keygen -s, exec per cert, GOMAXPROCS workers"
	)
	n := runtime.GOMAXPROCS(0)
	bin, err := exec.LookPath("ssh-keygen")
	if err != nil {
		why := "skipped: ssh-keygen not found in PATH (apt-get install openssh-client)"
		return []Row{{ID: "5a", Name: seqName, Concurrency: 1, Skipped: why}, {ID: "5b", Name: parName, Concurrency: n, Skipped: why}}
	}
	pubs := make([]string, n)
	for w := range n {
		dir := filepath.Join(e.tmp, "keygen", fmt.Sprint(w))
		pubs[w] = filepath.Join(dir, "key.pub")
		err := os.MkdirAll(dir, 0o700)
		if err == nil {
			err = os.WriteFile(pubs[w], ssh.MarshalAuthorizedKey(e.users[w%len(e.users)].pub), 0o644)
		}
		if err != nil {
			why := "skipped: " + err.Error()
			return []Row{{ID: "5a", Name: seqName, Concurrency: 1, Skipped: why}, {ID: "5b", Name: parName, Concurrency: n, Skipped: why}}
		}
	}
	sign := func(ctx context.Context, w int) error {
		u := &e.users[w%len(e.users)]
		cmd := exec.CommandContext(ctx, bin, "-q", "-s", e.userCAPath, "-I", u.name, "-n", u.name+",deploy", "-V", "+1h", pubs[w])
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen: %w: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
	if err := e.checkKeygen(ctx, sign, pubs[0]); err != nil {
		why := "skipped: " + err.Error()
		return []Row{{ID: "5a", Name: seqName, Concurrency: 1, Skipped: why}, {ID: "5b", Name: parName, Concurrency: n, Skipped: why}}
	}
	d, warm := e.opts.KeygenDuration, min(e.opts.Warmup, 200*time.Millisecond)
	e.progress("5a ssh-keygen -s sequential, %v", d)
	seq := row("5a", seqName, 1, closedLoop(ctx, e.cpu, 1, warm, d, sign))
	e.progress("5b ssh-keygen -s, %d workers, %v", n, d)
	par := row("5b", parName, n, closedLoop(ctx, e.cpu, n, warm, d, sign))
	return []Row{seq, par}
}

// checkKeygen signs once with ssh-keygen and checks the certificate it
// wrote next to pub.
func (e *env) checkKeygen(ctx context.Context, sign op, pub string) error {
	if err := sign(ctx, 0); err != nil {
		return err
	}
	b, err := os.ReadFile(strings.TrimSuffix(pub, ".pub") + "-cert.pub")
	if err != nil {
		return err
	}
	return e.checkCert(b, e.users[0])
}

// withBatch records the store's ops per commit since s0 (warm-up
// included), when the store counts them.
func (e *env) withBatch(r Row, s0 commitCount) Row {
	s := e.st.snapshot()
	if c := s.commits - s0.commits; s.ok && s0.ok && c > 0 {
		r.OpsPerCommit = float64(s.ops-s0.ops) / float64(c)
	}
	return r
}
