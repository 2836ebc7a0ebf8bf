package ca

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// UserLoginPlaceholder in a role's logins stands for the user's own name.
const UserLoginPlaceholder = api.UserLoginPlaceholder

func roleKey(name string) string { return "roles/" + name }

func (a *Authority) validateRole(r *api.Role) error {
	if err := ValidateRoleName(r.Name); err != nil {
		return err
	}
	if len(r.Logins) == 0 {
		return invalidf("role %q has no logins", r.Name)
	}
	for _, l := range r.Logins {
		if l == UserLoginPlaceholder {
			continue
		}
		if err := a.logins.Validate(l); err != nil {
			return fmt.Errorf("role %q: %w", r.Name, err)
		}
	}
	for k, vs := range r.NodeLabels {
		if k == "*" {
			if !slices.Equal(vs, []string{"*"}) {
				return invalidf("role %q: the label key \"*\" only takes the value \"*\" (all nodes)", r.Name)
			}
			continue
		}
		if err := ValidateLabel(k, ""); err != nil {
			return fmt.Errorf("role %q: %w", r.Name, err)
		}
		if len(vs) == 0 {
			return invalidf("role %q: label %q has no values", r.Name, k)
		}
		for _, v := range vs {
			if v == "*" {
				continue
			}
			if err := ValidateLabel(k, v); err != nil {
				return fmt.Errorf("role %q: %w", r.Name, err)
			}
		}
	}
	if r.MaxTTL < 0 || time.Duration(r.MaxTTL) > HardMaxTTL {
		return invalidf("role %q: max ttl %v is outside 0..%v", r.Name, time.Duration(r.MaxTTL), HardMaxTTL)
	}
	for _, s := range r.SourceAddress {
		if err := ValidateSourceAddress(s); err != nil {
			return fmt.Errorf("role %q: %w", r.Name, err)
		}
	}
	for _, g := range r.Groups {
		if err := checkName("group", g, groupNameRE, "use a POSIX group name: lower-case letters, digits, '_' and '-', starting with a letter or '_', at most 32 characters"); err != nil {
			return fmt.Errorf("role %q: %w", r.Name, err)
		}
	}
	if len(r.Groups) > 0 && !slices.Contains(r.Logins, UserLoginPlaceholder) {
		return invalidf("role %q: groups apply to the personal accounts a role makes; add the login %q", r.Name, UserLoginPlaceholder)
	}
	return nil
}

func (a *Authority) putRole(ctx context.Context, r api.Role) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = a.store.Put(ctx, roleKey(r.Name), b)
	return err
}

// getRole reads a role. Its maps and slices may be shared: read only.
func (a *Authority) getRole(ctx context.Context, name string) (api.Role, int64, error) {
	it, err := a.store.Get(ctx, roleKey(name))
	if errors.Is(err, store.ErrNotFound) {
		return api.Role{}, 0, fmt.Errorf("ca: role %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return api.Role{}, 0, err
	}
	r, err := decodeItem[api.Role](&a.decoded, it)
	if err != nil {
		return api.Role{}, 0, fmt.Errorf("ca: role %q: damaged record: %w", name, err)
	}
	return r, it.Revision, nil
}

// AddRole creates or replaces a role. Personal roles ("user:...") are
// managed through users add and cannot be written directly.
func (a *Authority) AddRole(ctx context.Context, r api.Role, actor string) (api.Role, error) {
	if strings.HasPrefix(r.Name, "user:") {
		return r, invalidf("role names starting with \"user:\" are personal roles; use caadm users add --logins")
	}
	if err := a.validateRole(&r); err != nil {
		return r, err
	}
	if err := a.ensureGroupIDs(ctx, r.Groups); err != nil {
		return r, err
	}
	if err := a.putRole(ctx, r); err != nil {
		return r, err
	}
	return r, a.auditAdmin(ctx, "role.put", "", actor, map[string]string{"role": r.Name, "logins": joinList(r.Logins)})
}

// Roles lists all roles.
func (a *Authority) Roles(ctx context.Context) ([]api.Role, error) {
	items, _, err := a.store.List(ctx, "roles/")
	if err != nil {
		return nil, err
	}
	out := make([]api.Role, 0, len(items))
	for _, it := range items {
		var r api.Role
		if err := json.Unmarshal(it.Value, &r); err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// RemoveRole deletes a role. Users that name it lose what it granted at
// once: a missing role grants nothing.
func (a *Authority) RemoveRole(ctx context.Context, name, actor string) error {
	if err := ValidateRoleName(name); err != nil {
		return err
	}
	if err := a.store.Delete(ctx, roleKey(name)); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("ca: role %q: %w", name, ErrNotFound)
	} else if err != nil {
		return err
	}
	return a.auditAdmin(ctx, "role.remove", "", actor, map[string]string{"role": name})
}

// grant is what a user's roles allow, merged.
type grant struct {
	logins []string
	maxTTL time.Duration // smallest non-zero role cap
	perms  map[string]string
	source []string
}

// userGrant merges the roles of u. A role that no longer exists grants
// nothing. Source-address restrictions fail closed: when any role has
// one, the certificate carries the union of them all.
func (a *Authority) userGrant(ctx context.Context, u *userRecord) (grant, error) {
	g := grant{perms: map[string]string{extPTY: ""}}
	for _, name := range u.Roles {
		r, _, err := a.getRole(ctx, name)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return g, err
		}
		for _, l := range r.Logins {
			if l == UserLoginPlaceholder {
				l = u.Name
			}
			if a.logins.Validate(l) == nil && !slices.Contains(g.logins, l) {
				g.logins = append(g.logins, l)
			}
		}
		if r.MaxTTL > 0 && (g.maxTTL == 0 || time.Duration(r.MaxTTL) < g.maxTTL) {
			g.maxTTL = time.Duration(r.MaxTTL)
		}
		setIf(g.perms, extAgent, r.PermitAgentForwarding)
		setIf(g.perms, extPortForwarding, r.PermitPortForwarding)
		setIf(g.perms, extX11, r.PermitX11Forwarding)
		g.source = append(g.source, r.SourceAddress...)
	}
	slices.Sort(g.logins)
	slices.Sort(g.source)
	g.source = slices.Compact(g.source)
	return g, nil
}

func setIf(m map[string]string, k string, ok bool) {
	if ok {
		m[k] = ""
	}
}
