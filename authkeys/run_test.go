package authkeys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/internal/nodedir"
)

// t0 is the node's clock in the Runner tests.
var t0 = time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)

// newNodeDir returns a data directory with its cache directory.
func newNodeDir(t *testing.T) nodedir.Dir {
	t.Helper()
	d := nodedir.Dir(t.TempDir())
	if err := os.Mkdir(d.Path(nodedir.CacheDir), 0o750); err != nil {
		t.Fatal(err)
	}
	return d
}

// writeCache writes c as the node's cache file and returns the bytes.
func writeCache(t *testing.T, d nodedir.Dir, c *Cache) []byte {
	t.Helper()
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.Path(nodedir.Cache), b, 0o640); err != nil {
		t.Fatal(err)
	}
	return b
}

func readCache(t *testing.T, d nodedir.Dir) *Cache {
	t.Helper()
	b, err := os.ReadFile(d.Path(nodedir.Cache))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCache(b)
	if err != nil {
		t.Fatalf("the cache file written does not parse: %v\n%s", err, b)
	}
	return c
}

// cacheConfirmedAt is policyCache(ModeOff) last confirmed at confirmed.
func cacheConfirmedAt(t *testing.T, confirmed time.Time) *Cache {
	c := policyCache(t, ModeOff)
	c.Confirmed = confirmed
	return c
}

// testPolicy is the CA's answer: unlike policyCache, alice may log in as
// root only and eve as root; serials 11 (user CA) and 21 (session CA)
// are revoked. The CA the mode trusts is the seedTrustedCA key.
func testPolicy(t testing.TB, mode string) api.NodePolicy {
	trusted := authorizedKey(testSigner(t, seedTrustedCA).PublicKey())
	other := authorizedKey(testSigner(t, seedOtherCA).PublicKey())
	p := api.NodePolicy{
		Node: "web-1", Hash: "cd34", Generated: t0.Add(-time.Second), RecordingMode: mode,
		UserCA: trusted, SessionCA: other, HostCA: other,
		Users: []api.NodeUser{
			{Name: "alice", Logins: []string{"root"}},
			{Name: "bob", Logins: []string{"root"}, Locked: true},
			{Name: "eve", Logins: []string{"root"}},
		},
		Revoked: []api.RevokedSerial{
			{Serial: "11", CA: "user", Expires: t0.Add(time.Hour)},
			{Serial: "21", CA: "session", Expires: t0.Add(time.Hour)},
		},
	}
	if mode == ModeProxy {
		p.UserCA, p.SessionCA = other, trusted
	}
	return p
}

// fakeCA is Runner.Fetch for tests.
type fakeCA struct {
	calls  int
	policy api.NodePolicy
	err    error
	// block makes fetch wait for its context to end.
	block bool
}

func (f *fakeCA) fetch(ctx context.Context) (api.NodePolicy, error) {
	f.calls++
	if f.block {
		<-ctx.Done()
		return api.NodePolicy{}, ctx.Err()
	}
	return f.policy, f.err
}

// noFetch is a Fetch that fails the test.
func noFetch(t *testing.T) func(context.Context) (api.NodePolicy, error) {
	return func(context.Context) (api.NodePolicy, error) {
		t.Error("Fetch was called")
		return api.NodePolicy{}, errors.New("unexpected fetch")
	}
}

// testRunner answers from d with the clock *now and a one hour MaxAge.
func testRunner(d nodedir.Dir, now *time.Time, fetch func(context.Context) (api.NodePolicy, error)) *Runner {
	return &Runner{
		Dir: d, MaxAge: time.Hour, CATimeout: time.Second,
		Now:   func() time.Time { return *now },
		Fetch: fetch,
	}
}

