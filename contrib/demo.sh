#!/bin/sh
# The built-in demo: register the example guest in a sandbox root, check it, show its QEMU
# command line and generate its init scripts. Touches nothing outside the sandbox root.
set -eu
root=${1:-/tmp/qemu-init-demo}
here=$(cd "$(dirname "$0")" && pwd)
# A folder the demo made carries this mark; any other one is somebody's, and never wiped.
mark=.qemu-init-demo
if [ -e "$root" ] && [ ! -e "$root/$mark" ] && [ -n "$(ls -A "$root" 2>/dev/null || echo x)" ]; then
	echo "make demo: $root exists and was not made by the demo: not wiping it (choose another DEMO_ROOT=)" >&2
	exit 1
fi
rm -rf "$root"
mkdir -p "$root/guests"
echo "made by qemu-init's make demo: it may wipe this folder" >"$root/$mark"
cp -R "$here/examples/demo" "$root/guests/demo"
export QEMU_INIT_ROOT="$root"
say() { printf '\n$ %s\n' "$*"; "$@"; }
say qemu-init register "$root/guests/demo"
say qemu-init autostart demo on
say qemu-init list
say qemu-init check demo
say qemu-init show demo
if qemu-init generate --help >/dev/null 2>&1; then
	say qemu-init generate --init all --output "$root/scripts" demo
	say ls -R "$root/scripts"
fi
printf '\nEverything above lives in %s; remove it with: rm -rf %s\n' "$root" "$root"
