"""The guest log (and syslog), warnings on stderr, and the folders the helper's files go in.

``gc`` here is anything with ``name`` and ``log`` (a control.GuestControl): this module sits
below control.py and never imports it.
"""

from __future__ import annotations

import errno
import os
import sys
import time

# O_NOFOLLOW makes open() fail on a symlink: ELOOP on Linux, EMLINK on FreeBSD.
_SYMLINK_ERRNOS = (errno.ELOOP, errno.EMLINK)


def warn(gc, message: str) -> None:  # type: ignore[no-untyped-def]
    print(f"qemu-init: {gc.name}: warning: {message}", file=sys.stderr)


def makedirs(*paths: str) -> None:
    """The folders the given files go in (0755)."""
    for path in paths:
        parent = os.path.dirname(os.path.abspath(path)) if path else ""
        if parent:
            os.makedirs(parent, mode=0o755, exist_ok=True)


def nofollow_error(path: str, e: OSError) -> str:
    if e.errno in _SYMLINK_ERRNOS:
        return f"{path}: is a symbolic link; refusing to follow it"
    return f"{path}: {e.strerror}"


def open_log(gc, flags: int) -> int:  # type: ignore[no-untyped-def]
    """The guest log, appended to. Never through a symlink: the run folder may be writable by
    others than root, and a planted link must not make root append to (or create) another file."""
    return os.open(gc.log, flags | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)


_unwritable_logs: set[str] = set()  # logs already warned about (a stop logs every step)


def log(gc, message: str, error: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Append a timestamped line to the guest log, and to syslog where there is one."""
    if gc.log:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {gc.name}: {message}\n"
        try:
            makedirs(gc.log)
            with open(open_log(gc, os.O_WRONLY), "a") as f:
                f.write(line)
        except OSError as e:
            if gc.log not in _unwritable_logs:
                _unwritable_logs.add(gc.log)
                warn(gc, nofollow_error(gc.log, e))
    if os.path.exists("/dev/log"):
        import syslog
        syslog.openlog("qemu-init", syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_ERR if error else syslog.LOG_INFO, f"{gc.name}: {message}")
