#!/bin/bash
# check-man: the man pages built from docs/man/*.scd (cmake/Man.cmake).
#
#   check-man.sh groff   SOURCE_DIR BUILD_DIR   every page formats without a warning
#   check-man.sh install SOURCE_DIR BUILD_DIR   `cmake --install` ($CMAKE) puts each page in
#                                               usr/share/man/manSECTION of a DESTDIR
#
# groff -ww prints its warnings on stderr but still exits 0, so any stderr at
# all fails the check. Each page is formatted for PostScript (groff's default
# device, as `groff -man -ww -z` does) and for a UTF-8 terminal (what man(1)
# shows), since a character can be fine on one and missing on the other.
set -euo pipefail

mode=${1:-}
src=${2:-}
build=${3:-}
if [[ -z $mode || ! -d $src/docs/man || ! -d $build ]]; then
	echo "usage: $0 groff|install SOURCE_DIR BUILD_DIR" >&2
	exit 2
fi

shopt -s nullglob
sources=("$src"/docs/man/*.scd)
if ((${#sources[@]} == 0)); then
	echo "check-man: no page sources in $src/docs/man" >&2
	exit 1
fi

failed=0
fail() {
	echo "check-man: $*" >&2
	failed=1
}

check_groff() {
	local page=$1 dev err
	for dev in ps utf8; do
		err=$(groff -man -ww -z -T"$dev" "$page" 2>&1 >/dev/null) || fail "groff -T$dev failed on $page"
		if [[ -n $err ]]; then
			fail "groff -man -ww -z -T$dev $page:"
			printf '%s\n' "$err" >&2
		fi
	done
}

case $mode in
groff)
	for s in "${sources[@]}"; do
		page=$build/man/$(basename "$s" .scd)
		if [[ ! -s $page ]]; then
			fail "$page was not built from $s"
			continue
		fi
		if grep -q '@[A-Z_]*@' "$page"; then
			fail "$page holds an unreplaced @PLACEHOLDER@: $(grep -o '@[A-Z_]*@' "$page" | head -1)"
		fi
		check_groff "$page"
	done
	;;
install)
	destdir=$(mktemp -d)
	trap 'rm -rf "$destdir"' EXIT
	if ! out=$(DESTDIR=$destdir "${CMAKE:-cmake}" --install "$build" --prefix /usr 2>&1); then
		printf '%s\n' "$out" >&2
		echo "check-man: cmake --install failed" >&2
		exit 1
	fi
	for s in "${sources[@]}"; do
		name=$(basename "$s" .scd)
		installed=$destdir/usr/share/man/man${name##*.}/$name
		if [[ ! -f $installed ]]; then
			fail "$name is not installed as usr/share/man/man${name##*.}/$name"
		elif ! cmp -s "$installed" "$build/man/$name"; then
			fail "$installed differs from the page built in $build/man"
		fi
	done
	;;
*)
	echo "usage: $0 groff|install SOURCE_DIR BUILD_DIR" >&2
	exit 2
	;;
esac

if ((failed)); then
	exit 1
fi
echo "check-man: $mode: ${#sources[@]} pages OK"
