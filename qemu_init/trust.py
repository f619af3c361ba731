"""The trust rule (SPEC §9): which files root may read to decide what to run.

Every rc-file, cfg-file and host file qemu-init reads is judged as sudo and sshd's StrictModes
judge theirs: a regular file (no FIFO, device or socket) of at most MAX_SIZE bytes, owned by a
trusted user (root, or the user running the command) and writable by nobody else, in folders
owned by a trusted user and writable by nobody else all the way up to ``/``. A sticky folder
such as ``/tmp`` is safe above an entry a trusted user owns, since nobody else can rename or
replace that entry (systemd's safe path resolution applies the same rule).

The path is resolved component by component with ``openat`` and ``O_NOFOLLOW``, holding each
folder open and checking it before looking inside, so nothing can be swapped between the check
and the open. A symlink is followed only from a trusted folder; its target is then resolved and
checked the same way. The file itself is opened ``O_NONBLOCK`` (a FIFO never hangs), checked on
the open descriptor and read to at most MAX_SIZE + 1 bytes.

Standard library only: the runtime helper gates PRECMD/POSTCMD with it.
"""

from __future__ import annotations

import os
import stat

from .errors import QemuInitError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, List, Optional, Tuple

MAX_SIZE = 1 << 20   # an rc-file is a dozen lines; a cfg-file or the registry a few hundred
MAX_LINKS = 40       # as Linux's MAXSYMLINKS

# O_PATH opens a folder for walking without needing read permission on it (Linux); elsewhere
# a plain read-only open does (root, who runs this, may read every folder).
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"))


