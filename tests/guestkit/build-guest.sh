#!/bin/sh
# Builds the tiny test guest that the end-to-end tests boot with QEMU: a Debian cloud kernel
# (vmlinuz) and a busybox initramfs (initrd.img) whose /init is written below.
#
# Usage: build-guest.sh [CACHE_DIR]
#   CACHE_DIR defaults to $QEMU_INIT_TEST_CACHE, then /var/cache/qemu-init-tests.
# Prints the directory holding vmlinuz and initrd.img on stdout (progress goes to stderr).
#
# The result is cached in CACHE_DIR/guest-<kernel package>_<version>-<hash of this script>, so it
# is built once per kernel and per edit of this script. Safe to run concurrently: one build at a
# time (flock), each in a temporary directory renamed into place when complete.
#
# With Debian's qemu-guest-agent installed on this host, its qemu-ga and the libraries ldd names
# go into the initramfs too (qi.agent=1 runs it); its version is part of the cache key.
#
# Needs: apt-get, dpkg, cpio, flock, sha256sum, ldd; xz only when the kernel ships .ko.xz modules.
# Nothing here needs root except writing to the default cache directory.
set -eu

cache=${1:-${QEMU_INIT_TEST_CACHE:-/var/cache/qemu-init-tests}}
meta=linux-image-cloud-amd64
# Modules /init loads. evdev and button are needed for the power button; the virtio ones only
# with qi.ip= (they may be built into some kernels, so missing files are not an error).
required_modules="evdev button"
optional_modules="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
                  failover net_failover virtio_net virtio_console"

