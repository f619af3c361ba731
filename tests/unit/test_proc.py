"""Process identity: which command lines count as guest NAME."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from qemu_init.runtime import proc


@pytest.mark.parametrize("argv, name", [
    (["qemu-system-x86_64", "-name", "vm1"], "vm1"),
    (["/usr/bin/qemu-system-aarch64", "-m", "1G", "-name", "vm1,debug-threads=on"], "vm1"),
    (["qemu-kvm", "-name", "guest=vm1,process=qemu:vm1"], "vm1"),
    (["qemu-system-x86_64", "--name", "vm1"], "vm1"),
    (["qemu-system-x86_64", "-name=vm1"], "vm1"),
    (["qemu-system-x86_64", "-name", "a,,b"], "a,b"),  # ",," is an escaped comma
    (["qemu-system-x86_64", "-name", "vm1", "-name", "vm2"], "vm2"),  # the last one wins
    (["qemu-system-x86_64", "-m", "64"], None),
    (["qemu-system-x86_64", "-name"], None),
    (["sleep", "-name", "vm1"], None),
    (["/usr/bin/python3", "qemu-system-x86_64", "-name", "vm1"], None),
    ([], None),
])
def test_guest_name(argv, name):
    assert proc.guest_name(argv) == name


def test_pidfile_reading(tmp_path):
    path = tmp_path / "p"
    assert proc.read_pidfile(str(path)) is None
    path.write_text("1234\n")
    assert proc.read_pidfile(str(path)) == 1234
    for junk in ("", "abc", "-1", "0", "12 13"):
        path.write_text(junk)
        with pytest.raises(ValueError):
            proc.read_pidfile(str(path))


ME = (os.getuid(),)


def test_probe(tmp_path):
    path = str(tmp_path / "p")
    assert proc.probe(path, "vm1", ME) == (proc.ABSENT, None)
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")
    assert proc.probe(path, "vm1", ME) == (proc.FOREIGN, os.getpid())  # pytest is no QEMU


def test_guest_process_refuses_a_foreign_pid():
    with pytest.raises(ProcessLookupError):
        proc.GuestProcess(os.getpid(), "vm1", ME)


def test_a_lookalike_of_another_user_is_not_the_guest(tmp_path):
    """Its command line says it is guest vm1, but it runs as someone who is not the guest's user."""
    child = subprocess.Popen(["qemu-system-x86_64", "-c", "import time; time.sleep(30)", "-name", "vm1"],
                             executable=sys.executable)
    try:
        deadline = time.monotonic() + 10
        while not proc.is_guest(child.pid, "vm1", ME):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        other = (os.getuid() + 4242,)
        assert not proc.is_guest(child.pid, "vm1", other)
        path = str(tmp_path / "p")
        with open(path, "w") as f:
            f.write(f"{child.pid}\n")
        assert proc.probe(path, "vm1", other) == (proc.FOREIGN, child.pid)
        with pytest.raises(ProcessLookupError):
            proc.GuestProcess(child.pid, "vm1", other)
    finally:
        child.kill()
        child.wait()


def test_without_proc_nothing_can_be_told(tmp_path, monkeypatch):
    """FreeBSD without procfs, a hidden /proc: 'unknown' (OSError), never 'dead'."""
    path = str(tmp_path / "p")
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")
    real = os.path.isdir
    monkeypatch.setattr(proc.os.path, "isdir", lambda p: False if p == "/proc/self" else real(p))
    with pytest.raises(OSError):
        proc.probe(path, "vm1", ME)


def test_guest_process_sleep_ends_when_the_process_exits():
    # what lets a stop return the moment QEMU is gone, not at the next poll
    child = subprocess.Popen(["qemu-system-x86_64", "-c", "import time; time.sleep(0.3)", "-name", "vm1"],
                             executable=sys.executable)
    try:
        deadline = time.monotonic() + 10
        while not proc.is_guest(child.pid, "vm1", ME):  # Popen may return while the exec is under way
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process = proc.GuestProcess(child.pid, "vm1", ME)
        if process._fd is None:
            pytest.skip("no pidfds here: sleep is time.sleep")
        started = time.monotonic()
        process.sleep(10)
        assert time.monotonic() - started < 5 and not process.alive()
        process.sleep(10)  # an exited process: no wait at all
        assert time.monotonic() - started < 5
        process.close()
    finally:
        child.kill()
        child.wait()
