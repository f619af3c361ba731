#!/bin/sh
# Builds a Debian root file system that boots under `systemd-nspawn -b` with INIT as PID 1, for
# the boot tests (tests/e2e/test_boot.py): sysvinit-core, openrc (on sysvinit, as Debian runs
# it) or systemd, with QEMU and what the qemu-init package depends on, so that the package
# installs offline inside it.
#
# Usage: build-root.sh INIT [CACHE_DIR]      INIT: sysv, openrc or systemd
#   CACHE_DIR defaults to $QEMU_INIT_TEST_CACHE, then /var/cache/qemu-init-tests.
# Prints the root's directory on stdout (progress goes to stderr).
#
# Cached in CACHE_DIR/root-INIT-<suite>-<hash of this script>: built once per edit of this
# script, from the host's own apt sources (its configured mirror). Safe to run concurrently: one
# build at a time (flock), each in a temporary directory renamed into place when complete.
# Tests use a copy of it (cp --reflink=auto -a), never the cached root itself.
#
# Needs: root, mmdebstrap, flock, sha256sum.
set -eu

init=${1:?usage: build-root.sh sysv|openrc|systemd [CACHE_DIR]}
cache=${2:-${QEMU_INIT_TEST_CACHE:-/var/cache/qemu-init-tests}}

say() { printf 'build-root: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# What the qemu-init package depends on (installed offline from a .deb later), QEMU with the
# BIOS the stubborn guest sits in, and ps/pgrep for the tests.
common="python3,python3-jinja2,python3-typer,adduser,iproute2,procps,qemu-system-x86,seabios"
case $init in
sysv) packages="sysvinit-core,sysv-rc" ;;
openrc) packages="sysvinit-core,openrc" ;;
systemd) packages="systemd,systemd-sysv" ;;
*) die "unknown init system $init (sysv, openrc or systemd)" ;;
esac

sources=/etc/apt/sources.list.d/debian.sources
[ -r "$sources" ] || sources=/etc/apt/sources.list
[ -r "$sources" ] || die "no apt sources on this host (/etc/apt/sources.list.d/debian.sources)"
suite=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
[ -n "$suite" ] || die "cannot tell this host's Debian suite from /etc/os-release"

mkdir -p "$cache"
script_hash=$(sha256sum "$0" | cut -c 1-12)
final="$cache/root-$init-$suite-$script_hash"
done_mark=.qemu-init-root-complete

if [ -f "$final/$done_mark" ]; then
	printf '%s\n' "$final"
	exit 0
fi

exec 9>"$cache/.lock-root"
flock 9
if [ -f "$final/$done_mark" ]; then
	printf '%s\n' "$final"
	exit 0
fi

work=$(mktemp -d "$cache/.build-root.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

say "building a $suite root with $init (mmdebstrap, minbase): this takes a few minutes once"
# No documentation, manual pages or translations: nothing here reads them.
mmdebstrap --variant=minbase --mode=root --quiet \
	--aptopt='APT::Install-Recommends "false"' \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--include="$packages,$common" \
	--customize-hook='echo qi-boot >"$1/etc/hostname"' \
	--customize-hook='rm -f "$1/etc/machine-id"; : >"$1/etc/machine-id"' \
	"$suite" "$work/root" "$sources" >&2 || die "mmdebstrap failed"

: >"$work/root/$done_mark"
rm -rf "$final" # a leftover without the mark
mv "$work/root" "$final"
say "built $final"
printf '%s\n' "$final"