func markerExists(t *testing.T, d nodedir.Dir) bool {
	t.Helper()
	_, err := os.Stat(d.Path(nodedir.Unreachable))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

func TestFromPolicy(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{ModeOff, ModeProxy} {
		c, err := FromPolicy(testPolicy(t, mode), t0)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		want := &Cache{
			Node: "web-1", Confirmed: t0, Generated: t0.Add(-time.Second), Hash: "cd34", Mode: mode,
			TrustedCA: testSigner(t, seedTrustedCA).PublicKey(),
			Users: map[string]Access{
				"alice": {Logins: []string{"root"}},
				"bob":   {Logins: []string{"root"}, Locked: true},
				"eve":   {Logins: []string{"root"}},
			},
			Revoked: []Revoked{{CA: "user", Serial: 11, Expires: t0.Add(time.Hour)}, {CA: "session", Serial: 21, Expires: t0.Add(time.Hour)}},
		}
		if d := cacheDiff(c, want); d != "" {
			t.Errorf("%s: FromPolicy:\n%s", mode, d)
		}
	}
	for name, edit := range map[string]func(p *api.NodePolicy){
		"bad CA key":         func(p *api.NodePolicy) { p.UserCA = "ssh-ed25519 !!!" },
		"no CA key":          func(p *api.NodePolicy) { p.UserCA = "" },
		"serial not decimal": func(p *api.NodePolicy) { p.Revoked[0].Serial = "0x10" },
		"serial empty":       func(p *api.NodePolicy) { p.Revoked[0].Serial = "" },
	} {
		p := testPolicy(t, ModeOff)
		edit(&p)
		if c, err := FromPolicy(p, t0); err == nil {
			t.Errorf("%s: FromPolicy accepted it: %+v", name, c)
		}
	}
}

func TestAnswerFreshCache(t *testing.T) {
	t.Parallel()
	ca := testSigner(t, seedTrustedCA)
	typ, key := offered(signCert(t, ca, ssh.UserCert, "alice", 1))
	otherTyp, otherKey := offered(signCert(t, testSigner(t, seedOtherCA), ssh.UserCert, "alice", 1))
	answers := []struct {
		mode, login, a, b string
		want              string // "" means denied
	}{
		{"principals", "root", "alice", "1", "root\n"},
		{"principals", "deploy", "alice", "1", "deploy\n"},
		{"principals", "root", "eve", "1", ""},
		{"principals", "root", "bob", "1", ""},
		{"principals", "root", "alice", "10", ""},
		{"keys", "root", typ, key, wantKeysLine(t, "root")},
		{"keys", "admin", typ, key, ""},
		{"keys", "root", otherTyp, otherKey, ""},
	}
	for _, age := range []time.Duration{0, 59 * time.Minute, time.Hour} {
		t.Run(fmt.Sprint(age), func(t *testing.T) {
			t.Parallel()
			d := newNodeDir(t)
			now := t0
			file := writeCache(t, d, cacheConfirmedAt(t, now.Add(-age)))
			r := testRunner(d, &now, noFetch(t))
			for _, a := range answers {
				got, err := r.Answer(a.mode, a.login, a.a, a.b)
				if got != a.want {
					t.Errorf("Answer(%s %s %.20s %.20s) = %q, %v; want %q", a.mode, a.login, a.a, a.b, got, err, a.want)
				}
				if a.want == "" {
					wantDenied(t, err)
					if strings.Contains(err.Error(), "failing closed") {
						t.Errorf("a denial from the cache says %q", err)
					}
				}
			}
			if b, _ := os.ReadFile(d.Path(nodedir.Cache)); !bytes.Equal(b, file) {
				t.Errorf("a fresh cache was rewritten:\n%s", b)
			}
			if markerExists(t, d) {
				t.Error("the ca-unreachable marker was written")
			}
		})
	}
}

// needCA is a data directory whose cache makes Answer ask the CA:
// "stale" (confirmed two hours before now) or "missing".
func needCA(t *testing.T, state string, now time.Time) nodedir.Dir {
	t.Helper()
	d := newNodeDir(t)
	if state == "stale" {
		writeCache(t, d, cacheConfirmedAt(t, now.Add(-2*time.Hour)))
	}
	return d
}

// needCAStates are needCA's states and what a denial says about each.
var needCAStates = []struct{ state, why string }{
	{"stale", "more than 1h0m0s ago"},
	{"missing", "does not exist"},
}

// cacheFile is the cache file's contents, nil when there is none.
func cacheFile(t *testing.T, d nodedir.Dir) []byte {
	t.Helper()
	b, err := os.ReadFile(d.Path(nodedir.Cache))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return b
}

// TestAnswerAgreesWithCache: Answer, which reads the cache file only for
// the user it guesses from the key id, says what the whole cache says,
// whatever the key id, from a cache of either format.
func TestAnswerAgreesWithCache(t *testing.T) {
	t.Parallel()
	ca := testSigner(t, seedTrustedCA)
	for _, tc := range []struct{ mode, format string }{{ModeOff, "v2"}, {ModeProxy, "v2"}, {ModeOff, "v1"}, {ModeProxy, "v1"}} {
		mode := tc.mode
		t.Run(mode+"/"+tc.format, func(t *testing.T) {
			t.Parallel()
			d := newNodeDir(t)
			now := t0
			c := cacheConfirmedAt(t, now)
			c.Mode = mode
			writeCache(t, d, c)
			if tc.format == "v1" {
				write(t, d.Path(nodedir.Cache), marshalV1(t, c))
			}
			r := testRunner(d, &now, noFetch(t))
			keyIDs := []string{keyIDFor(mode, "dave.ops"), keyIDFor(mode, "bob"), "user=alice", "user=alice proxy=p", "user=alice session=s proxy=p"}
			for _, k := range keyIDCases() {
				keyIDs = append(keyIDs, k.keyID)
			}
			allowed := 0
			for _, keyID := range keyIDs {
				typ, key := offered(signCert(t, ca, ssh.UserCert, keyID, 20))
				for _, login := range []string{"root", "deploy", "www-data", "admin"} {
					for _, serial := range []string{"1", "10", "20"} {
						got, gotErr := r.Answer("principals", login, keyID, serial)
						want, wantErr := c.PrincipalsLine(login, keyID, serial)
						if got != want || (gotErr == nil) != (wantErr == nil) {
							t.Errorf("principals %s %q %s: Answer %q, %v; the cache says %q, %v", login, keyID, serial, got, gotErr, want, wantErr)
						}
						if got != "" {
							allowed++
						}
					}
					got, gotErr := r.Answer("keys", login, typ, key)
					want, wantErr := c.KeysLine(login, typ, key)
					if got != want || (gotErr == nil) != (wantErr == nil) {
						t.Errorf("keys %s %q: Answer %q, %v; the cache says %q, %v", login, keyID, got, gotErr, want, wantErr)
					}
				}
			}
			if allowed == 0 {
				t.Error("no login was allowed")
			}
		})
	}
}

func TestAnswerFetchesAndCaches(t *testing.T) {
	t.Parallel()
	for _, st := range needCAStates {
		t.Run(st.state, func(t *testing.T) {
			t.Parallel()
			now := t0
			d := needCA(t, st.state, now)
			ca := &fakeCA{policy: testPolicy(t, ModeOff)}
			r := testRunner(d, &now, ca.fetch)
			var logged []string
			r.Log = func(msg string) { logged = append(logged, msg) }

			// eve is only in the CA's policy.
			if got, err := r.Answer("principals", "root", "eve", "1"); got != "root\n" || err != nil {
				t.Fatalf("eve as root: %q, %v; want the answer from the fetched policy", got, err)
			}
			if ca.calls != 1 {
				t.Fatalf("Fetch called %d times, want 1", ca.calls)
			}
			if len(logged) != 0 {
				t.Errorf("an allowed login was logged: %q", logged)
			}
			want, err := FromPolicy(testPolicy(t, ModeOff), now)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cacheDiff(readCache(t, d), want); diff != "" {
				t.Errorf("rewritten cache (want confirmed now, the CA's policy):\n%s", diff)
			}
			if fi, err := os.Stat(d.Path(nodedir.Cache)); err != nil || fi.Mode().Perm() != 0o640 {
				t.Errorf("cache file mode: %v, %v; want 0640", fi.Mode(), err)
			}

			// Within MaxAge of the fetch the new cache answers, denials
			// included.
			now = t0.Add(time.Hour)
			for _, a := range [][3]string{
				{"deploy", "alice", "1"}, // allowed by the old cache only
				{"root", "dave", "1"},    // in neither
				{"root", "alice", "11"},  // revoked in the CA's policy
			} {
				if got, err := r.Answer("principals", a[0], a[1], a[2]); got != "" || err == nil {
					t.Errorf("%s as %s serial %s: %q, %v; want a denial", a[1], a[0], a[2], got, err)
				} else {
					wantDenied(t, err)
				}
			}
			if got, err := r.Answer("principals", "root", "alice", "10"); got != "root\n" {
				t.Errorf("alice with serial 10, revoked only in the old cache: %q, %v", got, err)
			}
			if ca.calls != 1 {
				t.Errorf("Fetch called %d times within MaxAge of the last fetch, want 1", ca.calls)
			}
			if len(logged) != 3 || !strings.Contains(logged[0], `denied login as "deploy"`) {
				t.Errorf("logged %q, want the three denials", logged)
			}
			if markerExists(t, d) {
				t.Error("the ca-unreachable marker was written")
			}
		})
	}
}

// TestAnswerFetchesAgainAfterMaxAge: the cache a fetch wrote ages like
// any other.
func TestAnswerFetchesAgainAfterMaxAge(t *testing.T) {
	t.Parallel()
	now := t0
	d := needCA(t, "missing", now)
	ca := &fakeCA{policy: testPolicy(t, ModeOff)}
	r := testRunner(d, &now, ca.fetch)
	if got, err := r.Answer("principals", "root", "alice", "1"); got != "root\n" {
		t.Fatalf("alice as root: %q, %v", got, err)
	}
	now = t0.Add(time.Hour + time.Nanosecond)
	ca.err = errors.New("connection refused")
	if got, err := r.Answer("principals", "root", "alice", "1"); got != "" || err == nil {
		t.Errorf("alice as root after MaxAge, CA down: %q, %v; want a denial", got, err)
	}
	if ca.calls != 2 {
		t.Errorf("Fetch called %d times after MaxAge, want 2", ca.calls)
	}
}

// TestAnswerFetchUsesPolicyMode: the fetched policy decides the mode and
// the trusted CA.
func TestAnswerFetchUsesPolicyMode(t *testing.T) {
	t.Parallel()
	now := t0
	d := needCA(t, "missing", now)
	ca := &fakeCA{policy: testPolicy(t, ModeProxy)}
	r := testRunner(d, &now, ca.fetch)
	typ, key := offered(signCert(t, testSigner(t, seedTrustedCA), ssh.UserCert, keyIDFor(ModeProxy, "eve"), 1))
	if got, err := r.Answer("keys", "root", typ, key); got != wantKeysLine(t, "root") {
		t.Errorf("session certificate in mode proxy: %q, %v", got, err)
	}
	typ, key = offered(signCert(t, testSigner(t, seedTrustedCA), ssh.UserCert, "eve", 1))
	if got, err := r.Answer("keys", "root", typ, key); got != "" || err == nil {
		t.Errorf("user certificate in mode proxy: %q, %v; want a denial", got, err)
	}
	if c := readCache(t, d); c.Mode != ModeProxy || ca.calls != 1 {
		t.Errorf("cache mode %q after %d fetches, want %q after 1", c.Mode, ca.calls, ModeProxy)
	}
}

func TestAnswerCARefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		wantMarker bool
	}{
		{"403", &api.Error{Code: api.CodeNodeRemoved, Message: "this node was removed: join again", Status: 403}, false},
		{"401", &api.Error{Code: api.CodeUnauthorized, Message: "no node identity", Status: 401}, false},
		{"404", &api.Error{Code: api.CodeNotFound, Message: "no such node", Status: 404}, false},
		{"wrapped 403", fmt.Errorf("client: %w", &api.Error{Code: api.CodeForbidden, Message: "forbidden", Status: 403}), false},
		{"500", &api.Error{Code: "internal", Message: "internal error", Status: 500}, true},
		{"503", &api.Error{Code: api.CodeUnavailable, Message: "shutting down", Status: 503}, true},
	}
	for _, st := range needCAStates {
		for _, tt := range tests {
			t.Run(st.state+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				now := t0
				d := needCA(t, st.state, now)
				before := cacheFile(t, d)
				ca := &fakeCA{err: tt.err}
				r := testRunner(d, &now, ca.fetch)
				got, err := r.Answer("principals", "root", "alice", "1")
				if got != "" || err == nil {
					t.Fatalf("Answer = %q, %v; want a denial", got, err)
				}
				wantDenied(t, err, "failing closed", st.why, tt.err.Error())
				if markerExists(t, d) != tt.wantMarker {
					t.Errorf("ca-unreachable marker written: %v, want %v", !tt.wantMarker, tt.wantMarker)
				}
				if b := cacheFile(t, d); !bytes.Equal(b, before) {
					t.Errorf("the cache was rewritten after a failed fetch:\n%s", b)
				}
				// A refusal from the CA is not a reason to stop asking it.
				now = now.Add(time.Second)
				if _, err := r.Answer("principals", "root", "alice", "1"); err == nil {
					t.Fatal("second Answer allowed the login")
				}
				wantCalls := 2
				if tt.wantMarker {
					wantCalls = 1
				}
				if ca.calls != wantCalls {
					t.Errorf("Fetch called %d times, want %d", ca.calls, wantCalls)
				}
			})
		}
	}
}

