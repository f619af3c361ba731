"""The guest's serial console: its log file, kept within a cap, and an interactive session.

QEMU joins the guest's first serial port to a unix socket the helper bound (root's, 0600) and
copies everything the guest writes there into the console log (``logfile=``), a file the helper
opened as root and passed as a descriptor. QEMU never rotates it and the helper is no daemon, so
the cap is kept whenever the helper looks at the guest, always under the guest's lock
(runtime/lock.py), so that no two of these ever race (a trim racing start's rename lost QEMU's
output): ``start`` renames a log over the cap to ``LOG.1`` before QEMU opens it; ``stop``, once
QEMU is gone, and every ``status`` (also ``list`` and ``qemud status``) and ``console`` (session
or ``--tail``) run by root, copy a log over the cap to ``LOG.1`` and truncate it (logrotate's
copytruncate: QEMU appends, so its next line lands at the start of the emptied file). status and
console take the lock only if it is free at once (``keep_within_cap``): they never wait for a
start or stop, and leave the log to it. Between two looks a chatty guest can write past the cap;
at most ``CAP`` bytes stay after each look, and ``LOG.1`` holds the ones before. A guest that runs
for months is kept near its cap by whatever looks at it now and then (a monitoring check calling
its status; ``qemu-init list`` from cron).

The session (``qemu-init console NAME``): the terminal in raw mode, every byte to the guest and
back, Ctrl-] (as ``virsh console``) detaches; the terminal is restored on every way out (the
escape key, the guest or QEMU going away, a signal, an error). One session at a time: a second
one would only queue behind the first on QEMU's socket, so a lock says so at once. Input from a
pipe (``echo uptime | qemu-init console NAME``) is sent as it is; after its end the session prints
what the guest answers until it has been quiet for a second (ten at the most).
"""

from __future__ import annotations

import os
import sys

from ..errors import GuestError
from .guestlog import nofollow_error

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import BinaryIO, Optional

CAP = 1 << 20         # bytes of console log kept after each look (and as much again in LOG.1)
ESCAPE = b"\x1d"      # Ctrl-]
TAIL_LINES = 20
QUIET = 1.0           # input from a pipe: the session ends once the guest is quiet this long after it,
AFTER_INPUT = 10.0    # or this long after it at the latest (a guest that never stops talking)


# -- the log -----------------------------------------------------------------------------------

def open_log(path: str) -> int:
    """The console log for a QEMU about to start, opened by root to be passed on (append, 0640,
    never through a symlink): a log over the cap is renamed to LOG.1 first."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o750, exist_ok=True)
    try:
        if os.lstat(path).st_size > CAP:
            os.replace(path, path + ".1")
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        return os.open(path, flags, 0o640)
    except OSError as e:
        raise GuestError(nofollow_error(path, e)) from None


def trim_log(path: str) -> bool:
    """Keep the log of a running guest within the cap: over it, copied to LOG.1 (whole, via a
    temporary file) and truncated. Only under the guest's lock (stop, keep_within_cap). Returns
    whether it trimmed; any failure (not root, no log) leaves the log as it is."""
    if not path:
        return False
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_size <= CAP:
            return False
        tmp = f"{path}.1.{os.getpid()}.tmp"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        try:
            while True:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                os.write(out, chunk)
        finally:
            os.close(out)
        os.replace(tmp, path + ".1")
        os.ftruncate(fd, 0)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def over_cap(path: str) -> bool:
    """Whether the log is over the cap (then trim_log has work to do); False without one."""
    try:
        return bool(path) and os.lstat(path).st_size > CAP
    except OSError:
        return False


def keep_within_cap(path: str, lock: str) -> bool:
    """trim_log under the guest's lock ``lock``, if it is free at once (lock.try_locked): never
    waits for a start or stop, never races their rename or trim, does nothing but as root."""
    if not over_cap(path):
        return False
    from .lock import try_locked
    with try_locked(lock) as held:
        return held and trim_log(path)


def tail(path: str, lines: int = TAIL_LINES, out: Optional[BinaryIO] = None, lock: str = "") -> int:
    """Print the last ``lines`` lines of the console log (0: all of it); trims it first when the
    guest's ``lock`` is free (keep_within_cap). Never more than CAP bytes of each file are held
    at once: the guest says how much goes into them, and a trim waits for a free lock."""
    keep_within_cap(path, lock)
    out = out or sys.stdout.buffer
    files = [f for f in (_open(path + ".1"), _open(path)) if f is not None]  # LOG.1: the older lines
    if not files:
        raise GuestError(f"no console log ({path}): the guest has not started with a console")
    try:
        if lines > 0:  # the last lines are within the last CAP bytes of the two
            data = b""
            for f in files:
                size = os.fstat(f.fileno()).st_size
                f.seek(max(0, size - CAP))
                data = (data + f.read(CAP))[-CAP:]
            out.write(b"".join(data.splitlines(keepends=True)[-lines:]))
        else:
            for f in files:
                for chunk in iter(lambda: f.read(1 << 16), b""):
                    out.write(chunk)
        out.flush()
    finally:
        for f in files:
            f.close()
    return 0


def _open(path: str) -> Optional[BinaryIO]:
    """A log to read (None when there is none), never through a symlink nor anything but a
    regular file (a FIFO would never end): LOGDIR is root's, but root reads nothing planted."""
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise GuestError(nofollow_error(path, e)) from None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise GuestError(f"{path}: not a regular file; refusing to read it")
    return f