class TrustError(QemuInitError):
    """``path`` may not be trusted, for ``reason`` (plain words, naming the folder at fault
    when it is not the file itself)."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = f"not trusted: {reason}"
        super().__init__(f"{path}: {self.reason}")


def trusted_owners() -> Tuple[int, ...]:
    """Root, and the user running the command (whose own files are theirs to trust)."""
    return tuple(sorted({0, os.geteuid()}))


def _owner(uid: int) -> str:
    import pwd
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _faults(st: os.stat_result, owners: Iterable[int]) -> List[str]:
    """What is wrong with the owner and mode of a file or folder, in words."""
    faults = [] if st.st_uid in owners else [f"owned by {_owner(st.st_uid)}"]
    writers = [who for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if st.st_mode & bit]
    return faults + (["writable by " + " and ".join(writers)] if writers else [])


def _loose(st: os.stat_result) -> bool:
    """A folder others may write to, but not rename or remove what they do not own in (sticky)."""
    return bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)) and bool(st.st_mode & stat.S_ISVTX)


def _check_folder(path: str, here: str, st: os.stat_result, owners: Tuple[int, ...]) -> bool:
    """Raise unless the folder ``here`` (on the way to ``path``) is trusted; True when it is
    sticky and writable by others (then only entries a trusted user owns are trusted in it)."""
    loose = _loose(st)
    faults = [f for f in _faults(st, owners) if not (loose and f.startswith("writable by"))]
    if faults:
        where = "" if here == os.path.normpath(path) else f" {here}"
        raise TrustError(path, f"folder{where} " + ", ".join(faults))
    return loose


def _kind(mode: int) -> Optional[str]:
    return next((name for test, name in _KINDS if test(mode)), None if stat.S_ISREG(mode) else "a special file")


def _parts(path: str) -> List[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def open_file(path: str, owners: Optional[Tuple[int, ...]] = None) -> int:
    """A read-only descriptor of ``path`` once the whole way to it is trusted (TrustError
    otherwise; OSError, e.g. FileNotFoundError, when a part is missing)."""
    return _resolve(path, owners or trusted_owners(), want_folder=False)[0]


def read_file(path: str, limit: int = MAX_SIZE, owners: Optional[Tuple[int, ...]] = None) -> bytes:
    """The bytes of trusted ``path``, at most ``limit`` of them (TrustError beyond)."""
    fd = open_file(path, owners)
    try:
        if os.fstat(fd).st_size > limit:
            raise TrustError(path, f"larger than {_size(limit)}")
        chunks, total = [], 0
        while total <= limit:  # the size may grow after fstat: never read more than limit + 1
            chunk = os.read(fd, limit + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise TrustError(path, f"larger than {_size(limit)}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_folder(path: str, owners: Optional[Tuple[int, ...]] = None) -> None:
    """Raise TrustError unless ``path`` is a folder reached only through trusted folders and
    itself trusted (what `register FOLDER` scans)."""
    fd, _ = _resolve(path, owners or trusted_owners(), want_folder=True)
    os.close(fd)


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit} bytes"


def _resolve(path: str, owners: Tuple[int, ...], want_folder: bool) -> Tuple[int, os.stat_result]:
    """Walk ``path`` from ``/``; returns the open descriptor of its last part and its fstat."""
    if not path:
        raise FileNotFoundError(2, "No such file or directory", path)
    absolute = path if path.startswith("/") else os.path.join(os.getcwd(), path)
    todo = _parts(absolute)
    todo.reverse()  # a stack: the next part last
    asked = os.path.normpath(absolute)
    root = os.open("/", _DIR_FLAGS)
    stack = [(root, "/", False)]  # (fd, path, loose): the folders walked through, each open
    links = 0
    try:
        stack[0] = (root, "/", _check_folder(path, "/", os.fstat(root), owners))
        while True:
            if not todo:  # the path ended on a folder ("/", "a/..", "a/.")
                if not want_folder:
                    raise TrustError(path, "a folder, not a regular file")
                fd, _, _ = stack.pop()
                return fd, os.fstat(fd)
            name = todo.pop()
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop()[0])
                continue
            dirfd, folder, loose = stack[-1]
            here = os.path.join(folder, name)
            last = not todo
            # what we name when the file itself is at fault: itself, or where a link led
            it = "" if here == asked else f"{here} (where a link leads) is "
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except OSError as e:
                raise type(e)(e.errno, e.strerror, here) from None
            if loose and st.st_uid not in owners:
                # in a sticky folder such as /tmp, another user's entry is theirs to replace
                raise TrustError(path, f"{here} owned by {_owner(st.st_uid)} in {folder}, which others may write to")
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise TrustError(path, f"more than {MAX_LINKS} symbolic links on the way")
                target = os.readlink(name, dir_fd=dirfd)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop()[0])
                todo.extend(reversed(_parts(target)))
                continue
            if stat.S_ISDIR(st.st_mode) and (want_folder or not last):
                fd = _open(name, _DIR_FLAGS, dirfd, here)
                try:
                    st = os.fstat(fd)
                    if not stat.S_ISDIR(st.st_mode):
                        raise TrustError(path, f"{here} changed while it was checked")
                    stack.append((fd, here, _check_folder(path, here, st, owners)))
                except BaseException:
                    os.close(fd)
                    raise
                continue
            if not last:
                raise NotADirectoryError(20, "Not a directory", here)
            kind = _kind(st.st_mode)
            if want_folder:
                raise TrustError(path, f"{it}{kind or 'a file'}, not a folder")
            if kind:  # never opened: opening a device may do something, a FIFO may block
                raise TrustError(path, f"{it}{kind}, not a regular file")
            fd = _open(name, _FILE_FLAGS, dirfd, here)
            try:
                st = os.fstat(fd)
                kind = _kind(st.st_mode)
                if kind:  # replaced in between
                    raise TrustError(path, f"{it}{kind}, not a regular file")
                faults = _faults(st, owners)
                if faults:
                    raise TrustError(path, (f"{here} (where a link leads) " if it else "") + ", ".join(faults))
            except BaseException:
                os.close(fd)
                raise
            return fd, st
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _open(name: str, flags: int, dirfd: int, here: str) -> int:
    try:
        return os.open(name, flags, dir_fd=dirfd)
    except OSError as e:
        raise type(e)(e.errno, e.strerror, here) from None