func TestAnswerCAUnreachable(t *testing.T) {
	t.Parallel()
	for _, st := range needCAStates {
		t.Run(st.state, func(t *testing.T) {
			t.Parallel()
			now := t0
			d := needCA(t, st.state, now)
			ca := &fakeCA{err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}
			r := testRunner(d, &now, ca.fetch)

			got, err := r.Answer("principals", "root", "alice", "1")
			if got != "" || err == nil {
				t.Fatalf("Answer = %q, %v; want a denial", got, err)
			}
			wantDenied(t, err, st.why, "asking the CA failed", "connection refused", "failing closed")
			b, rerr := os.ReadFile(d.Path(nodedir.Unreachable))
			if rerr != nil {
				t.Fatalf("the ca-unreachable marker was not written: %v", rerr)
			}
			if mark, err := time.Parse(time.RFC3339Nano, string(b)); err != nil || !mark.Equal(now) {
				t.Errorf("marker %q, want %v", b, now)
			}

			// Within 30s of the failure the node does not wait for the
			// CA again.
			for _, after := range []time.Duration{time.Nanosecond, 10 * time.Second, 30*time.Second - time.Nanosecond} {
				now = t0.Add(after)
				got, err := r.Answer("principals", "root", "alice", "1")
				if got != "" || err == nil {
					t.Fatalf("%v after the failure: %q, %v; want a denial", after, got, err)
				}
				wantDenied(t, err, st.why, "the CA was unreachable at", "failing closed")
			}
			if ca.calls != 1 {
				t.Fatalf("Fetch called %d times within 30s of the failure, want 1", ca.calls)
			}

			// Then it asks again, and a CA that is back answers.
			now = t0.Add(30 * time.Second)
			ca.err, ca.policy = nil, testPolicy(t, ModeOff)
			if got, err := r.Answer("principals", "root", "alice", "1"); got != "root\n" {
				t.Errorf("30s after the failure, CA back: %q, %v", got, err)
			}
			if ca.calls != 2 {
				t.Errorf("Fetch called %d times, want 2", ca.calls)
			}
		})
	}
}

