package ca

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/opensshca/suite/ca/api"
	"github.com/opensshca/suite/ca/store"
)

// UpdateUser changes a user's roles and personal logins. Access shrinks or
// grows at once for new certificates; certificates already issued keep
// their principals until they expire (the proxy and nodes check roles
// live).
func (a *Authority) UpdateUser(ctx context.Context, name string, req api.UpdateUserRequest, actor string) (api.User, error) {
	if err := ValidateUserName(name); err != nil {
		return api.User{}, err
	}
	if req.Roles == nil && req.Logins == nil {
		return api.User{}, invalidf("nothing to change: give roles or logins")
	}
	var personal *api.Role
	if req.Logins != nil && len(*req.Logins) > 0 {
		personal = &api.Role{Name: personalRole(name), Logins: *req.Logins, NodeLabels: map[string][]string{"*": {"*"}}}
		if err := a.validateRole(personal); err != nil {
			return api.User{}, err
		}
	}
	var granted []string
	if req.Roles != nil {
		for _, r := range *req.Roles {
			if strings.HasPrefix(r, "user:") {
				return api.User{}, invalidf("role %q is a personal role; change it with logins", r)
			}
			if _, _, err := a.getRole(ctx, r); err != nil {
				return api.User{}, err
			}
			granted = append(granted, r)
		}
	}
	u, err := a.updateUser(ctx, name, func(u *userRecord) error {
		hasPersonal := slices.Contains(u.Roles, personalRole(name))
		if req.Roles != nil {
			u.Roles = slices.Clone(granted)
			if hasPersonal {
				u.Roles = append(u.Roles, personalRole(name))
			}
		}
		if req.Logins != nil {
			u.Roles = slices.DeleteFunc(u.Roles, func(r string) bool { return r == personalRole(name) })
			if personal != nil {
				u.Roles = append(u.Roles, personalRole(name))
			}
		}
		slices.Sort(u.Roles)
		u.Roles = slices.Compact(u.Roles)
		return nil
	})
	if err != nil {
		return api.User{}, err
	}
	// The personal role follows the user record: written after it when
	// added, deleted after it when dropped, so a reader never sees the
	// user granted a role with stale logins for longer than this call.
	if personal != nil {
		if err := a.putRole(ctx, *personal); err != nil {
			return api.User{}, err
		}
	} else if req.Logins != nil {
		if err := a.store.Delete(ctx, roleKey(personalRole(name))); err != nil && !errors.Is(err, store.ErrNotFound) {
			return api.User{}, err
		}
	}
	f := map[string]string{"roles": joinList(u.Roles)}
	if req.Logins != nil {
		f["logins"] = joinList(*req.Logins)
	}
	return u.view(a.now()), a.auditAdmin(ctx, "user.update", name, actor, f)
}

// ResetUser replaces a user's password and TOTP secret (see
// api.ResetUserRequest) and ends every sign-in session of the user.
func (a *Authority) ResetUser(ctx context.Context, name string, req api.ResetUserRequest, actor string) (api.AddUserResponse, error) {
	var resp api.AddUserResponse
	if err := ValidateUserName(name); err != nil {
		return resp, err
	}
	var hash, secret string
	if req.Password != "" {
		if err := checkNewPassword(req.Password); err != nil {
			return resp, err
		}
		var err error
		if hash, err = a.hash(req.Password); err != nil {
			return resp, err
		}
		if secret, resp.OTPAuthURI, err = newTOTP(a.cfg.TOTPIssuer, name, a.rand); err != nil {
			return resp, err
		}
	}
	u, err := a.updateUser(ctx, name, func(u *userRecord) error {
		u.PasswordHash, u.TOTPSecret, u.Pending = hash, secret, hash == ""
		// The new secret starts a new code sequence: no code of the old
		// one may pass, and the replay floor starts over.
		u.LastTOTPCounter, u.FailedLogins = 0, 0
		return nil
	})
	if err != nil {
		return resp, err
	}
	if err := a.endSessionsOf(ctx, name); err != nil {
		return resp, err
	}
	// A reset cancels earlier links too: one may have leaked.
	if err := a.deleteEnrollmentsOf(ctx, name); err != nil {
		return resp, err
	}
	now := a.now()
	if u.Pending {
		if resp.EnrollURL, resp.EnrollExpires, err = a.newEnrollment(ctx, name, now); err != nil {
			return resp, err
		}
	}
	resp.User = u.view(now)
	return resp, a.auditAdmin(ctx, "user.reset", name, actor, map[string]string{"enrollment": map[bool]string{true: "link", false: "password"}[u.Pending]})
}
