package ca

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// A node's policy is computed from users, roles, revocations and the
// node's labels. Nodes follow it with a long poll: the CA answers at once
// when the node's copy (named by its hash) is out of date, and otherwise
// holds the request until something that could change it is written, so a
// removal or lock reaches every node within a round trip.

// MaxPolicyWait caps how long a policy request is held.
const MaxPolicyWait = 25 * time.Second

// policyPrefixes are the store prefixes a node policy is computed from.
var policyPrefixes = []string{"users/", "roles/", "revoked/", "nodes/", "nss/groups/", "proxies/"}

// changeNotifier wakes waiters when a policy input changes. wait returns
// a channel that is closed at the next change.
type changeNotifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *changeNotifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *changeNotifier) fire() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

// followPolicyInputs watches the policy prefixes until ctx ends. A watch
// that closes (the watcher fell behind, the store was compacted) is
// re-established, and waiters are woken since a change may be lost.
func (a *Authority) followPolicyInputs(ctx context.Context) {
	for _, prefix := range policyPrefixes {
		go func() {
			for ctx.Err() == nil {
				ch, err := a.store.Watch(ctx, prefix, 0)
				if err != nil {
					if errors.Is(err, store.ErrClosed) {
						return
					}
					a.log.Warn("policy watch failed; retrying", "prefix", prefix, "err", err)
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
					continue
				}
				for range ch {
					a.policyChanged.fire()
				}
				a.policyChanged.fire()
			}
		}()
	}
}

// NodePolicy waits until the node's policy differs from the one whose hash
// the node holds, or until wait passes, and returns the current policy.
func (a *Authority) NodePolicy(ctx context.Context, n *authenticatedNode, have string, wait time.Duration, remote string) (api.NodePolicy, error) {
	a.touchNode(ctx, n, remote, a.now())
	return longPoll(ctx, a, have, wait, func() (api.NodePolicy, string, error) {
		p, err := a.buildNodePolicy(ctx, n.rec.Name)
		return p, p.Hash, err
	})
}

// longPoll builds a policy until its hash differs from have, an input
// changes, wait passes (capped at MaxPolicyWait) or ctx ends, and returns
// the last one built.
func longPoll[T any](ctx context.Context, a *Authority, have string, wait time.Duration, build func() (T, string, error)) (T, error) {
	wait = min(max(wait, 0), MaxPolicyWait)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		changed := a.policyChanged.wait()
		p, hash, err := build()
		if err != nil || hash != have {
			return p, err
		}
		select {
		case <-changed:
		case <-timer.C:
			return p, nil
		case <-ctx.Done():
			return p, ctx.Err()
		}
	}
}

// matchLabels reports whether a role's node selector selects a node with
// the given labels (api.MatchLabels: the proxy decides with the same code).
func matchLabels(sel map[string][]string, labels map[string]string) bool {
	return api.MatchLabels(sel, labels)
}

