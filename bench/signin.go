package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/argon2"

	"github.com/opensshca/suite/ca"
	"github.com/opensshca/suite/ca/api"
)

// signInPhase (row 6) offers a fixed rate of sign-ins (password + TOTP,
// POST /v1/login) over keep-alive HTTPS connections and reports latency
// from scheduled send time. Each sign-in is by a user who has not signed
// in before, since a TOTP code is accepted once per user and time step; a
// sign-in checks the password (the bench's cheap argon2id), the code, and
// writes three records one after the other, each durable before the next:
// the user's TOTP counter (compare-and-swap), the audit event and the
// session.
func (e *env) signInPhase(ctx context.Context) []Row {
	n, rate, d := e.opts.SignInClients, e.opts.SignInRate, e.opts.SignInDuration
	name := fmt.Sprintf("HTTPS sign-in (password + TOTP), open loop at %d/s offered", rate)
	keys := make([]*otp.Key, len(e.signIns))
	for i, u := range e.signIns {
		k, err := otp.NewKeyFromURL(u.otpauth)
		if err != nil {
			return []Row{{ID: "6", Name: name, Concurrency: n, Skipped: "skipped: " + err.Error()}}
		}
		keys[i] = k
	}
	closedLoop(ctx, e.cpu, n, e.opts.Warmup, 0, e.apiPing()) // open the connections
	url := e.url + api.PathLogin
	hc := &http.Client{Transport: e.tr, Timeout: 30 * time.Second}
	var next atomic.Int64
	login := func(ctx context.Context, _ int) error {
		i := int(next.Add(1)) - 1
		if i >= len(e.signIns) {
			return errors.New("no sign-in user left")
		}
		code, err := totp.GenerateCode(keys[i].Secret(), time.Now())
		if err != nil {
			return err
		}
		body, _ := json.Marshal(api.LoginRequest{User: e.signIns[i].name, Password: benchPassword, TOTP: code})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
		}
		var lr api.LoginResponse
		err = json.NewDecoder(resp.Body).Decode(&lr)
		_, _ = io.Copy(io.Discard, resp.Body)
		if err != nil {
			return fmt.Errorf("decoding the answer: %w", err)
		}
		if strings.TrimSpace(lr.Session) == "" {
			return errors.New("answer holds no session")
		}
		return nil
	}
	e.progress("6 HTTPS sign-in, open loop at %d/s over %d connections, %v", rate, n, d)
	s0 := e.st.snapshot()
	r := row("6", name, n, openLoop(ctx, e.cpu, n, rate, d, login))
	r = e.withBatch(r, s0)
	r.Offered = rate
	return []Row{r}
}

// defaultArgon2Time is the median wall time of three argon2id hashes with
// the authority's default parameters (ca.DefaultArgon2) on this machine:
// what a sign-in costs on top of row 6 with a real password hash.
func defaultArgon2Time() time.Duration {
	p := ca.DefaultArgon2
	salt := make([]byte, 16)
	var ts []time.Duration
	for range 3 {
		start := time.Now()
		argon2.IDKey([]byte(benchPassword), salt, p.Time, p.MemoryKiB, p.Threads, 32)
		ts = append(ts, time.Since(start))
	}
	slices.Sort(ts)
	return ts[1]
}
