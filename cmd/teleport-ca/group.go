package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// chgrpSocket gives the admin group read-write access to the socket.
func chgrpSocket(path, group string) error {
	g, err := user.LookupGroup(group)
	if err != nil {
		return fmt.Errorf("--admin-group: %w", err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return fmt.Errorf("--admin-group %s: gid %q", group, g.Gid)
	}
	if err := os.Chown(path, -1, gid); err != nil {
		return fmt.Errorf("--admin-group: %w", err)
	}
	return os.Chmod(path, 0o660)
}