// buildNodePolicy computes the policy of the node called name. A node that
// has been removed gets ErrBadNode.
func (a *Authority) buildNodePolicy(ctx context.Context, name string) (api.NodePolicy, error) {
	it, err := a.store.Get(ctx, nodeKey(name))
	if errors.Is(err, store.ErrNotFound) {
		return api.NodePolicy{}, ErrBadNode
	}
	if err != nil {
		return api.NodePolicy{}, err
	}
	node, err := decodeItem[nodeRecord](&a.decoded, it)
	if err != nil {
		return api.NodePolicy{}, fmt.Errorf("ca: damaged node record: %w", err)
	}
	info := a.Info()
	p := api.NodePolicy{
		Node: node.Name, Labels: node.Labels, RecordingMode: info.RecordingMode,
		UserCA: info.UserCA, SessionCA: info.SessionCA, HostCA: info.HostCA,
		Users: []api.NodeUser{}, Revoked: []api.RevokedSerial{},
	}
	roles, err := a.rolesByName(ctx)
	if err != nil {
		return p, err
	}
	users, _, err := a.store.List(ctx, "users/")
	if err != nil {
		return p, err
	}
	now := a.now()
	groupsNamed := map[string]bool{}
	for _, item := range users {
		u, err := decodeItem[userRecord](&a.decoded, item)
		if err != nil {
			return p, fmt.Errorf("ca: %s: damaged record: %w", item.Key, err)
		}
		if u.Pending {
			continue
		}
		nu := api.NodeUser{Name: u.Name, Locked: u.locked(now), Logins: []string{}}
		personal := false
		for _, rn := range u.Roles {
			r, ok := roles[rn]
			if !ok || !matchLabels(r.NodeLabels, node.Labels) {
				continue
			}
			for _, l := range r.Logins {
				if l == UserLoginPlaceholder {
					if a.logins.Validate(u.Name) != nil {
						continue
					}
					l, personal = u.Name, true
					for _, g := range r.Groups {
						if !slices.Contains(nu.Groups, g) {
							nu.Groups = append(nu.Groups, g)
						}
					}
				}
				if !slices.Contains(nu.Logins, l) {
					nu.Logins = append(nu.Logins, l)
				}
			}
		}
		if len(nu.Logins) == 0 {
			continue
		}
		if personal {
			if nu.UID, err = a.userID(ctx, &u); err != nil {
				return p, err
			}
			for _, g := range nu.Groups {
				groupsNamed[g] = true
			}
		}
		slices.Sort(nu.Logins)
		slices.Sort(nu.Groups)
		p.Users = append(p.Users, nu)
	}
	if len(groupsNamed) > 0 {
		gids, err := a.groupIDs(ctx)
		if err != nil {
			return p, err
		}
		p.Groups = map[string]uint32{}
		for g := range groupsNamed {
			if id, ok := gids[g]; ok {
				p.Groups[g] = id
			}
		}
	}
	if p.Revoked, err = a.revokedSerials(ctx, now); err != nil {
		return p, err
	}
	proxies, err := a.proxies(ctx)
	if err != nil {
		return p, err
	}
	for _, pr := range proxies {
		p.Proxies = append(p.Proxies, pr.info())
	}
	p.Hash = policyHash(p)
	p.Generated = now.UTC()
	return p, nil
}

func policyHash(p api.NodePolicy) string {
	p.Generated, p.Hash = time.Time{}, ""
	b, _ := json.Marshal(p) // maps marshal sorted: the hash is stable
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// rolesByName reads every role. The records may be shared: read only.
func (a *Authority) rolesByName(ctx context.Context) (map[string]api.Role, error) {
	items, _, err := a.store.List(ctx, "roles/")
	if err != nil {
		return nil, err
	}
	out := make(map[string]api.Role, len(items))
	for _, it := range items {
		r, err := decodeItem[api.Role](&a.decoded, it)
		if err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		out[r.Name] = r
	}
	return out, nil
}

// UID and GID assignment. Personal accounts get a uid (and a private group
// with the same gid) and role groups that a node does not have locally
// get a gid, all from one counter in Config.UIDMin..UIDMax. An id is
// handed out once and never again, even after its user is removed: a new
// user can never inherit the files of an old one.

const idCounterKey = "nss/next-id"

// allocID takes the next id from the counter.
func (a *Authority) allocID(ctx context.Context) (uint32, error) {
	for {
		it, err := a.store.Get(ctx, idCounterKey)
		next := int64(a.cfg.UIDMin)
		var rev int64
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return 0, err
		default:
			if _, err := fmt.Sscanf(string(it.Value), "%d", &next); err != nil {
				return 0, fmt.Errorf("ca: damaged id counter %q", it.Value)
			}
			rev = it.Revision
		}
		if next > int64(a.cfg.UIDMax) {
			return 0, fmt.Errorf("ca: the uid range %d-%d is used up; widen it with --uid-range", a.cfg.UIDMin, a.cfg.UIDMax)
		}
		val := []byte(fmt.Sprint(next + 1))
		if rev == 0 {
			_, err = a.store.Create(ctx, idCounterKey, val)
		} else {
			_, err = a.store.CompareAndSwap(ctx, idCounterKey, rev, val)
		}
		if errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return 0, err
		}
		return uint32(next), nil
	}
}

