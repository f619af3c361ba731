"""Who trims the console log: start and stop, holding the guest's lock; status and console only
under that lock too, and only when it is free at once (a start or stop holding it is never waited
for, nor raced). Who asks the guest agent: never the init scripts' status; `qemu-init status
NAME` only while no start or stop holds the lock (the agent serves one client: a stop asking it to
shut down must have it).

A fake QEMU here: a sleeper whose argv reads as the guest's QEMU, and a fake QMP. The real guest
agent and console: tests/e2e/test_console_agent.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import inprocess
import pytest
from fakeqmp import FakeQMP, reply

from qemu_init.errors import GuestError
from qemu_init.runtime import console, control, helper, helperargs
from qemu_init.runtime.status import line


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


class Listener:
    """A unix socket that accepts nothing by itself: whether anyone connected is told afterwards
    (a connection waits in the backlog), without ever answering (a hung agent)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.sock.setblocking(False)

    def connected(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True

    def close(self):
        self.sock.close()


@contextlib.contextmanager
def running(name, pidfile, qmp, obeys=False):
    """A process that is guest ``name``'s QEMU to status (its pid file written), answering QMP;
    ``obeys``: it ends at the first press of its power button."""
    fake = subprocess.Popen(["qemu-system-x86_64", "-c", "import time; time.sleep(60)", "-name", name],
                            executable=sys.executable)
    try:
        deadline = time.monotonic() + 30
        while True:  # Popen may return while the exec is under way
            with open(f"/proc/{fake.pid}/cmdline", "rb") as f:
                if f.read().startswith(b"qemu-system-x86_64\0"):
                    break
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.makedirs(os.path.dirname(pidfile), exist_ok=True)
        with open(pidfile, "w") as f:
            f.write(f"{fake.pid}\n")
        def answer(server, message):
            if obeys and message["execute"] == "system_powerdown":
                fake.kill()
            return [reply(message, {"status": "running", "running": True})]

        with FakeQMP(qmp, answer):
            yield fake
    finally:
        fake.kill()
        fake.wait()


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


def _free(lock) -> bool:
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_stop_trims_the_log_holding_the_lock(folder, monkeypatch):
    gc = _gc(folder, console_log=f"{folder}/st1.console.log", log=f"{folder}/st1.log", stopdelay=5)
    _big_log(gc.console_log, monkeypatch)
    trims = []
    real = console.trim_log
    monkeypatch.setattr(console, "trim_log", lambda path: trims.append(_free(gc.lock)) or real(path))
    with running(gc.name, gc.pidfile, gc.qmp, obeys=True):
        assert control.stop(gc) == 0
    assert trims == [False]  # trimmed once, the lock held (by the stop)
    assert os.path.getsize(gc.console_log) == 0


def test_start_renames_the_log_holding_the_lock(folder, monkeypatch):
    gc = _gc(folder, console=f"{folder}/st1.console", console_log=f"{folder}/st1.console.log",
             log=f"{folder}/st1.log", argv=("qemu-system-x86_64", "-name", "st1"))
    seen = []

    def open_log(path):  # where the start opens (and renames) the log: seen, then the start ends
        seen.append(_free(gc.lock))
        raise GuestError("enough")

    monkeypatch.setattr(console, "open_log", open_log)
    with pytest.raises(GuestError, match="enough"):
        control.start(gc)
    assert seen == [False]  # the start held the lock


# -- the guest agent: never from the scripts' status, never against a stop ------------------------

def test_the_scripts_status_never_asks_the_agent(folder, capsys):
    gc = _gc(folder, agent=f"{folder}/st1.qga")
    agent = Listener(gc.agent)  # accepts, never answers: asking it would cost the whole timeout
    try:
        with running(gc.name, gc.pidfile, gc.qmp) as fake:
            began = time.monotonic()
            code = helper.main(helperargs.words("status", gc._asdict()))  # as its script calls it
            took = time.monotonic() - began
        assert code == 0
        assert capsys.readouterr().out == f"st1: running (pid {fake.pid})\n"
        assert not agent.connected()
        assert took < 0.4, took
    finally:
        agent.close()


def test_status_asks_the_agent_only_while_no_start_or_stop_holds_the_lock(folder):
    gc = _gc(folder, agent=f"{folder}/st1.qga")
    agent = Listener(gc.agent)
    try:
        with running(gc.name, gc.pidfile, gc.qmp) as fake:
            with held(gc.lock):  # a stop asking the agent to shut down has its one connection
                st = control.status(gc, agent=True)
            assert line(gc.name, st) == f"st1: running (pid {fake.pid})"
            assert not agent.connected()
            st = control.status(gc, agent=True)  # nobody holds it: asked (and it never answers)
            assert line(gc.name, st) == f"st1: running (pid {fake.pid}, agent not answering)"
            assert agent.connected()
    finally:
        agent.close()


def test_qemu_init_status_does_not_connect_to_the_agent_while_the_lock_is_held(folder):
    root, vms = os.path.join(folder, "r"), os.path.join(folder, "vms")
    os.makedirs(vms)
    with open(os.path.join(vms, "st1-qemud.rc"), "w") as f:
        f.write("NAME=st1\nTGTARCH=qemu-system-x86_64\nKVM=no\nBRIDGE=none\nAGENT=yes\n")
    assert inprocess.run(["--root", root, "register", vms]).returncode == 0
    run = os.path.join(root, "run/qemu-init")
    os.makedirs(run, exist_ok=True)
    agent = Listener(os.path.join(run, "st1.qga"))
    try:
        with running("st1", os.path.join(run, "st1.pid"), os.path.join(run, "st1.qmp")) as fake:
            with held(os.path.join(run, "st1.lock")):
                proc = inprocess.run(["--root", root, "status", "st1"])
            assert not agent.connected()
            assert (proc.returncode, proc.stderr) == (0, "")
            assert proc.stdout.startswith(f"st1: running (pid {fake.pid}") and "agent" not in proc.stdout
            listing = inprocess.run(["--root", root, "list"])  # tables never ask
            assert "running" in listing.stdout and not agent.connected()
    finally:
        agent.close()
