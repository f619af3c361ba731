"""Guests for the benchmarks, their generated SysV scripts, and the helper argv those scripts pass.

The helper's own command line is taken from the generated script itself: a copy of the script
whose HELPER points at a recorder shows, byte for byte, what the script would hand the helper.
Timing the helper with that argv is timing exactly what the script runs, minus the shell.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
from pathlib import Path
from typing import Dict, List, Optional

from kit import guestkit, qemuinit, qi

RECORDER = """#!/bin/sh
# bench: records the argv a generated script hands its helper (NUL separated)
printf '%s\\0' "$@" >{out}
"""


class Guests:
    """A sandbox root with registered guests (folder ``vms``), all of them quick test guests."""

    def __init__(self, box: Path, host: str = "MINSTOPDELAY=1\n"):
        self.box = box
        self.root = box / "root"
        self.vms = box / "vms"
        qemuinit.host_conf(self.root, host)

    def host(self, text: str) -> None:
        qemuinit.host_conf(self.root, text)

    def add(self, name: str, guest: Optional[guestkit.TestGuest] = None, rc: str = "") -> Path:
        return qemuinit.write_guest(self.vms, name, guest, rc=rc)

    def register(self) -> None:
        qi(self.root, "register", str(self.vms), timeout=600)

    def rundir(self) -> Path:
        return self.root / "run/qemu-init"

    def pidfile(self, name: str) -> Path:
        return self.rundir() / f"{name.lower()}.pid"

    def serial(self, name: str) -> Path:
        return self.vms / f"{name.lower()}.serial"

    def argv(self, name: str) -> List[str]:
        """The QEMU command line qemu-init makes for this guest (``show --argv``)."""
        return qi(self.root, "show", "--argv", name).stdout.splitlines()

    def sysv_script(self, name: str) -> Path:
        """Generate the guest's SysV script into BOX/sysv and return it."""
        out = self.box / "sysv"
        qi(self.root, "generate", "--init", "sysv", "--output", str(out), name)
        script = out / f"qemu-{name.lower()}"
        if not script.is_file():
            found = sorted(p.name for p in out.iterdir())
            raise RuntimeError(f"generate wrote no {script.name} (it wrote {found})")
        script.chmod(0o755)
        return script

    def kill(self, name: Optional[str] = None) -> None:
        """SIGKILL the guest(s), wait until gone, remove pid files and sockets (not the locks).

        A guest is its pid file's pid, and only while guestkit finds that pid among this box's
        QEMUs (by command line or by where its output goes: the helper's QEMU names no file of
        the box in its argv), so a recycled pid is never killed."""
        if name is None:
            guestkit.kill_qemu(str(self.box))
        else:
            try:
                pid = int(self.pidfile(name).read_text())
            except (OSError, ValueError):
                pid = 0
            if pid and pid in guestkit.qemu_processes(str(self.box)):
                os.kill(pid, signal.SIGKILL)
                guestkit.wait_gone(pid)
        pattern = "*" if name is None else f"{name.lower()}.*"
        for path in self.rundir().glob(pattern):
            if path.suffix != ".lock":
                path.unlink(missing_ok=True)


def helper_args(script: Path, action: str) -> List[str]:
    """The arguments (after the helper itself) that ``script ACTION`` hands the helper."""
    record = script.with_name(f".{script.name}.{action}.argv")
    recorder = script.with_name(".recorder.sh")
    recorder.write_text(RECORDER.format(out=shlex.quote(str(record))))
    recorder.chmod(0o755)
    text = script.read_text()
    copy, count = re.subn(r"^HELPER=.*$", f"HELPER={shlex.quote(str(recorder))}", text, count=1, flags=re.M)
    if count != 1:
        raise RuntimeError(f"{script}: no HELPER= line to redirect")
    spy = script.with_name(f".{script.name}.spy")
    spy.write_text(copy)
    spy.chmod(0o755)
    from kit import run
    run([str(spy), action], ok=())
    words = record.read_bytes().split(b"\0")[:-1]
    if not words:
        raise RuntimeError(f"{script} {action} did not call its helper")
    return [os.fsdecode(w) for w in words]


def option(args: List[str], name: str) -> str:
    """The value of ``--name VALUE`` among the helper arguments before ``--`` ("" if absent)."""
    head = args[:args.index("--")] if "--" in args else args
    flag = f"--{name}"
    return head[head.index(flag) + 1] if flag in head[:-1] else ""


def by_hand(start_args: List[str]) -> List[str]:
    """The cheapest command a person would type to start the same guest by hand: the QEMU
    command line the script hands the helper, with the control and monitor sockets QEMU
    creates itself at the script's paths (``-chardev socket,id=qmp,path=…``) instead of the
    descriptors the helper binds and passes, ``-daemonize -pidfile`` (the script's pid file) so
    that the command returns once QEMU has set the guest up, and without ``-sandbox`` (QEMU's
    sandbox forbids the fork of ``-daemonize``). As whoever runs it (root here): no privilege
    drop. The serial console's log, which the helper opens and hands over as an fd set
    (``-add-fd``, ``logfile=/dev/fdset/N``), is QEMU's own ``logfile=PATH`` by hand. A descriptor
    that is none of these (a tap) has no by-hand equivalent here: RuntimeError."""
    argv = start_args[start_args.index("--") + 1:]
    from qemu_init.runtime import fds  # the descriptor numbers the helper fills
    paths = {f"fd={fds.QMP_FD}": option(start_args, "qmp"), f"fd={fds.HMP_FD}": option(start_args, "hmp"),
             f"fd={fds.CONSOLE_FD}": option(start_args, "console"), f"fd={fds.AGENT_FD}": option(start_args, "agent")}
    log = option(start_args, "console-log")
    out: List[str] = []
    words = iter(argv)
    for word in words:
        if word == "-sandbox" or (word == "-add-fd" and log):
            next(words, None)
            continue
        if log and word.startswith("socket,") and ",logfile=/dev/fdset/" in word:
            word = ",".join("logfile=" + log if p.startswith("logfile=") else p for p in word.split(","))
        if out and out[-1] in ("-chardev", "-netdev", "-add-fd") and "fd=" in word:
            parts = word.split(",")
            at = [i for i, part in enumerate(parts) if part.startswith("fd=")]
            if out[-1] != "-chardev" or len(at) != 1 or not paths.get(parts[at[0]]):
                raise RuntimeError(f"{out[-1]} {word}: a descriptor with no by-hand equivalent")
            parts[at[0]] = "path=" + paths[parts[at[0]]]
            word = ",".join(parts)
        out.append(word)
    return [*out, "-daemonize", "-pidfile", option(start_args, "pidfile")]


def script_vars(script: Path) -> Dict[str, str]:
    """The ``NAME=value`` settings at the top of a generated script (shell-unquoted)."""
    found = {}
    for line in script.read_text().splitlines():
        m = re.match(r"^([A-Z]+)=(.*)$", line)
        if m:
            words = shlex.split(m.group(2))
            found[m.group(1)] = words[0] if words else ""
    return found
