"""What status may touch: the console log only under the guest's lock, and only when that lock is
free at once (a start or stop holding it is never waited for, nor raced).

The real console: tests/e2e/test_console_agent.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time

import pytest

from qemu_init.runtime import console, control


@pytest.fixture
def folder():
    path = tempfile.mkdtemp(prefix="qi-", dir="/tmp")  # short: unix socket paths
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def held(path):
    """The guest's lock, held as a start or stop holds it (another open file description)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _gc(folder, **more):
    return control.GuestControl(name="st1", pidfile=f"{folder}/st1.pid", qmp=f"{folder}/st1.qmp",
                                lock=f"{folder}/st1.lock", runas="root", **more)


def _big_log(path, monkeypatch):
    monkeypatch.setattr(console, "CAP", 100)
    with open(path, "wb") as f:
        f.write(b"line\n" * 30)


# -- the console log: trimmed under the lock, never raced ---------------------------------------

def test_status_leaves_the_console_log_alone_while_a_start_or_stop_holds_the_lock(folder, monkeypatch):
    gc = _gc(folder, console_log=f"{folder}/st1.console.log")
    _big_log(gc.console_log, monkeypatch)
    began = time.monotonic()
    with held(gc.lock):  # a start renaming the log, a stop trimming it: theirs to do
        assert control.status(gc).code == 3
    assert time.monotonic() - began < 0.5  # never waits for the lock
    assert os.path.getsize(gc.console_log) == 150 and not os.path.exists(gc.console_log + ".1")


def test_status_keeps_the_log_within_its_cap_when_the_lock_is_free(folder, monkeypatch):
    gc = _gc(folder, console_log=f"{folder}/st1.console.log")
    _big_log(gc.console_log, monkeypatch)
    open(gc.lock, "w").close()  # the guest started once: its lock file exists
    control.status(gc)
    assert os.path.getsize(gc.console_log) == 0 and os.path.getsize(gc.console_log + ".1") == 150
    fd = os.open(gc.lock, os.O_RDWR)  # and let go of it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_status_creates_no_lock_file_and_trims_nothing_without_one(folder, monkeypatch):
    gc = _gc(folder, console_log=f"{folder}/st1.console.log")
    _big_log(gc.console_log, monkeypatch)
    control.status(gc)
    assert not os.path.exists(gc.lock)
    assert os.path.getsize(gc.console_log) == 150


def test_console_tail_trims_only_under_the_lock(folder, monkeypatch):
    log, lock = f"{folder}/st1.console.log", f"{folder}/st1.lock"
    _big_log(log, monkeypatch)
    out = open(f"{folder}/out", "w+b")
    with held(lock):
        assert console.tail(log, 2, out, lock=lock) == 0
    assert os.path.getsize(log) == 150 and not os.path.exists(log + ".1")
    assert console.tail(log, 2, out, lock=lock) == 0
    assert os.path.getsize(log) == 0 and os.path.getsize(log + ".1") == 150
    out.seek(0)
    assert out.read() == b"line\n" * 4  # the same last lines either way


def test_a_console_session_trims_only_under_the_lock(folder, monkeypatch):
    gc = _gc(folder, console=f"{folder}/st1.console", console_log=f"{folder}/st1.console.log")
    _big_log(gc.console_log, monkeypatch)
    with held(gc.lock):
        with pytest.raises(Exception, match="not running"):  # no console socket: nothing to attach to
            console.attach(gc.name, gc.console, gc.console_log, lock=gc.lock)
    assert os.path.getsize(gc.console_log) == 150
    with pytest.raises(Exception, match="not running"):
        console.attach(gc.name, gc.console, gc.console_log, lock=gc.lock)
    assert os.path.getsize(gc.console_log) == 0
