#!/bin/sh
# changelog.sh PACKAGE VERSION prints, compressed with gzip -9n, the Debian
# changelog of PACKAGE at VERSION: a native package's
# /usr/share/doc/PACKAGE/changelog.gz (Debian Policy 12.7). It has one
# entry, for the commit being built, dated like the commit, so that building
# the same commit twice gives the same bytes; the history is git's.
set -eu
pkg=$1
version=$2
cd "$(dirname "$0")/../.."
commit=$(git rev-parse --short=12 HEAD)
changes=
case "$version" in *.dirty) changes=" with uncommitted changes" ;; esac
date=$(LC_ALL=C TZ=UTC git log -1 --format=%cd --date=format-local:'%a, %d %b %Y %H:%M:%S +0000')
{
	printf '%s (%s) unstable; urgency=medium\n\n' "$pkg" "$version"
	printf '  * Built from git commit %s%s. History:\n' "$commit" "$changes"
	printf '    https://github.com/opensshca/suite/commits/%s\n\n' "$commit"
	printf ' -- OpenSSH CA suite team <team@opensshca.invalid>  %s\n' "$date"
} | gzip -9n
