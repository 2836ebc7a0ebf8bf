package ca

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// peer is the process on the other end of an admin socket connection, as
// the kernel reports it (SO_PEERCRED): it cannot be forged by the client.
type peer struct {
	UID, GID, PID int
}

func (p peer) String() string { return fmt.Sprintf("admin(uid=%d)", p.UID) }

type peerKey struct{}

// peerConnContext records the peer credentials of each admin connection.
func peerConnContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, peer{UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid)})
}

func peerFrom(ctx context.Context) (peer, bool) {
	p, ok := ctx.Value(peerKey{}).(peer)
	return p, ok
}

// adminPolicy decides who may use the admin socket: root, the uid the CA
// runs as, and members of AdminGroup.
type adminPolicy struct {
	selfUID  int
	groupGID int // -1: no admin group
}

func newAdminPolicy(group string) (adminPolicy, error) {
	p := adminPolicy{selfUID: os.Geteuid(), groupGID: -1}
	if group == "" {
		return p, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return p, fmt.Errorf("ca: admin group %q: %w", group, err)
	}
	if p.groupGID, err = strconv.Atoi(g.Gid); err != nil {
		return p, fmt.Errorf("ca: admin group %q has gid %q", group, g.Gid)
	}
	return p, nil
}

func (ap adminPolicy) allows(p peer) bool {
	if p.UID == 0 || p.UID == ap.selfUID {
		return true
	}
	if ap.groupGID < 0 {
		return false
	}
	if p.GID == ap.groupGID {
		return true
	}
	groups, err := procGroups(p.PID)
	if err != nil {
		return false
	}
	for _, g := range groups {
		if g == ap.groupGID {
			return true
		}
	}
	return false
}

// procGroups reads the supplementary groups of pid from /proc. SO_PEERCRED
// carries only the primary gid.
func procGroups(pid int) ([]int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		var out []int
		for _, s := range strings.Fields(rest) {
			if g, err := strconv.Atoi(s); err == nil {
				out = append(out, g)
			}
		}
		return out, nil
	}
	return nil, sc.Err()
}
