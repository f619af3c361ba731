"""What the init-script tests share: a qemu-init root with registered guests, and cleanup.

The root is the shared ``sandbox`` folder (tests/conftest.py: a short /tmp/qi-XXXXXX, for unix
socket paths under 108 bytes). Every process a test starts names it in its command line, and the
``qiroot`` fixture kills whatever does (helpers and hooks too, not only QEMU), pass or fail.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import pytest

QEMU = shutil.which("qemu-system-x86_64")
CLI = [sys.executable, "-m", "qemu_init"]

# A guest that boots nothing: it sits in the BIOS and ignores the power button, so every stop
# runs the whole sequence, kept short by STOPDELAY=1 (the sandbox lowers MINSTOPDELAY to 1).
# No network, no VNC, no TCP monitor port: nothing that can clash with the host or other tests.
STUBBORN = """\
NAME={name}
TGTARCH=qemu-system-x86_64
KVM=no
BRIDGE=none
DISPLAY=0
MONITOR=unix
RUNAS=
RAM=64M
STOPDELAY=1
{extra}"""


def marked(marker: str) -> List[int]:
    """Running processes (zombies excluded) whose command line contains ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and any(marker.encode() in a for a in argv):
            pids.append(int(entry))
    return pids


def kill_marked(marker: str) -> None:
    for _ in range(50):
        pids = marked(marker)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    raise AssertionError(f"processes survive SIGKILL: {marked(marker)}")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still running"
        time.sleep(0.05)


class Sandbox:
    """A qemu-init root in /tmp/qi-XXXXXX with guests in ROOT/vms."""

    def __init__(self, root: str):
        self.root = root
        self.vms = os.path.join(root, "vms")
        os.makedirs(os.path.join(root, "etc/qemu-init"))
        os.makedirs(self.vms)
        self.settings("MINSTOPDELAY=1\n")

    def settings(self, text: str) -> None:
        Path(self.root, "etc/qemu-init/qemu-init.conf").write_text(text)

    def qi(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([*CLI, "--root", self.root, *args], capture_output=True, text=True, timeout=120)
        assert "Traceback" not in result.stderr, result.stderr
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def guest(self, name: str, rc: Optional[str] = None, cfg: Optional[str] = None, extra: str = "") -> str:
        """Write and register guest ``name`` (the stubborn guest unless ``rc`` is given)."""
        rcfile = os.path.join(self.vms, f"{name.lower()}-qemud.rc")
        Path(rcfile).write_text(rc if rc is not None else STUBBORN.format(name=name, extra=extra))
        Path(self.vms, f"{name.lower()}-qemu.cfg").write_text(cfg if cfg is not None else "-nodefaults\n")
        self.qi("register", rcfile)
        return rcfile

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def pid(self, name: str) -> int:
        return int(Path(self.root, "run/qemu-init", f"{name.lower()}.pid").read_text())


@pytest.fixture(scope="module")
def subreaper():
    """Become the reaper of the daemonized QEMUs (PR_SET_CHILD_SUBREAPER): the init of some
    containers reaps lazily, and `pgrep qemu` would list their zombies after the tests."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    adopted = prctl(36, 1, 0, 0, 0) == 0
    yield
    if adopted:
        prctl(36, 0, 0, 0, 0)
        reap()


def reap() -> None:
    """Reap the exited QEMUs we adopted, and nothing else (other children are not ours to wait)."""
    for entry in os.listdir("/proc"):
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, ValueError):
            continue
        comm = text[text.find("(") + 1:text.rfind(")")]
        state, ppid = text[text.rfind(")") + 2:].split()[:2]
        if state == "Z" and int(ppid) == os.getpid() and comm.startswith("qemu"):
            try:
                os.waitpid(int(entry), os.WNOHANG)
            except ChildProcessError:
                pass


@pytest.fixture
def qiroot(sandbox, subreaper):
    """A Sandbox in the shared ``sandbox`` folder (which removes it afterwards)."""
    root = str(sandbox)
    try:
        yield Sandbox(root)
    finally:
        kill_marked(root)
        reap()


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 120)
    return subprocess.run(list(argv), capture_output=True, text=True, **kwargs)
