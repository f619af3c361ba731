"""Launching QEMU the way libvirt does: everything root-only is made by root, QEMU gets file
descriptors, drops to its user before it runs and stays inside its seccomp sandbox.

QEMU's sandbox (``-sandbox on,…,spawn=deny,elevateprivileges=deny``) forbids fork/exec and
setuid, so QEMU can neither ``-daemonize``, nor run tap scripts, nor ``-runas`` itself (each dies
of SIGSYS or fails). The helper therefore, as root:

- binds the QMP control socket and the human monitor socket (0600, root's, in RUNDIR) and hands
  them to QEMU as inherited descriptors at fixed numbers (``-chardev socket,fd=3,…``): a local
  user cannot connect, and QEMU itself needs no write access to RUNDIR;
- creates each tap itself (Linux: ``/dev/net/tun``; FreeBSD: ``ifconfig tap create`` and its
  ``/dev/tapN``), attaches it to its bridge and hands QEMU the open tap (``-netdev tap,fd=N``):
  QEMU needs no access to the tap devices and runs no script; on Linux the kernel deletes the
  tap the moment QEMU, its last holder, is gone, on FreeBSD the stop does;
- starts QEMU in a session of its own, as RUNAS (groups, gid, uid), output to the guest's log,
  writes the pid file (root's) itself and returns once QEMU answers on QMP.

What differs between Linux and FreeBSD is in platform/; the scripts' command line says the rest.
"""

from __future__ import annotations

import os
import select
import socket
import time

from ..errors import GuestError
from . import platform

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import BinaryIO, Dict, Optional, Sequence, Tuple

from .fds import HMP_FD, QMP_FD, SANDBOX, TAP_FD  # noqa: F401  (the numbers QEMU's command line names)


# -- who QEMU runs as --------------------------------------------------------------------------

class Identity:
    """The user QEMU runs as: its uid, gid and supplementary groups (root: no drop at all)."""

    def __init__(self, user: str):
        import pwd
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise GuestError(f"RUNAS user {user!r} does not exist on this host") from None
        self.user = user
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.groups = tuple(os.getgrouplist(user, entry.pw_gid)) if self.uid else ()

    def popen_args(self) -> Dict[str, object]:
        if self.uid == 0 or self.uid == os.geteuid():  # root, or already that user: nothing to drop
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}


# -- sockets -----------------------------------------------------------------------------------

def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def listen_unix(path: str) -> socket.socket:
    """A listening unix socket at ``path``, mode 0600, owned by us (root): only root connects."""
    _unlink(path)  # a stale socket of a dead QEMU (the caller made sure none answers)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        raise GuestError(f"{path}: cannot create the socket: {e.strerror}") from None
    finally:
        os.umask(old)
    sock.listen(4)
    return sock


# -- taps --------------------------------------------------------------------------------------
# Made the system's way (platform/: /dev/net/tun and ip on Linux, ifconfig and /dev/tapN on
# FreeBSD), handed to QEMU at TAP_FD onwards.

def open_taps(taps: Sequence[Tuple[str, str]]) -> Dict[int, int]:
    """Each (tap, bridge) made, attached and up; {descriptor number for QEMU: open fd}; all or none."""
    return platform.current().open_taps(taps, TAP_FD)  # type: ignore[no-any-return]


def tap_exists(tap: str) -> bool:
    return platform.current().tap_exists(tap)  # type: ignore[no-any-return]


def delete_taps(taps: Sequence[str]) -> Sequence[str]:
    """Delete those of ``taps`` still there; returns the ones deleted."""
    return platform.current().delete_taps(taps)  # type: ignore[no-any-return]


# -- QEMU itself -------------------------------------------------------------------------------

def _high(fd: int) -> int:
    """A close-on-exec duplicate of ``fd`` above the numbers QEMU's descriptors take."""
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)


def spawn(argv: Sequence[str], fds: Dict[int, int], identity: Identity,
          out: BinaryIO):  # type: ignore[no-untyped-def]
    """Start QEMU: its own session, ``fds`` at their numbers (everything else closed), as
    ``identity``, stdin from /dev/null, stdout and stderr to ``out``. Returns the Popen."""
    import subprocess
    sources = {number: _high(fd) for number, fd in fds.items()}

    def place() -> None:  # in the child, before exec: single-threaded there, dup2 only
        for number, source in sources.items():
            os.dup2(source, number)  # dup2 clears close-on-exec on the new descriptor

    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True, umask=0o077, pass_fds=tuple(sources),
                                preexec_fn=place if sources else None,  # noqa: PLW1509
                                **identity.popen_args())  # type: ignore[call-overload]
    except OSError as e:
        raise GuestError(f"{argv[0]}: {e.strerror}") from None
    finally:
        for source in sources.values():
            os.close(source)


def wait_ready(qemu, qmp: str, timeout: float) -> Optional[int]:  # type: ignore[no-untyped-def]
    """Wait until QEMU has set the guest up; returns None then, or QEMU's exit code if it ended
    first. GuestError after ``timeout``.

    QEMU's greeting comes from its monitor thread while it is still setting up (a VNC port that
    is taken fails after it); a command's answer comes from the main loop, once all is up. So
    the readiness is the answer to ``qmp_capabilities``."""
    deadline = time.monotonic() + timeout
    try:
        exited = os.pidfd_open(qemu.pid)
    except (AttributeError, OSError):
        exited = None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(qmp)  # queued on the socket QEMU holds; QEMU accepts once it can
        watch = [conn] + ([exited] if exited is not None else [])
        received, asked = b"", False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GuestError(f"QEMU did not finish starting within {timeout:g} s")
            ready = select.select(watch, [], [], min(left, 0.5 if exited is None else left))[0]
            if (exited is not None and exited in ready) or qemu.poll() is not None:
                return qemu.wait()
            if conn not in ready:
                continue
            data = conn.recv(4096)
            if not data:  # closed: QEMU is going away
                return qemu.wait(max(0.0, min(5.0, deadline - time.monotonic())))
            received += data
            if not asked and b"\n" in received:  # the greeting
                conn.sendall(b'{"execute": "qmp_capabilities"}\n')
                received, asked = received.partition(b"\n")[2], True
            if asked and b"\n" in received:
                return None
    except OSError as e:  # refused or reset: the socket went away with a QEMU that is ending
        import subprocess
        try:
            return qemu.wait(max(0.0, min(5.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            raise GuestError(f"{qmp}: {e.strerror}") from None
    finally:
        conn.close()
        if exited is not None:
            os.close(exited)