# -- the session -------------------------------------------------------------------------------

def _session_lock(socket_path: str) -> int:
    import fcntl
    try:
        fd = os.open(socket_path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except PermissionError:
        raise GuestError("its console is root's only", 4) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise GuestError("another console session is attached (one at a time)") from None
    return fd


def attach(name: str, socket_path: str, log_path: str = "", stdin: int = 0, stdout: int = 1,
           lock: str = "") -> int:
    """An interactive session on the guest's console; returns 0 when detached or when the
    guest's console went away (said so), GuestError when there is none to attach to. The log
    is trimmed first when the guest's ``lock`` is free (keep_within_cap)."""
    import select
    import signal
    import socket
    import time
    if not socket_path:
        raise GuestError("has no console (CONSOLE=no, or the cfg-file sets -serial)")
    keep_within_cap(log_path, lock)
    if not os.path.exists(socket_path):
        raise GuestError("not running (no console socket)")
    session = _session_lock(socket_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    saved = None
    handlers = {}
    try:
        try:
            sock.connect(socket_path)
        except FileNotFoundError:
            raise GuestError("not running (no console socket)") from None
        except OSError as e:
            raise GuestError(f"{socket_path}: {e.strerror}") from None
        tty = os.isatty(stdin)

        def leave(signum, frame):  # type: ignore[no-untyped-def]
            raise SystemExit(128 + signum)  # unwinds through the finally below

        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                handlers[sig] = signal.signal(sig, leave)
            except ValueError:  # not the main thread (tests): no handlers of ours
                break
        if tty:
            import termios
            import tty as ttymod
            saved = termios.tcgetattr(stdin)
            ttymod.setraw(stdin)
            os.write(stdout, f"Connected to {name}'s console; escape character is ^] (Ctrl + ])\r\n".encode())
        why = ""
        watch = [sock, stdin]
        quiet, until = None, None  # after the end of input: how long to wait for more, and until when
        while not why:
            if until is not None:
                quiet = min(QUIET, until - time.monotonic())
            ready = select.select(watch, [], [], quiet)[0] if quiet is None or quiet > 0 else []
            if not ready and quiet is not None:
                break
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    why = "the console closed (the guest stopped)"
                    break
                os.write(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 4096)
                if not data:  # end of input (not a terminal): show what the guest answers, then leave
                    watch, until = [sock], time.monotonic() + AFTER_INPUT
                    continue
                if ESCAPE in data:
                    data = data.partition(ESCAPE)[0]
                    why = "detached"
                if data:
                    sock.sendall(data)
        if why and why != "detached":
            os.write(stdout, f"\r\n{name}: {why}\r\n".encode())
        return 0
    finally:
        if saved is not None:
            import termios
            termios.tcsetattr(stdin, termios.TCSAFLUSH, saved)
            os.write(stdout, b"\n")
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        sock.close()
        os.close(session)
