package nss

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Files renders the passwd and group files, sorted by name, deterministic.
// Each user also gets its private group line (name:x:GID:). Groups with the
// same name as a user's private group are an error. Names must match
// ^[a-z_][a-z0-9_-]{0,31}$; uid/gid 0 and duplicated names or ids are
// refused with an error naming the entry. Home and shell must be absolute
// clean paths without ':' or newline.
//
// IDs below [MinID] are refused as well as 0, since libnss-extrausers
// would skip their lines. Errors are [*EntryError]s. Members of a group
// are sorted and repeats dropped; they need not be users given here (a
// local account may be a member). The password field of users is "*" (see
// the package documentation). No users and no groups give empty files.
func Files(users []User, groups []Group) (passwd, group []byte, err error) {
	us, gs, err := entries(users, groups)
	if err != nil {
		return nil, nil, err
	}
	var pw, gr bytes.Buffer
	for _, u := range us {
		fmt.Fprintf(&pw, "%s:*:%d:%d:%s:%s:%s\n", u.Name, u.UID, u.GID, u.Gecos, u.Home, u.Shell)
	}
	for _, g := range gs {
		fmt.Fprintf(&gr, "%s:x:%d:%s\n", g.Name, g.GID, strings.Join(g.Members, ","))
	}
	return pw.Bytes(), gr.Bytes(), nil
}

// entries validates users and groups and returns them sorted by name, with
// defaults filled in and the users' private groups among the groups.
func entries(users []User, groups []Group) ([]User, []Group, error) {
	var s registry
	us := make([]User, 0, len(users))
	gs := make([]Group, 0, len(users)+len(groups))
	for _, u := range users {
		u = u.withDefaults()
		if err := s.addUser(u); err != nil {
			return nil, nil, &EntryError{Kind: "user", Name: u.Name, Err: err}
		}
		us = append(us, u)
		gs = append(gs, Group{Name: u.Name, GID: u.GID})
	}
	for _, g := range groups {
		g, err := g.normalized()
		if err == nil {
			err = s.addGroup(g.Name, g.GID, fmt.Sprintf("group %q", g.Name))
		}
		if err != nil {
			return nil, nil, &EntryError{Kind: "group", Name: g.Name, Err: err}
		}
		gs = append(gs, g)
	}
	slices.SortFunc(us, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(gs, func(a, b Group) int { return strings.Compare(a.Name, b.Name) })
	return us, gs, nil
}

// registry finds names and IDs used twice. Its maps say who holds each
// name or ID, for the error message.
type registry struct {
	users  map[string]bool
	uids   map[uint32]string
	groups map[string]string
	gids   map[uint32]string
}

// addUser checks u, which has its defaults, and records it and its private
// group.
func (s *registry) addUser(u User) error {
	if err := u.check(); err != nil {
		return err
	}
	if s.users == nil {
		s.users = make(map[string]bool)
		s.uids = make(map[uint32]string)
	}
	if s.users[u.Name] {
		return fmt.Errorf("%w: user name given twice", ErrDuplicate)
	}
	if other, ok := s.uids[u.UID]; ok {
		return fmt.Errorf("%w: uid %d also used by user %q", ErrDuplicate, u.UID, other)
	}
	if err := s.addGroup(u.Name, u.GID, fmt.Sprintf("the private group of user %q", u.Name)); err != nil {
		return err
	}
	s.users[u.Name] = true
	s.uids[u.UID] = u.Name
	return nil
}

// addGroup records a group whose fields are valid; holder describes it in
// later errors.
func (s *registry) addGroup(name string, gid uint32, holder string) error {
	if s.groups == nil {
		s.groups = make(map[string]string)
		s.gids = make(map[uint32]string)
	}
	if other, ok := s.groups[name]; ok {
		return fmt.Errorf("%w: group name already used by %s", ErrDuplicate, other)
	}
	if other, ok := s.gids[gid]; ok {
		return fmt.Errorf("%w: gid %d also used by %s", ErrDuplicate, gid, other)
	}
	s.groups[name] = holder
	s.gids[gid] = holder
	return nil
}
