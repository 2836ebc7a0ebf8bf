#!/bin/sh
# Prints the package version of the current git checkout, from
# "git describe --tags --always --dirty", in a form both Debian
# (deb-version(7), native: no revision) and RPM (no "-") accept:
#
#   v1.2.3 (a tag)                 1.2.3
#   v1.2.3-4-gabc1234 (after it)   1.2.3+git20261121074350.4.abc1234
#   abc1234 (no tag yet)           0.0.0~git20261121074350.abc1234
#
# The timestamp is the commit's, in UTC, so that later commits sort higher
# ("~" sorts before anything, so 0.0.0~git... is older than any 0.0.0 or
# later release). A tree with uncommitted changes adds ".dirty".
set -eu
cd "$(dirname "$0")/.."
describe=$(git describe --tags --always --dirty)
stamp=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S)
dirty=
case "$describe" in
*-dirty)
	dirty=.dirty
	describe=${describe%-dirty}
	;;
esac
if ! git describe --tags >/dev/null 2>&1; then
	version="0.0.0~git$stamp.$describe" # no tag: describe is the hash
else
	describe=${describe#v}
	case "$describe" in
	*-*-g*)
		tag=${describe%-*-g*}
		rest=${describe#"$tag"-}
		version="$tag+git$stamp.${rest%-g*}.${rest#*-g}"
		;;
	*)
		version=$describe
		;;
	esac
fi
version=$version$dirty
case "$version" in
[0-9]*[!0-9A-Za-z.+~]* | [!0-9]*)
	echo "version.sh: cannot make a package version of \"$version\" (git describe: $(git describe --tags --always --dirty)); tags must look like v1.2.3" >&2
	exit 1
	;;
esac
echo "$version"
