package ca

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// Token roles: what a token lets its bearer join as.
const (
	TokenNode      = "node"
	TokenProxy     = "proxy"
	TokenKeyhelper = "keyhelper"
)

const (
	defaultTokenTTL = 15 * time.Minute
	maxTokenTTL     = 7 * 24 * time.Hour
)

// tokenRecord is stored under "tokens/<sha256 of the secret>"; the secret
// itself is never stored.
type tokenRecord struct {
	api.Token
	Used bool `json:"used,omitempty"`
}

func tokenHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// AddToken creates a join or device token and returns its secret once.
func (a *Authority) AddToken(ctx context.Context, req api.AddTokenRequest, actor string) (api.AddTokenResponse, error) {
	var resp api.AddTokenResponse
	if err := a.validateTokenRequest(ctx, req); err != nil {
		return resp, err
	}
	ttl := time.Duration(req.TTL)
	if ttl == 0 {
		ttl = defaultTokenTTL
	}
	secret, err := newSecretHex(a.rand)
	if err != nil {
		return resp, err
	}
	now := a.now()
	h := tokenHash(secret)
	rec := tokenRecord{Token: api.Token{
		ID: h[:16], Role: req.Role, Labels: req.Labels, User: req.User,
		Expires: now.Add(ttl).UTC(), Reusable: req.Reusable, Created: now.UTC(),
	}}
	b, err := json.Marshal(rec)
	if err != nil {
		return resp, err
	}
	if _, err := a.store.Create(ctx, "tokens/"+h, b); err != nil {
		return resp, err
	}
	f := map[string]string{"token_id": rec.ID, "role": req.Role, "expires": rec.Expires.Format(time.RFC3339)}
	if err := a.auditAdmin(ctx, "token.add", req.User, actor, f); err != nil {
		return resp, err
	}
	return api.AddTokenResponse{Token: rec.Token, Secret: secret}, nil
}

func (a *Authority) validateTokenRequest(ctx context.Context, req api.AddTokenRequest) error {
	switch req.Role {
	case TokenNode, TokenProxy:
		if req.User != "" {
			return invalidf("--user is only for keyhelper tokens")
		}
	case TokenKeyhelper:
		if req.User == "" {
			return invalidf("a keyhelper token needs --user: the user whose device it registers")
		}
		if len(req.Labels) > 0 {
			return invalidf("labels are for node and proxy tokens")
		}
		if _, _, err := a.getUser(ctx, req.User); err != nil {
			return err
		}
	default:
		return invalidf("token role %q is not node, proxy or keyhelper", req.Role)
	}
	for k, v := range req.Labels {
		if err := ValidateLabel(k, v); err != nil {
			return err
		}
	}
	if ttl := time.Duration(req.TTL); ttl < 0 || ttl > maxTokenTTL {
		return invalidf("token ttl %v is outside 0..%v", ttl, maxTokenTTL)
	}
	return nil
}

func newSecretHex(r io.Reader) (string, error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Tokens lists unexpired tokens (the secrets are not kept).
func (a *Authority) Tokens(ctx context.Context) ([]api.Token, error) {
	items, _, err := a.store.List(ctx, "tokens/")
	if err != nil {
		return nil, err
	}
	now := a.now()
	out := []api.Token{}
	for _, it := range items {
		var t tokenRecord
		if err := json.Unmarshal(it.Value, &t); err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		if now.Before(t.Expires) && !t.Used {
			out = append(out, t.Token)
		}
	}
	return out, nil
}

// RemoveToken deletes the token whose ID (or a unique prefix of it, at
// least 8 hex digits) is id.
func (a *Authority) RemoveToken(ctx context.Context, id, actor string) error {
	if len(id) < 8 || len(id) > 64 || strings.Trim(id, "0123456789abcdef") != "" {
		return invalidf("token id %q is not 8 to 64 lower-case hex digits (see caadm tokens ls)", id)
	}
	items, _, err := a.store.List(ctx, "tokens/"+id)
	if err != nil {
		return err
	}
	switch len(items) {
	case 0:
		return fmt.Errorf("ca: token %s: %w", id, ErrNotFound)
	case 1:
	default:
		return invalidf("token id %q matches %d tokens; give more digits", id, len(items))
	}
	if err := a.store.Delete(ctx, items[0].Key); err != nil {
		return err
	}
	return a.auditAdmin(ctx, "token.remove", "", actor, map[string]string{"token_id": id})
}

// ErrBadToken: the token does not exist, expired, was used, or is for
// another role. One error for all, so a guesser learns nothing.
var ErrBadToken = errors.New("token is unknown, expired, already used or for another role; ask for a new one (caadm tokens add)")

// ConsumeToken checks a token for role and, if it is single-use, marks it
// used; two concurrent uses race on compare-and-swap and one loses.
func (a *Authority) ConsumeToken(ctx context.Context, secret, role string) (api.Token, error) {
	if len(secret) != 64 {
		return api.Token{}, ErrBadToken
	}
	key := "tokens/" + tokenHash(secret)
	for {
		it, err := a.store.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return api.Token{}, ErrBadToken
		}
		if err != nil {
			return api.Token{}, err
		}
		var t tokenRecord
		if err := json.Unmarshal(it.Value, &t); err != nil {
			return api.Token{}, fmt.Errorf("ca: damaged token record: %w", err)
		}
		if t.Used || !a.now().Before(t.Expires) || subtle.ConstantTimeCompare([]byte(t.Role), []byte(role)) != 1 {
			return api.Token{}, ErrBadToken
		}
		t.Uses++
		t.Used = !t.Reusable
		b, err := json.Marshal(t)
		if err != nil {
			return api.Token{}, err
		}
		if _, err := a.store.CompareAndSwap(ctx, key, it.Revision, b); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			return api.Token{}, err
		}
		return t.Token, nil
	}
}

// enrollment is a pending user's one-time link, stored under
// "enroll/<sha256 of the secret>".
type enrollment struct {
	User    string    `json:"user"`
	Expires time.Time `json:"expires"`
}

func (a *Authority) newEnrollment(ctx context.Context, user string, now time.Time) (string, time.Time, error) {
	secret, err := randomToken(a.rand)
	if err != nil {
		return "", time.Time{}, err
	}
	e := enrollment{User: user, Expires: now.Add(a.cfg.EnrollTTL).UTC()}
	b, err := json.Marshal(e)
	if err != nil {
		return "", time.Time{}, err
	}
	if _, err := a.store.Create(ctx, "enroll/"+tokenHash(secret), b); err != nil {
		return "", time.Time{}, err
	}
	base := strings.TrimSuffix(a.cfg.PublicURL, "/")
	return base + "/enroll/" + secret, e.Expires, nil
}