// TestAnswerUnreachableMarkerInFuture: a marker later than the clock
// (the clock was stepped back) does not stop the node from asking.
func TestAnswerUnreachableMarkerInFuture(t *testing.T) {
	t.Parallel()
	for _, st := range needCAStates {
		t.Run(st.state, func(t *testing.T) {
			t.Parallel()
			now := t0
			d := needCA(t, st.state, now)
			write(t, d.Path(nodedir.Unreachable), now.Add(time.Second).Format(time.RFC3339Nano))
			ca := &fakeCA{policy: testPolicy(t, ModeOff)}
			if got, err := testRunner(d, &now, ca.fetch).Answer("principals", "root", "alice", "1"); got != "root\n" || ca.calls != 1 {
				t.Errorf("Answer = %q, %v after %d fetches; want root after 1", got, err, ca.calls)
			}
		})
	}
}

// TestAnswerUnreachableMarkerDamaged: a marker that does not parse does
// not stop the node from asking.
func TestAnswerUnreachableMarkerDamaged(t *testing.T) {
	t.Parallel()
	now := t0
	d := needCA(t, "missing", now)
	write(t, d.Path(nodedir.Unreachable), "yesterday")
	ca := &fakeCA{policy: testPolicy(t, ModeOff)}
	if got, err := testRunner(d, &now, ca.fetch).Answer("principals", "root", "alice", "1"); got != "root\n" || ca.calls != 1 {
		t.Errorf("Answer = %q, %v after %d fetches; want root after 1", got, err, ca.calls)
	}
}

