"""Pid files and process identity: nothing is ever signalled unless proven to be this guest.

A pid file can outlive its QEMU (SIGKILL, host crash, a guest that powered itself off) and its
pid can be reused by anything, also by another user's process made to look like the guest. So a
pid counts as guest NAME only if its command line is a QEMU (argv[0] basename starts with
``qemu``) whose ``-name`` is NAME, and it runs as the guest's user or root (every uid it has):
nobody else can make such a process. The pid file itself is root's. The system is asked through
platform/ (``/proc`` on Linux, ``ps`` on FreeBSD); when it cannot tell (no ``/proc``, no ``ps``,
``ps`` failing), OSError, which callers report as LSB 4 ("unknown") and act on by touching
nothing.
"""

from __future__ import annotations

import os
import select
import time

from . import platform

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Tuple

# What a pid file tells about guest NAME (see probe()).
ABSENT = "absent"    # no pid file
BADFILE = "bad"      # a pid file without a pid in it
DEAD = "dead"        # the pid is not running (or a zombie)
FOREIGN = "foreign"  # the pid runs, but it is not this guest: a stale pid file
GUEST = "guest"      # the pid is this guest's QEMU


def read_pidfile(path: str) -> Optional[int]:
    """The pid in ``path``; None if there is no such file. ValueError if it holds no pid;
    PermissionError and other OSErrors propagate (the caller reports "unknown")."""
    try:
        with open(path, "rb") as f:
            text = f.read(64).strip()
    except FileNotFoundError:
        return None
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"{path}: no pid in pid file")
    return int(text)


def running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (a killed QEMU whose parent has not reaped it
    yet is gone for our purposes). OSError when this system cannot tell (platform/)."""
    return platform.current().process(pid) is not None


def cmdline(pid: int) -> Optional[List[str]]:
    """argv of ``pid``; None if it does not exist; OSError propagates."""
    found = platform.current().process(pid)
    return None if found is None else found[0]


def _first_field(value: str) -> str:
    """First field of a QEMU option value; ``,,`` is an escaped comma, not a separator."""
    out, i = [], 0
    while i < len(value):
        if value[i] == ",":
            if value[i + 1:i + 2] != ",":
                break
            i += 1
        out.append(value[i])
        i += 1
    return "".join(out)


def guest_name(argv: List[str]) -> Optional[str]:
    """The guest name a QEMU command line carries (``-name NAME,…`` or ``-name guest=NAME,…``),
    or None if argv is not a QEMU with a name. The last ``-name`` wins, as in QEMU."""
    if not argv or not os.path.basename(argv[0]).startswith("qemu"):
        return None
    name = None
    for i, arg in enumerate(argv[1:], 1):
        if arg in ("-name", "--name") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(("-name=", "--name=")):
            value = arg.partition("=")[2]
        else:
            continue
        name = _first_field(value)
        if name.startswith("guest="):
            name = name[len("guest="):]
    return name


def uid_of(user: str) -> Optional[int]:
    """The uid of ``user``; None when there is no such user."""
    import pwd
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def uids(pid: int) -> Optional[List[int]]:
    """The uids of ``pid`` (real, effective, saved, …); None if it does not exist."""
    found = platform.current().process(pid)
    return None if found is None else found[1]


def is_guest(pid: int, name: str, users: Sequence[int]) -> bool:
    """True only if ``pid`` runs, is QEMU for guest ``name`` and runs as one of ``users``."""
    return _matches(platform.current().process(pid), name, users)


def _matches(found: Optional[Tuple[List[str], List[int]]], name: str, users: Sequence[int]) -> bool:
    """One look at a process (argv and uids of the same moment): is it guest ``name``?"""
    if found is None or guest_name(found[0]) != name:
        return False
    return bool(found[1]) and all(uid in users for uid in found[1])


def probe(pidfile: str, name: str, users: Sequence[int]) -> Tuple[str, Optional[int]]:
    """(ABSENT|BADFILE|DEAD|FOREIGN|GUEST, pid). Permission problems raise PermissionError."""
    try:
        pid = read_pidfile(pidfile)
    except ValueError:
        return BADFILE, None
    if pid is None:
        return ABSENT, None
    found = platform.current().process(pid)  # once: on FreeBSD each look runs ps
    if found is None:
        return DEAD, pid
    return (GUEST if _matches(found, name, users) else FOREIGN), pid


class GuestProcess:
    """A process proven to be guest ``name``: the only thing the stop machine may signal.

    Where the kernel offers pidfds (Linux 5.3), the process is pinned by one opened *before* the
    identity check, so a pid recycled later is never signalled and never mistaken for alive.
    Without pidfds, identity is checked again right before every signal.
    """

    def __init__(self, pid: int, name: str, users: Sequence[int]):
        self.pid = pid
        self.name = name
        self.users = users
        self._fd: Optional[int] = platform.current().pidfd(pid)
        if not is_guest(pid, name, users):
            self.close()
            raise ProcessLookupError(f"pid {pid} is not guest {name}")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def alive(self) -> bool:
        if self._fd is not None:
            # a pidfd turns readable when the process has exited (zombie included)
            return not select.select([self._fd], [], [], 0)[0]
        return is_guest(self.pid, self.name, self.users)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less: with a pidfd, return as soon as the process exits."""
        if self._fd is not None:
            select.select([self._fd], [], [], max(0.0, seconds))
        else:
            time.sleep(seconds)

    def signal(self, sig: int) -> bool:
        """Send ``sig``; False if the process is already gone."""
        import signal  # here, not on top: status never signals, and the module builds enums
        try:
            if self._fd is not None:
                signal.pidfd_send_signal(self._fd, sig)  # type: ignore[attr-defined]
            elif is_guest(self.pid, self.name, self.users):
                os.kill(self.pid, sig)
            else:
                return False
        except ProcessLookupError:
            return False
        return True
