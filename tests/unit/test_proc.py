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


def test_probe(tmp_path):
    path = str(tmp_path / "p")
    assert proc.probe(path, "vm1") == (proc.ABSENT, None)
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")
    assert proc.probe(path, "vm1") == (proc.FOREIGN, os.getpid())  # pytest is no QEMU


def test_guest_process_refuses_a_foreign_pid():
    with pytest.raises(ProcessLookupError):
        proc.GuestProcess(os.getpid(), "vm1")


def test_guest_process_sleep_ends_when_the_process_exits():
    # what lets a stop return the moment QEMU is gone, not at the next poll
    child = subprocess.Popen(["qemu-system-x86_64", "-c", "import time; time.sleep(0.3)", "-name", "vm1"],
                             executable=sys.executable)
    try:
        deadline = time.monotonic() + 10
        while not proc.is_guest(child.pid, "vm1"):  # Popen may return while the exec is under way
            assert time.monotonic() < deadline
            time.sleep(0.01)
        process = proc.GuestProcess(child.pid, "vm1")
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
