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

// userRecord is a user as stored. It holds secrets and never leaves the
// authority; api.User is its public view.
type userRecord struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`

	PasswordHash string `json:"password_hash,omitempty"` // PHC argon2id
	TOTPSecret   string `json:"totp_secret,omitempty"`   // base32
	// LastTOTPCounter is the time step of the last accepted code; a code
	// at or below it is a replay.
	LastTOTPCounter uint64 `json:"last_totp_counter,omitempty"`
	// Pending: created without a password, waiting for enrollment.
	Pending bool `json:"pending,omitempty"`

	// Locked is an administrator's lock without end.
	Locked bool `json:"locked,omitempty"`
	// LockedUntil is a lock that ends (administrator or failed sign-ins).
	LockedUntil  time.Time `json:"locked_until,omitzero"`
	LockReason   string    `json:"lock_reason,omitempty"`
	FailedLogins int       `json:"failed_logins,omitempty"`

	Created   time.Time `json:"created"`
	LastLogin time.Time `json:"last_login,omitzero"`
	// UID of the user's personal account on nodes, assigned on first need
	// and never given to anyone else (see allocID).
	UID uint32 `json:"uid,omitempty"`
}

func (u *userRecord) locked(now time.Time) bool {
	return u.Locked || now.Before(u.LockedUntil)
}

func (u *userRecord) view(now time.Time) api.User {
	v := api.User{
		Name: u.Name, Roles: u.Roles, Status: "active",
		FailedLogins: u.FailedLogins, Created: u.Created,
	}
	switch {
	case u.locked(now):
		v.Status, v.LockReason = "locked", u.LockReason
		if !u.Locked {
			t := u.LockedUntil
			v.LockedUntil = &t
		}
	case u.Pending:
		v.Status = "pending"
	}
	if !u.LastLogin.IsZero() {
		t := u.LastLogin
		v.LastLogin = &t
	}
	return v
}

func userKey(name string) string { return "users/" + name }

// personalRole is the role `users add --logins` makes.
func personalRole(user string) string { return "user:" + user }

// ErrNotFound: the named user, role or token does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists: the named user or role already exists.
var ErrExists = errors.New("already exists")

func (a *Authority) getUser(ctx context.Context, name string) (*userRecord, int64, error) {
	it, err := a.store.Get(ctx, userKey(name))
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, fmt.Errorf("ca: user %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, 0, err
	}
	u, err := decodeItem[userRecord](&a.decoded, it)
	if err != nil {
		return nil, 0, fmt.Errorf("ca: user %q: damaged record: %w", name, err)
	}
	u.Roles = slices.Clone(u.Roles) // the caller owns its copy
	return &u, it.Revision, nil
}

// updateUser applies fn to the user record with compare-and-swap, retrying
// when another writer got there first. fn may return an error to abort.
func (a *Authority) updateUser(ctx context.Context, name string, fn func(u *userRecord) error) (*userRecord, error) {
	for {
		u, rev, err := a.getUser(ctx, name)
		if err != nil {
			return nil, err
		}
		if err := fn(u); err != nil {
			return u, err
		}
		b, err := json.Marshal(u)
		if err != nil {
			return nil, err
		}
		_, err = a.store.CompareAndSwap(ctx, userKey(name), rev, b)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("ca: user %q: %w", name, ErrNotFound)
		}
		return u, err
	}
}

// AddUser creates a user. See api.AddUserRequest.
func (a *Authority) AddUser(ctx context.Context, req api.AddUserRequest, actor string) (api.AddUserResponse, error) {
	var resp api.AddUserResponse
	if err := ValidateUserName(req.Name); err != nil {
		return resp, err
	}
	if len(req.Logins) == 0 && len(req.Roles) == 0 {
		return resp, invalidf("user %q would have no roles: give --logins or --roles", req.Name)
	}
	roles, err := a.rolesForNewUser(ctx, req)
	if err != nil {
		return resp, err
	}
	now := a.now()
	u := &userRecord{Name: req.Name, Roles: roles, Created: now.UTC()}
	if req.Password != "" {
		if err := checkNewPassword(req.Password); err != nil {
			return resp, err
		}
		if u.PasswordHash, err = a.hash(req.Password); err != nil {
			return resp, err
		}
		if u.TOTPSecret, resp.OTPAuthURI, err = newTOTP(a.cfg.TOTPIssuer, req.Name, a.rand); err != nil {
			return resp, err
		}
	} else {
		u.Pending = true
	}
	personal := api.Role{Name: personalRole(req.Name), Logins: req.Logins, NodeLabels: map[string][]string{"*": {"*"}}}
	if len(req.Logins) > 0 {
		if err := a.validateRole(&personal); err != nil {
			return resp, err
		}
	}
	b, err := json.Marshal(u)
	if err != nil {
		return resp, err
	}
	// Claim the name first: a failed add must not touch an existing
	// user's personal role.
	if _, err := a.store.Create(ctx, userKey(req.Name), b); errors.Is(err, store.ErrExists) {
		return resp, fmt.Errorf("ca: user %q: %w", req.Name, ErrExists)
	} else if err != nil {
		return resp, err
	}
	if len(req.Logins) > 0 {
		if err := a.putRole(ctx, personal); err != nil {
			_ = a.store.Delete(ctx, userKey(req.Name))
			return resp, err
		}
	}
	if u.Pending {
		if resp.EnrollURL, resp.EnrollExpires, err = a.newEnrollment(ctx, req.Name, now); err != nil {
			return resp, err
		}
	}
	resp.User = u.view(now)
	return resp, a.auditAdmin(ctx, "user.add", req.Name, actor, map[string]string{"roles": joinList(roles)})
}

func (a *Authority) rolesForNewUser(ctx context.Context, req api.AddUserRequest) ([]string, error) {
	var roles []string
	for _, r := range req.Roles {
		if _, _, err := a.getRole(ctx, r); err != nil {
			return nil, err
		}
		roles = append(roles, r)
	}
	if len(req.Logins) > 0 {
		roles = append(roles, personalRole(req.Name))
	}
	slices.Sort(roles)
	return slices.Compact(roles), nil
}

func (a *Authority) hash(pw string) (string, error) {
	a.hashSem <- struct{}{}
	defer func() { <-a.hashSem }()
	return hashPassword(pw, a.cfg.Argon2, a.rand)
}

// Users lists all users.
func (a *Authority) Users(ctx context.Context) ([]api.User, error) {
	items, _, err := a.store.List(ctx, "users/")
	if err != nil {
		return nil, err
	}
	now := a.now()
	out := make([]api.User, 0, len(items))
	for _, it := range items {
		var u userRecord
		if err := json.Unmarshal(it.Value, &u); err != nil {
			return nil, fmt.Errorf("ca: %s: damaged record: %w", it.Key, err)
		}
		out = append(out, u.view(now))
	}
	return out, nil
}

// RemoveUser deletes a user, their personal role and their sign-in
// sessions. New sign-ins and issuance stop at once.
func (a *Authority) RemoveUser(ctx context.Context, name, actor string) error {
	if err := ValidateUserName(name); err != nil {
		return err
	}
	if err := a.store.Delete(ctx, userKey(name)); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("ca: user %q: %w", name, ErrNotFound)
	} else if err != nil {
		return err
	}
	if err := a.store.Delete(ctx, roleKey(personalRole(name))); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := a.endSessionsOf(ctx, name); err != nil {
		return err
	}
	// A link left over would enroll a later user of the same name.
	if err := a.deleteEnrollmentsOf(ctx, name); err != nil {
		return err
	}
	return a.auditAdmin(ctx, "user.remove", name, actor, nil)
}

// LockUser locks a user until the given time (nil: until unlocked).
func (a *Authority) LockUser(ctx context.Context, name string, req api.LockRequest, actor string) error {
	now := a.now()
	if req.Until != nil && !req.Until.After(now) {
		return invalidf("lock end %s is in the past", req.Until.Format(time.RFC3339))
	}
	if bad := describeBad(strings.ReplaceAll(req.Reason, " ", "")); bad != "" || len(req.Reason) > 200 {
		return invalidf("lock reason must be one line of printable text, at most 200 characters")
	}
	_, err := a.updateUser(ctx, name, func(u *userRecord) error {
		u.Locked, u.LockedUntil, u.LockReason = req.Until == nil, time.Time{}, req.Reason
		if req.Until != nil {
			u.LockedUntil = req.Until.UTC()
		}
		if u.LockReason == "" {
			u.LockReason = "locked by an administrator"
		}
		return nil
	})
	if err != nil {
		return err
	}
	f := map[string]string{"reason": req.Reason}
	if req.Until != nil {
		f["until"] = req.Until.UTC().Format(time.RFC3339)
	}
	return a.auditAdmin(ctx, "user.lock", name, actor, f)
}

// UnlockUser lifts any lock and clears the failed sign-in count.
func (a *Authority) UnlockUser(ctx context.Context, name, actor string) error {
	_, err := a.updateUser(ctx, name, func(u *userRecord) error {
		u.Locked, u.LockedUntil, u.LockReason, u.FailedLogins = false, time.Time{}, "", 0
		return nil
	})
	if err != nil {
		return err
	}
	return a.auditAdmin(ctx, "user.unlock", name, actor, nil)
}
