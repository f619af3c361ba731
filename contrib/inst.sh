#!/bin/sh
# Install with a manifest, so that `make uninstall` removes exactly what `make install` put down
# and never a configuration file the admin changed. Called by the Makefile, once per item:
#
#   inst.sh begin                   start a new manifest (in $WORK)
#   inst.sh dir MODE DIR...         create folders (missing parents 0755); record those created
#   inst.sh file MODE SRC DEST      install a file, replacing the old one by rename
#   inst.sh conf MODE SRC DEST      a configuration file: an existing one that is not ours as
#                                   installed (edited, or never ours) is left alone
#   inst.sh tree SRC DEST           a folder tree: folders 0755, files 0644 (0755 if executable)
#   inst.sh commit                  install the manifest at $MANIFEST; drop what the previous
#                                   install had and this one has not
#   inst.sh uninstall               remove what $MANIFEST lists, newest first
#
# Environment: DESTDIR (staging root, may be empty), MANIFEST (its path on the target; empty:
# keep none, as packages do: their package manager keeps the list), WORK (a scratch file).
#
# Manifest lines, paths as on the target (without DESTDIR): "d DIR" a folder this install
# created, "f FILE" a file, "c SUM FILE" a configuration file with its checksum as installed.
# Checksums are POSIX cksum (CRC and size): they only need to notice an edit.
set -eu

die() { echo "inst.sh: $*" >&2; exit 1; }
note() { echo "inst.sh: $*" >&2; }

DESTDIR=${DESTDIR-}
MANIFEST=${MANIFEST-}
WORK=${WORK:?WORK must name a scratch file}
previous=$DESTDIR$MANIFEST

sum() { cksum <"$1" | awk '{ print $1 "-" $2 }'; }
record() { printf '%s\n' "$*" >>"$WORK"; }
recorded() { grep -Fqx -- "$1" "$WORK"; }
had() { [ -n "$MANIFEST" ] && [ -f "$previous" ] && grep -Fqx -- "$1" "$previous"; }
# The checksum the previous install recorded for configuration file $1, or nothing.
had_sum() {
	[ -n "$MANIFEST" ] && [ -f "$previous" ] || return 0
	awk -v path="$1" '$1 == "c" && substr($0, length($2) + 4) == path { print $2 }' "$previous"
}
normal() { printf '%s\n' "$1" | sed 's#//*#/#g; s#\(.\)/$#\1#'; }

mkdirs() { # MODE DIR
	_final=$1
	_target=$(normal "$2")
	case $_target in /*) ;; *) die "not an absolute path: $2" ;; esac
	# Walk down from /, split at slashes only (a folder name may hold spaces).
	_ifs=$IFS
	IFS=/
	set -f
	# shellcheck disable=SC2086 # splitting at / is the point
	set -- $_target
	set +f
	IFS=$_ifs
	_path=
	for _part; do
		[ -n "$_part" ] || continue
		_path=$_path/$_part
		_mode=0755
		if [ "$_path" = "$_target" ]; then _mode=$_final; fi
		if [ -d "$DESTDIR$_path" ]; then
			# A folder that was there before us is not ours: no chmod, no record, never removed.
			if ! recorded "d $_path"; then
				had "d $_path" || continue
				record "d $_path"
			fi
			if [ "$_path" = "$_target" ]; then chmod "$_mode" "$DESTDIR$_path"; fi
		else
			mkdir -m "$_mode" "$DESTDIR$_path"
			record "d $_path"
		fi
	done
}

copy() { # MODE SRC DEST: replace by rename, so nobody ever runs or reads half a file
	[ -f "$2" ] || die "no such file: $2"
	mkdirs 0755 "$(dirname -- "$3")"
	cp "$2" "$DESTDIR$3.inst-new"
	chmod "$1" "$DESTDIR$3.inst-new"
	mv -f "$DESTDIR$3.inst-new" "$DESTDIR$3"
}

install_file() { # MODE SRC DEST
	copy "$@"
	recorded "f $3" || record "f $3"
}

install_conf() { # MODE SRC DEST
	if [ -e "$DESTDIR$3" ]; then
		was=$(had_sum "$3")
		if [ -z "$was" ] || [ "$was" != "$(sum "$DESTDIR$3")" ]; then
			note "kept $3 as it is (the admin's); the new default is in $2"
			return 0
		fi
	fi
	copy "$@"
	record "c $(sum "$DESTDIR$3") $3"
}

install_tree() { # SRC DEST
	[ -d "$1" ] || die "no such folder: $1"
	(cd "$1" && find . -type d) | sort | while IFS= read -r d; do
		mkdirs 0755 "$2/${d#.}"
	done
	(cd "$1" && find . -type f) | sort | while IFS= read -r f; do
		mode=0644
		if [ -x "$1/$f" ]; then mode=0755; fi
		install_file "$mode" "$1/$f" "$2/${f#./}"
	done
}

# Remove the manifest lines read on stdin, last first: files before their folders.
# With "quiet", a kept configuration file goes unmentioned (install_conf said so already).
remove_listed() {
	awk '{ line[NR] = $0 } END { for (i = NR; i > 0; i--) print line[i] }' |
	while IFS= read -r line; do
		case $line in
		"f "*)
			rm -f "$DESTDIR${line#f }"
			;;
		"c "*)
			rest=${line#c }
			want=${rest%% *}
			path=${rest#* }
			if [ -f "$DESTDIR$path" ] && [ "$(sum "$DESTDIR$path")" != "$want" ]; then
				[ "${1:-}" = quiet ] || note "kept $path: changed since it was installed"
			else
				rm -f "$DESTDIR$path"
			fi
			;;
		"d "*)
			path=${line#d }
			[ -d "$DESTDIR$path" ] || continue
			# Byte code another Python version wrote beside ours is a cache, never data.
			case $path in */__pycache__) rm -f "$DESTDIR$path"/*.pyc ;; esac
			rmdir "$DESTDIR$path" 2>/dev/null || note "kept $path: not empty"
			;;
		esac
	done
}

action=${1:-}
[ $# -gt 0 ] && shift
case $action in
begin)
	mkdir -p "$(dirname -- "$WORK")"
	: >"$WORK"
	[ -z "$DESTDIR" ] || mkdir -p "$DESTDIR"
	;;
dir)
	mode=$1
	shift
	for d; do mkdirs "$mode" "$d"; done
	;;
file) install_file "$@" ;;
conf) install_conf "$@" ;;
tree) install_tree "$@" ;;
commit)
	[ -n "$MANIFEST" ] || exit 0
	mkdirs 0755 "$(dirname -- "$MANIFEST")"
	recorded "f $MANIFEST" || record "f $MANIFEST"
	if [ -f "$previous" ]; then
		# What the previous install put down and this one did not: gone with the old version.
		awk 'function path(l) { sub(/^c [^ ]* /, "", l); sub(/^[df] /, "", l); return l }
			NR == FNR { new[path($0)] = 1; next }
			!(path($0) in new)' "$WORK" "$previous" | remove_listed quiet
	fi
	copy 0644 "$WORK" "$MANIFEST"
	;;
uninstall)
	[ -n "$MANIFEST" ] || die "MANIFEST is empty: nothing to uninstall from"
	[ -f "$previous" ] || die "no manifest at $previous: nothing was installed with these settings (PREFIX, SUFFIX, LAYOUT, APPDIR, DESTDIR)"
	remove_listed <"$previous"
	;;
*)
	die "usage: inst.sh begin|dir|file|conf|tree|commit|uninstall ..."
	;;
esac