func TestAnswerCATimeout(t *testing.T) {
	t.Parallel()
	for _, st := range needCAStates {
		t.Run(st.state, func(t *testing.T) {
			t.Parallel()
			now := t0
			d := needCA(t, st.state, now)
			ca := &fakeCA{block: true}
			r := testRunner(d, &now, ca.fetch)
			r.CATimeout = 50 * time.Millisecond
			start := time.Now()
			got, err := r.Answer("principals", "root", "alice", "1")
			if got != "" || err == nil {
				t.Fatalf("Answer = %q, %v; want a denial", got, err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Answer took %v with a 50ms CA timeout", took)
			}
			wantDenied(t, err, st.why, "deadline exceeded", "failing closed")
			if !markerExists(t, d) {
				t.Error("a CA that timed out was not marked unreachable")
			}
		})
	}
}

func TestAnswerUnusableCacheFetches(t *testing.T) {
	t.Parallel()
	valid := validCacheFile(t)
	tests := []struct {
		name    string
		setup   func(t *testing.T, d nodedir.Dir)
		why     string // what the denial says about the cache
		written bool   // the fetched policy can be cached
	}{
		{"missing", func(*testing.T, nodedir.Dir) {}, "does not exist", true},
		{"empty", func(t *testing.T, d nodedir.Dir) { write(t, d.Path(nodedir.Cache), "") }, "truncated", true},
		{"garbage", func(t *testing.T, d nodedir.Dir) { write(t, d.Path(nodedir.Cache), "\x00\x01garbage") }, "line 1", true},
		{"truncated", func(t *testing.T, d nodedir.Dir) { write(t, d.Path(nodedir.Cache), strings.TrimSuffix(valid, "end\n")) }, "truncated", true},
		{"damaged", func(t *testing.T, d nodedir.Dir) {
			write(t, d.Path(nodedir.Cache), strings.Replace(valid, "user alice root", "user alice rooz", 1))
		}, "damaged", true},
		{"truncated v1", func(t *testing.T, d nodedir.Dir) {
			write(t, d.Path(nodedir.Cache), strings.TrimSuffix(validCacheFileV1(t), "end\n"))
		}, "truncated", true},
		{"a directory", func(t *testing.T, d nodedir.Dir) {
			if err := os.Mkdir(d.Path(nodedir.Cache), 0o750); err != nil {
				t.Fatal(err)
			}
		}, "is a directory", false},
		{"no cache directory", func(t *testing.T, d nodedir.Dir) {
			if err := os.Remove(d.Path(nodedir.CacheDir)); err != nil {
				t.Fatal(err)
			}
		}, "does not exist", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newNodeDir(t)
			tt.setup(t, d)
			now := t0
			ca := &fakeCA{policy: testPolicy(t, ModeOff)}
			r := testRunner(d, &now, ca.fetch)
			if got, err := r.Answer("principals", "root", "eve", "1"); got != "root\n" || err != nil {
				t.Fatalf("Answer = %q, %v; want the answer from the fetched policy", got, err)
			}
			if ca.calls != 1 {
				t.Errorf("Fetch called %d times, want 1", ca.calls)
			}
			if tt.written {
				if c := readCache(t, d); !c.Confirmed.Equal(now) {
					t.Errorf("cache confirmed %v, want %v", c.Confirmed, now)
				}
			}

			// When the CA cannot be asked either, the denial says why.
			d = newNodeDir(t)
			tt.setup(t, d)
			ca = &fakeCA{err: errors.New("no route to host")}
			r = testRunner(d, &now, ca.fetch)
			got, err := r.Answer("principals", "root", "eve", "1")
			if got != "" || err == nil {
				t.Fatalf("CA down: Answer = %q, %v; want a denial", got, err)
			}
			wantDenied(t, err, "the policy cache is unreadable", tt.why, "no route to host", "failing closed")
		})
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestAnswerBadPolicyFromCA: an answer from the CA that cannot become a
// cache denies and leaves the cache alone.
func TestAnswerBadPolicyFromCA(t *testing.T) {
	t.Parallel()
	for _, st := range needCAStates {
		t.Run(st.state, func(t *testing.T) {
			t.Parallel()
			now := t0
			d := needCA(t, st.state, now)
			before := cacheFile(t, d)
			p := testPolicy(t, ModeOff)
			p.UserCA = "not a key"
			ca := &fakeCA{policy: p}
			got, err := testRunner(d, &now, ca.fetch).Answer("principals", "root", "alice", "1")
			if got != "" || err == nil {
				t.Fatalf("Answer = %q, %v; want a denial", got, err)
			}
			wantDenied(t, err, st.why, "bad off CA key", "failing closed")
			if b := cacheFile(t, d); !bytes.Equal(b, before) {
				t.Errorf("the cache was rewritten from a bad policy:\n%s", b)
			}
		})
	}
}

// TestAnswerConfirmedInFuture: a cache confirmed after the node's clock
// (written before the clock was stepped back) must not count as fresh
// until the clock catches up, which may be far away.
func TestAnswerConfirmedInFuture(t *testing.T) {
	t.Parallel()
	d := newNodeDir(t)
	now := t0
	writeCache(t, d, cacheConfirmedAt(t, now.Add(365*24*time.Hour)))
	ca := &fakeCA{err: errors.New("connection refused")}
	if got, err := testRunner(d, &now, ca.fetch).Answer("principals", "root", "alice", "1"); got != "" || err == nil || ca.calls != 1 {
		t.Errorf("Answer = %q, %v after %d fetches; want a denial after asking the CA", got, err, ca.calls)
	}
}

func TestMainUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		nil,
		{"principals"},
		{"principals", "root", "alice"},
		{"principals", "root", "alice", "1", "extra"},
		{"keys", "root", "ssh-ed25519-cert-v01@openssh.com"},
		{"login", "root", "alice", "1"},
		{"--bogus", "principals", "root", "alice", "1"},
		{"--max-age", "soon", "principals", "root", "alice", "1"},
		{"--data-dir"},
		{"-h"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := Main(args, &stdout, &stderr); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
			if !strings.Contains(stderr.String(), "Usage:") || !strings.Contains(stderr.String(), "AuthorizedPrincipalsCommand") {
				t.Errorf("stderr has no usage:\n%s", stderr.String())
			}
		})
	}
}

