"""Driving qemu-init itself in tests: the CLI in a sandbox root, and guests made of the test kernel."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

from . import TestGuest, console_file


def qi(root: Union[str, Path], *args: str, check: Optional[int] = None, timeout: float = 120,
       prefix: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Run ``qemu-init --root ROOT ARGS…`` as a user would (after ``prefix``, a command that runs
    it, if given); never a traceback. With ``check``, the exit status must be that."""
    proc = subprocess.run([*prefix, sys.executable, "-m", "qemu_init", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def host_conf(root: Path, text: str) -> None:
    """Write the sandbox's host settings (ETCDIR/qemu-init.conf)."""
    conf = root / "etc/qemu-init/qemu-init.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(text)


def register(root: Path, folder: Path, *autostart: str) -> None:
    """Register every guest in ``folder``, and mark those named ``autostart on``."""
    qi(root, "register", str(folder), check=0)
    for name in autostart:
        qi(root, "autostart", "on", name, check=0)


def write_guest(folder: Path, name: str, guest: Optional[TestGuest] = None, rc: str = "", cfg: str = "",
                kernel_args: str = "", serial: Optional[Path] = None, reboot: bool = False,
                console: bool = False) -> Path:
    """An rc-file (and cfg-file) for a quick test guest; returns the rc-file.

    Software emulation, no VNC, QEMU as the default user (SYSUSR), no network unless ``rc`` says BRIDGE=…,
    STOPDELAY 3 (lower MINSTOPDELAY with host_conf). With ``guest`` it boots the test kernel,
    which powers off on the power button, and its console goes to ``serial`` (default:
    FOLDER/NAME.serial); without it QEMU sits in its BIOS and ignores the button (stubborn).
    A reset (or a panic) ends QEMU (``-no-reboot``) unless ``reboot`` is given. With ``console``
    there is no ``-serial``: the guest's console is qemu-init's (socket and LOGDIR/NAME.console.log).
    """
    folder.mkdir(parents=True, exist_ok=True)
    defaults = {"KVM": "no", "DISPLAY": "0", "BRIDGE": "none", "RAM": "256M", "STOPDELAY": "3"}
    given = {line.split("=", 1)[0] for line in rc.splitlines() if "=" in line}
    lines = [f"NAME={name}", "TGTARCH=qemu-system-x86_64"]
    lines += [f"{k}={v}" for k, v in defaults.items() if k not in given] + rc.splitlines()
    rcfile = folder / f"{name.lower()}-qemud.rc"
    rcfile.write_text("\n".join(lines) + "\n")
    cfg_lines = []
    if guest is not None:
        # its console: made here for QEMU's user when it is the default one; a caller naming
        # another (in a container's root, say) makes it itself
        append = f"console=ttyS0 panic=-1 qi.name={name} {kernel_args}".strip()
        cfg_lines += [f"-kernel {shlex.quote(str(guest.kernel))}", f"-initrd {shlex.quote(str(guest.initrd))}",
                      f"-append {shlex.quote(append)}"]
        if not console:
            serial = serial or console_file(folder / f"{name.lower()}.serial")
            cfg_lines += [f"-serial {shlex.quote('file:' + str(serial))}"]
        cfg_lines += [] if reboot else ["-no-reboot"]
    (folder / f"{name.lower()}-qemu.cfg").write_text("\n".join(cfg_lines + cfg.splitlines()) + "\n")
    return rcfile


def qemud_host(root: Path, vms: Path, guest: TestGuest) -> None:
    """The host of the qemud script tests: MINSTOPDELAY=3; autostart guests stub1 (stubborn,
    STOPDELAY 3) and lin1 (the test kernel, console in VMS/lin1.serial); idle1 (stubborn)
    registered, not autostart."""
    host_conf(root, "MINSTOPDELAY=3\n")
    write_guest(vms, "stub1")
    write_guest(vms, "lin1", guest, rc="STOPDELAY=30\n")  # time to obey the power button, even on a busy machine
    write_guest(vms, "idle1")
    register(root, vms, "stub1", "lin1")


def wait_for_count(path: Union[str, Path], text: str, count: int, timeout: float = 120.0) -> None:
    """Poll the serial log ``path`` until ``count`` lines contain ``text`` (a reboot's second
    QI-BOOTED line); TimeoutError with the end of the log otherwise."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except FileNotFoundError:
            lines = []
        if sum(text in line for line in lines) >= count:
            return
        if time.monotonic() >= deadline:
            tail = "\n".join(lines[-25:])
            raise TimeoutError(f"fewer than {count} lines with {text!r} in {path} after {timeout} s; its end:\n{tail}")
        time.sleep(0.05)


def status_rows(table: str) -> Dict[str, Tuple[str, ...]]:
    """NAME -> (STATE, PID) from the table `qemu-init qemud status` prints."""
    return {line.split()[0]: tuple(line.split()[1:3]) for line in table.splitlines()[1:]}


def qi_in(netns: str, root: Path, *args: str, check: Optional[int] = None,
          timeout: float = 120) -> subprocess.CompletedProcess:
    """``qi`` inside the network namespace ``netns`` (``ip netns exec``): what looks at or
    changes the network (check's bridge warning, start/stop with taps) then sees only it."""
    return qi(root, *args, check=check, timeout=timeout, prefix=("ip", "netns", "exec", netns))


# The guest of Root.guest: it boots nothing, sits in the BIOS and ignores the power button, so
# every stop runs the whole sequence, kept short by STOPDELAY=1 (Root lowers MINSTOPDELAY to 1).
# No network, no VNC, the monitor on its default unix socket: nothing that can clash with the host
# or other tests. QEMU runs as the default user, sandboxed, as a user's guest does.
STUBBORN = """\
NAME={name}
TGTARCH=qemu-system-x86_64
KVM=no
BRIDGE=none
DISPLAY=0
RAM=64M
STOPDELAY=1
{extra}"""


class Root:
    """A qemu-init root for the init-script tests: the folder ``root`` itself (the ``sandbox``
    fixture's, so a short /tmp/qi-XXXXXX for unix socket paths under 108 bytes), its guests in
    ROOT/vms, host settings MINSTOPDELAY=1. The ``qiroot`` fixture (tests/conftest.py) makes one."""

    def __init__(self, root: Union[str, Path]):
        self.root = str(root)
        self.vms = os.path.join(self.root, "vms")
        os.makedirs(self.vms)
        self.settings("MINSTOPDELAY=1\n")

    def settings(self, text: str) -> None:
        """Write the host settings."""
        host_conf(Path(self.root), text)

    def qi(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``qi`` in this root; with ``check``, it must succeed."""
        return qi(self.root, *args, check=0 if check else None)

    def guest(self, name: str, rc: Optional[str] = None, cfg: Optional[str] = None, extra: str = "") -> str:
        """Write and register guest ``name`` (STUBBORN with ``extra`` unless ``rc`` is given)."""
        rcfile = os.path.join(self.vms, f"{name.lower()}-qemud.rc")
        Path(rcfile).write_text(rc if rc is not None else STUBBORN.format(name=name, extra=extra))
        if cfg is not None:
            Path(self.vms, f"{name.lower()}-qemu.cfg").write_text(cfg)
        self.qi("register", rcfile)
        return rcfile

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def pid(self, name: str) -> int:
        """The pid in the guest's pid file."""
        return int(Path(self.root, "run/qemu-init", f"{name.lower()}.pid").read_text())