say() { printf 'build-guest: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# The kernel package the metapackage currently depends on, e.g. linux-image-6.1.0-56-cloud-amd64.
kernel_package() {
	apt-cache depends "$meta" 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1
}

mkdir -p "$cache"
script_hash=$(sha256sum "$0" | cut -c 1-12)

pkg=$(kernel_package)
if [ -z "$pkg" ]; then
	say "apt does not know $meta; running apt-get update once"
	apt-get update -qq >&2 || die "apt-get update failed"
	pkg=$(kernel_package)
	[ -n "$pkg" ] || die "cannot find the kernel package $meta depends on"
fi
version=$(apt-cache show --no-all-versions "$pkg" | sed -n 's/^Version: //p' | head -n 1)
# The guest agent, when this host has it: its version names the build too (tests that need it
# skip without it; guestkit's fast path matches any build of this script).
qga=/usr/sbin/qemu-ga
qga_version=$(dpkg-query -W -f='${Version}' qemu-guest-agent 2>/dev/null) || qga_version=
[ -x "$qga" ] && [ -n "$qga_version" ] || qga_version=none
# Debian versions may hold ':' and '~'; keep the directory name plain.
key=$(printf '%s_%s-qga%s-%s' "$pkg" "$version" "$qga_version" "$script_hash" | tr -c 'A-Za-z0-9._+\n-' '_')
final="$cache/guest-$key"

if [ -f "$final/vmlinuz" ] && [ -f "$final/initrd.img" ]; then
	printf '%s\n' "$final"
	exit 0
fi

# One builder at a time; whoever waited finds the finished result and stops there.
exec 9>"$cache/.lock"
flock 9
if [ -f "$final/vmlinuz" ] && [ -f "$final/initrd.img" ]; then
	printf '%s\n' "$final"
	exit 0
fi

work=$(mktemp -d "$cache/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
# apt-get download runs as the _apt user when it can; it must be able to write here.
chmod 755 "$work"

say "downloading $pkg $version"
(cd "$work" && apt-get download -q=2 -o APT::Sandbox::User=root "$pkg=$version") >&2 ||
	die "apt-get download $pkg failed"
dpkg -x "$work"/*.deb "$work/kernel"
rm -f "$work"/*.deb
kver=${pkg#linux-image-}
moddir="$work/kernel/lib/modules/$kver"
[ -f "$work/kernel/boot/vmlinuz-$kver" ] || die "no vmlinuz-$kver in $pkg"
[ -d "$moddir" ] || die "no modules for $kver in $pkg"

root="$work/root"
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/tmp" "$root/lib/modules"

# Busybox must be the static build: the initramfs has no C library.
if dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
	cp /bin/busybox "$root/bin/busybox"
else
	say "busybox-static is not installed; downloading it"
	(cd "$work" && apt-get download -q=2 -o APT::Sandbox::User=root busybox-static) >&2 ||
		die "apt-get download busybox-static failed"
	dpkg -x "$work"/busybox-static_*.deb "$work/busybox"
	cp "$work/busybox/bin/busybox" "$root/bin/busybox"
fi
# One symlink per applet, so /init reads like a normal shell script.
for applet in $("$root/bin/busybox" --list); do
	[ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done

# Modules go flat into /lib/modules, uncompressed: whether busybox insmod reads .ko.xz depends
# on how it was configured.
for name in $required_modules $optional_modules; do
	file=$(find "$moddir" \( -name "$name.ko" -o -name "$name.ko.xz" \) | head -n 1)
	case $file in
	*.ko) cp "$file" "$root/lib/modules/$name.ko" ;;
	*.ko.xz) xz -dc "$file" >"$root/lib/modules/$name.ko" ;;
	'')
		case " $required_modules " in
		*" $name "*)
			grep -q "/$name\.ko" "$moddir/modules.builtin" 2>/dev/null ||
				die "$pkg has no module $name"
			;;
		esac
		;;
	esac
done

# qemu-ga and its libraries at the paths ldd names (the dynamic loader included).
if [ "$qga_version" != none ]; then
	mkdir -p "$root/sbin"
	cp "$qga" "$root/sbin/qemu-ga"
	for lib in $(ldd "$qga" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p'); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
	# What qemu-ga's guest-shutdown runs (/sbin/shutdown -h -P +0 "hypervisor initiated
	# shutdown", its output to /dev/null): say so on the console, then power off.
	cat >"$root/sbin/shutdown" <<'EOF'
#!/bin/sh
echo "QI-AGENT-SHUTDOWN $*" >/dev/console
poweroff -f
EOF
	chmod 755 "$root/sbin/shutdown"
fi

cat >"$root/init" <<'EOF'
#!/bin/sh
# /init of the qemu-init test guest (generated by tests/guestkit/build-guest.sh).
# Kernel command line: qi.name=NAME qi.ip=ADDR/PREFIX qi.ping=IP1,IP2,... qi.echo=WORD
#   qi.agent=1|stopped qi.shell=1
#   qi.count (once ready: QI-COUNT 1, 2, … every 0.2 s, for the save/restore tests)
# Prints QI-* lines on the console (console=ttyS0) for the tests to read.
export PATH=/bin:/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The kernel may have found no /dev/console before devtmpfs was mounted.
exec </dev/console >/dev/console 2>&1
# Keep kernel messages from splitting our lines from here on (the boot log stays above them).
dmesg -n 1

say() { echo "$*"; }
uptime_s() { read -r up _ </proc/uptime && echo "${up%.*}"; }

load() {
	for module in "$@"; do
		if [ -f "/lib/modules/$module.ko" ]; then
			insmod "/lib/modules/$module.ko" || say "QI-WARN insmod $module failed"
		fi
	done
}

name='' ip='' ping='' echoes='' count='' agent='' shell=''
# Words, not lines, are wanted: the command line is one line of space-separated parameters.
# shellcheck disable=SC2013
for arg in $(cat /proc/cmdline); do
	case $arg in
	qi.name=*) name=${arg#qi.name=} ;;
	qi.ip=*) ip=${arg#qi.ip=} ;;
	qi.ping=*) ping=${arg#qi.ping=} ;;
	qi.echo=*) echoes="$echoes ${arg#qi.echo=}" ;;
	qi.agent=*) agent=${arg#qi.agent=} ;;
	qi.shell=*) shell=${arg#qi.shell=} ;;
	qi.count) count=yes ;;
	esac
done
[ -n "$name" ] && hostname "$name"

# The ACPI power button (button) reports through an input device (evdev): QMP system_powerdown
# becomes an event on one of /dev/input/event*. Watch them all from now on, also while the steps
# below still run. evdev refuses reads smaller than one event, hence dd with a large block.
load evdev button
tries=0
while ! ls /dev/input/event* >/dev/null 2>&1 && [ "$tries" -lt 50 ]; do
	sleep 0.1
	tries=$((tries + 1))
done
mkdir -p /tmp/watching
watchers=0
for event in /dev/input/event*; do
	[ -e "$event" ] || { say "QI-WARN no input event device: power button will not work"; break; }
	watchers=$((watchers + 1))
	(
		exec <"$event"
		: >"/tmp/watching/$watchers" # the device is open: events from now on are queued
		dd of=/dev/null bs=4096 count=1 2>/dev/null
		say "QI-POWEROFF"
		poweroff -f
	) &
done
# A press before a watcher has its device open would be lost: QI-BOOTED promises it is not.
n=1
while [ "$n" -le "$watchers" ]; do
	if [ -e "/tmp/watching/$n" ]; then n=$((n + 1)); else sleep 0.01; fi
done

say "QI-ARGS $(cat /proc/cmdline)"
say "QI-BOOTED $(hostname)"

if [ -n "$ip" ]; then
	load virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
		failover net_failover virtio_net
	tries=0
	while [ ! -e /sys/class/net/eth0 ] && [ "$tries" -lt 100 ]; do
		sleep 0.1
		tries=$((tries + 1))
	done
	ip link set lo up
	if [ -e /sys/class/net/eth0 ] && ip addr add "$ip" dev eth0 && ip link set eth0 up; then
		say "QI-NET-UP $ip"
	else
		say "QI-NET-FAIL $ip"
	fi
fi

if [ -n "$ping" ]; then
	for target in $(echo "$ping" | tr ',' ' '); do
		# Each target gets about 20 s: the other guest may still be booting.
		result=FAIL
		deadline=$(($(uptime_s) + 20))
		while [ "$(uptime_s)" -lt "$deadline" ]; do
			if ping -c 1 -W 1 "$target" >/dev/null 2>&1; then
				result=OK
				break
			fi
			sleep 0.2 # ping fails at once while there is no route or ARP answer
		done
		say "QI-PING-$result $target"
	done
fi

for word in $echoes; do
	say "QI-ECHO $word"
done

# The guest agent on its virtio-serial port (org.qemu.guest_agent.0); qi.agent=stopped starts it
# and stops it at once (SIGSTOP): a port that is open but never answers.
if [ -n "$agent" ]; then
	load virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_console
	port='' tries=0
	while [ -z "$port" ] && [ "$tries" -lt 100 ]; do
		for file in /sys/class/virtio-ports/*/name; do
			[ "$(cat "$file" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=${file%/name} && port=${port##*/}
		done
		[ -n "$port" ] || { sleep 0.1; tries=$((tries + 1)); }
	done
	if [ ! -x /sbin/qemu-ga ]; then
		say "QI-AGENT-FAIL no qemu-ga in this initramfs"
	elif [ -z "$port" ] || [ ! -e "/dev/$port" ]; then
		say "QI-AGENT-FAIL no port org.qemu.guest_agent.0"
	else
		qemu-ga -m virtio-serial -p "/dev/$port" -f /tmp/qemu-ga.pid -t /tmp </dev/null >/dev/null 2>&1 &
		qga_pid=$!
		[ "$agent" = stopped ] && kill -STOP "$qga_pid"
		say "QI-AGENT-UP $agent /dev/$port"
	fi
fi

# Every step above is done; only the power button watchers are left (and with qi.shell=1 a
# shell on the console, started again whenever it exits).
say "QI-READY"
if [ -n "$count" ]; then
	# A saved and restored guest goes on counting where it was: no new QI-BOOTED, no gap in the numbers.
	n=0
	while :; do
		n=$((n + 1))
		say "QI-COUNT $n"
		sleep 0.2
	done
fi
if [ "$shell" = 1 ]; then
	export PS1='qi# '
	while :; do
		sh -i
	done
fi
while :; do
	sleep 3600
done
EOF
chmod 755 "$root/init"

# Uncompressed on purpose: the guest runs under software emulation, where unpacking costs time.
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$work/initrd.img"

mkdir "$work/out"
cp "$work/kernel/boot/vmlinuz-$kver" "$work/out/vmlinuz"
mv "$work/initrd.img" "$work/out/initrd.img"
printf '%s %s\n' "$pkg" "$version" >"$work/out/VERSION"
rm -rf "$final" # a leftover without both files
mv "$work/out" "$final"
say "built $final"
printf '%s\n' "$final"
