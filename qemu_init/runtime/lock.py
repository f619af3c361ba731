"""The per-guest lock start and stop hold, so that they never race (ten concurrent starts make
one QEMU). status, console and monitor never wait for it: they must answer while a stop waits.
What status and console do besides reading (trim the console log, ask the guest agent) they do
only while holding it, taken if it is free at once (``try_locked``), so never against a start or
stop."""

from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager

from ..errors import GuestError
from .guestlog import makedirs

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import Iterator


@contextmanager
def locked(path: str, wait: float) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, waited for up to ``wait`` seconds; the fd is
    close-on-exec so neither QEMU nor PRECMD inherits it."""
    import fcntl
    if not path:
        raise GuestError("no lock file given")
    makedirs(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise GuestError(f"{path}: {e.strerror}", 4 if e.errno in (errno.EACCES, errno.EPERM) else 1)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise GuestError(f"{path}: still locked after {wait:g} s by another start or stop")
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


@contextmanager
def try_locked(path: str) -> Iterator[bool]:
    """The same lock, only if it is free at once: True while held; False when a start, a stop (or
    another look) holds it, when there is no lock file yet, or for anyone but root. Never waits,
    never creates the lock file: status writes nothing it does not hold the lock for."""
    import fcntl
    fd = -1
    if path and os.geteuid() == 0:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # absent, refused, or held (BlockingIOError)
            if fd >= 0:
                os.close(fd)
            fd = -1
    try:
        yield fd >= 0
    finally:
        if fd >= 0:
            os.close(fd)
