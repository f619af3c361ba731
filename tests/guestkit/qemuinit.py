"""Driving qemu-init itself in tests: the CLI in a sandbox root, and guests made of the test kernel."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Optional

from . import TestGuest


def qi(root: Path, *args: str, check: Optional[int] = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``qemu-init --root ROOT ARGS…`` as a user would; never a traceback."""
    proc = subprocess.run([sys.executable, "-m", "qemu_init", "--root", str(root), *args],
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


def write_guest(folder: Path, name: str, guest: Optional[TestGuest] = None, rc: str = "", cfg: str = "",
                kernel_args: str = "", serial: Optional[Path] = None) -> Path:
    """An rc-file (and cfg-file) for a quick test guest; returns the rc-file.

    Software emulation, no VNC, monitor on a unix socket, no privilege drop, no network unless ``rc`` says BRIDGE=…,
    STOPDELAY 3 (lower MINSTOPDELAY with host_conf). With ``guest`` it boots the test kernel,
    which powers off on the power button, and its console goes to ``serial`` (default:
    FOLDER/NAME.serial); without it QEMU sits in its BIOS and ignores the button (stubborn).
    """
    folder.mkdir(parents=True, exist_ok=True)
    # MONITOR=unix: no TCP port that another test (or suite) on this machine may hold.
    defaults = {"KVM": "no", "RUNAS": "", "DISPLAY": "0", "BRIDGE": "none", "RAM": "256M", "STOPDELAY": "3",
                "MONITOR": "unix"}
    given = {line.split("=", 1)[0] for line in rc.splitlines() if "=" in line}
    lines = [f"NAME={name}", "TGTARCH=qemu-system-x86_64"]
    lines += [f"{k}={v}" for k, v in defaults.items() if k not in given] + rc.splitlines()
    rcfile = folder / f"{name.lower()}-qemud.rc"
    rcfile.write_text("\n".join(lines) + "\n")
    cfg_lines = ["-nodefaults"] if guest is None else []
    if guest is not None:
        serial = serial or folder / f"{name.lower()}.serial"
        append = f"console=ttyS0 panic=-1 qi.name={name} {kernel_args}".strip()
        cfg_lines += [f"-kernel {shlex.quote(str(guest.kernel))}", f"-initrd {shlex.quote(str(guest.initrd))}",
                      f"-append {shlex.quote(append)}", f"-serial {shlex.quote('file:' + str(serial))}",
                      "-no-reboot"]
    (folder / f"{name.lower()}-qemu.cfg").write_text("\n".join(cfg_lines + cfg.splitlines()) + "\n")
    return rcfile


def qi_in(netns: str, root: Path, *args: str, check: Optional[int] = None,
          timeout: float = 120) -> subprocess.CompletedProcess:
    """``qi`` inside the network namespace ``netns`` (``ip netns exec``): what looks at or
    changes the network (check's bridge warning, start/stop with taps) then sees only it."""
    proc = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-m", "qemu_init", "--root", str(root),
                           *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc
