// Package nss renders and writes the passwd and group files of
// libnss-extrausers, so that cluster users whose roles give them a personal
// login get a local account on a node: a name, a UID and a private group
// whose GID the CA assigned, and the supplementary groups (such as sudo)
// that their roles name.
//
// # Where it fits
//
// The node daemon, teleport-node, runs as root, learns the users and groups
// from the CA and calls [Write] with /var/lib/extrausers, the directory the
// Debian package libnss-extrausers reads. nsswitch.conf(5) must list
// "files" before "extrausers" for passwd, group and shadow
// (contrib/nss/nsswitch.conf.example), so that an account of the machine
// always wins over a cluster account of the same name; the daemon also
// skips such users itself, using [LocalUsers], and gives a supplementary
// group that exists on the machine its local GID, using [LocalGroups];
// only groups with a GID of at least [MinID] can be given this way, so
// sudo, GID 27 on Debian, cannot.
// pam_mkhomedir creates home directories on first login
// (contrib/pam/README.md).
//
// # Trust
//
// Every byte of the files ends up in getpwnam(3) and getgrnam(3) answers
// that sshd, sudo and login trust, so [Files] validates every field before
// rendering anything: names match ^[a-z_][a-z0-9_-]{0,31}$, the GECOS field
// has no ':', ',', newline or control character, home and shell are clean
// absolute paths, and IDs below [MinID] (root's and the system's, which
// libnss-extrausers ignores anyway) and duplicated names or IDs are
// refused with an [*EntryError] naming the entry. A colon or a newline that
// got through would let a user name forge a passwd(5) or group(5) line,
// for example one with UID 0 or one that joins a group.
//
// The password field of a passwd line is "*": cluster accounts have no
// password and log in with certificates only. It is deliberately not "x",
// which would send pam_unix to a shadow entry that does not exist; its
// account check would then fail and deny the certificate login.
package nss