// mainDir is a data directory whose cache time.Now() just confirmed.
func mainDir(t *testing.T) nodedir.Dir {
	d := newNodeDir(t)
	writeCache(t, d, cacheConfirmedAt(t, time.Now()))
	return d
}

func TestMainAllowed(t *testing.T) {
	t.Parallel()
	typ, key := offered(signCert(t, testSigner(t, seedTrustedCA), ssh.UserCert, "alice", 1))
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"principals", "root", "alice", "1"}, "root\n"},
		{[]string{"keys", "deploy", typ, key}, wantKeysLine(t, "deploy")},
	} {
		t.Run(tt.args[0], func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			args := append([]string{"--data-dir", string(mainDir(t))}, tt.args...)
			if code := Main(args, &stdout, &stderr); code != 0 {
				t.Errorf("exit %d, want 0; stderr:\n%s", code, stderr.String())
			}
			if stdout.String() != tt.want {
				t.Errorf("stdout %q, want %q", stdout.String(), tt.want)
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr %q, want nothing", stderr.String())
			}
		})
	}
}

func TestMainDenied(t *testing.T) {
	t.Parallel()
	typ, key := offered(signCert(t, testSigner(t, seedOtherCA), ssh.UserCert, "alice", 1))
	for _, tt := range []struct {
		name  string
		dir   func(t *testing.T) nodedir.Dir
		args  []string
		wants []string
		bug   string // non-empty: a known bug, the case is skipped
	}{
		{"unknown user", mainDir, []string{"principals", "root", "eve", "1"}, []string{"eve has no login"}, ""},
		{"other login", mainDir, []string{"principals", "admin", "alice", "1"}, []string{"may not log in as admin"}, ""},
		{"other CA", mainDir, []string{"keys", "root", typ, key}, []string{"not signed by the CA"}, ""},
		// No cache and no node identity: asking the CA fails.
		{"no cache", newNodeDir, []string{"principals", "root", "alice", "1"}, []string{"does not exist", "failing closed"}, ""},
		// The cache is too old for --max-age; node.json is missing.
		{"max-age", mainDir, []string{"--max-age", "1ns", "principals", "root", "alice", "1"}, []string{"more than 1ns ago", "has not joined", "failing closed"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.bug != "" {
				t.Skip(tt.bug)
			}
			t.Parallel()
			var stdout, stderr bytes.Buffer
			args := append([]string{"--data-dir", string(tt.dir(t))}, tt.args...)
			if code := Main(args, &stdout, &stderr); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
			if !strings.HasPrefix(stderr.String(), "teleport-authkeys: denied: ") || strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("stderr %q is not one \"teleport-authkeys: denied: ...\" line", stderr.String())
			}
			for _, w := range tt.wants {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not mention %q", stderr.String(), w)
				}
			}
		})
	}
}
