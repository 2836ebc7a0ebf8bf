// Package packaging holds the suite's Debian and RPM packages: the nfpm
// configurations (nfpm/), the systemd units (systemd/), the sysusers.d
// files that create the service accounts (sysusers/), the maintainer
// scripts (scripts/), the copyright file and changelog (debian/), and
// version.sh, which turns "git describe" into a package version.
// "make packages" builds dist/*.deb and dist/*.rpm from them;
// packaging/README.md says what each package installs and how to run it.
//
// The packages keep the trust model's promises at install time: the
// programs sshd executes (/usr/libexec/teleport-authkeys) are root-owned
// in root-owned directories that no group or other user can write, services
// run as their own system users, nothing is enabled or started on install,
// and sshd's configuration is never changed by the package (the operator
// runs "teleport-node install-sshd-config", which checks it with sshd -t).
//
// It has no code; its tests build the packages and check them from the
// outside with dpkg-deb, lintian, systemd-analyze, systemd-sysusers and
// rpm, skipping what the machine lacks.
package packaging