// userID returns u's uid, assigning one on first need.
func (a *Authority) userID(ctx context.Context, u *userRecord) (uint32, error) {
	if u.UID != 0 {
		return u.UID, nil
	}
	got, err := a.updateUser(ctx, u.Name, func(r *userRecord) error {
		if r.UID == 0 {
			id, err := a.allocID(ctx)
			if err != nil {
				return err
			}
			r.UID = id
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return got.UID, nil
}

// ensureGroupIDs gives every named group a gid if it has none.
func (a *Authority) ensureGroupIDs(ctx context.Context, groups []string) error {
	for _, g := range groups {
		if _, err := a.store.Get(ctx, "nss/groups/"+g); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		id, err := a.allocID(ctx)
		if err != nil {
			return err
		}
		if _, err := a.store.Create(ctx, "nss/groups/"+g, []byte(fmt.Sprint(id))); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
	}
	return nil
}

func (a *Authority) groupIDs(ctx context.Context) (map[string]uint32, error) {
	items, _, err := a.store.List(ctx, "nss/groups/")
	if err != nil {
		return nil, err
	}
	out := map[string]uint32{}
	for _, it := range items {
		var id uint32
		if _, err := fmt.Sscanf(string(it.Value), "%d", &id); err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record", it.Key)
		}
		out[strings.TrimPrefix(it.Key, "nss/groups/")] = id
	}
	return out, nil
}

// Revocation. A revoked serial is kept until the certificate expires; the
// sweeper may then drop it. Nodes get the live ones in their policy and
// write them as a KRL for sshd's RevokedKeys.

type revokedRecord = api.RevokedCert

func revokedKey(serial uint64) string { return fmt.Sprintf("revoked/%016x", serial) }

// Revoke revokes a certificate this CA issued, by serial.
func (a *Authority) Revoke(ctx context.Context, req api.RevokeRequest, actor string) (api.RevokedCert, error) {
	certs, err := a.IssuedCerts(ctx, "", req.Serial)
	if err != nil {
		return api.RevokedCert{}, err
	}
	if len(certs) == 0 {
		return api.RevokedCert{}, fmt.Errorf("ca: no certificate with serial %s was issued by this CA (see caadm certs ls): %w", req.Serial, ErrNotFound)
	}
	if len(req.Reason) > 200 || describeBad(strings.ReplaceAll(req.Reason, " ", "_")) != "" {
		return api.RevokedCert{}, invalidf("reason must be at most 200 printable ASCII characters")
	}
	c := certs[0]
	rec := revokedRecord{
		Serial: c.Serial, Type: c.Type, KeyID: c.KeyID, User: c.User,
		Expires: c.ValidBefore, Reason: req.Reason, Revoked: a.now().UTC(),
	}
	var serial uint64
	fmt.Sscanf(c.Serial, "%d", &serial)
	b, err := json.Marshal(rec)
	if err != nil {
		return rec, err
	}
	if _, err := a.store.Create(ctx, revokedKey(serial), b); errors.Is(err, store.ErrExists) {
		return rec, fmt.Errorf("ca: serial %s is already revoked: %w", c.Serial, ErrExists)
	} else if err != nil {
		return rec, err
	}
	return rec, a.auditAdmin(ctx, "cert.revoke", c.User, actor, map[string]string{"serial": c.Serial, "type": c.Type, "key_id": c.KeyID, "reason": req.Reason})
}

// Revoked lists the revocations whose certificates have not expired.
func (a *Authority) Revoked(ctx context.Context) ([]api.RevokedCert, error) {
	items, _, err := a.store.List(ctx, "revoked/")
	if err != nil {
		return nil, err
	}
	now := a.now()
	out := []api.RevokedCert{}
	for _, it := range items {
		r, err := decodeItem[revokedRecord](&a.decoded, it)
		if err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		if now.Before(r.Expires) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (a *Authority) revokedSerials(ctx context.Context, now time.Time) ([]api.RevokedSerial, error) {
	all, err := a.Revoked(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.RevokedSerial, 0, len(all))
	for _, r := range all {
		out = append(out, api.RevokedSerial{Serial: r.Serial, CA: r.Type, Expires: r.Expires})
	}
	return out, nil
}
