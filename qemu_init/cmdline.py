"""The QEMU command line of a guest: a pure function of the model and a few host facts.

``plan`` also returns everything else the runtime needs to know about one guest (status file
paths, monitor and VNC addresses, tap names), so the scripts, the CLI and ``show`` agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .model import Guest, Host, Nic
from .paths import Paths

RUN_WITH_SINCE = (9, 1)  # QEMU 9.1 added -run-with user= and deprecated -runas


@dataclass(frozen=True)
class Facts:
    """What the command line depends on beyond the configuration."""

    qemu_version: Optional[Tuple[int, int]] = None


@dataclass(frozen=True)
class Plan:
    name: str
    number: int
    argv: Tuple[str, ...]
    pidfile: str
    qmp: str
    lock: str
    log: str
    taps: Tuple[str, ...]
    monitor: str  # for humans: "tcp 127.0.0.1:30320", "unix …", "off"
    monitor_port: Optional[int]
    vnc: str  # for humans: "127.0.0.1:5 (port 5905)" or "off"
    vnc_display: Optional[Tuple[str, int]]
    stopdelay: int


def qemu_escape(value: str) -> str:
    """Commas separate QEMU sub-options; a literal comma is written twice."""
    return value.replace(",", ",,")


def tap_name(number: int, nic: Nic) -> str:
    # Derived from the permanent number, so it fits IFNAMSIZ (15) whatever the guest's name.
    return f"qi{number}n{nic.index}"


def monitor_port(host: Host, number: int) -> int:
    return host.monport + number - 1


def vnc_display(guest: Guest, host: Host, number: int) -> Optional[Tuple[str, int]]:
    if guest.display_auto:
        return ("127.0.0.1", host.vncdisplay + number - 1)
    return guest.display


def _monitor(guest: Guest, host: Host, number: int, paths: Paths) -> Tuple[Optional[str], str, Optional[int]]:
    """(QEMU -monitor value, human text, TCP port)."""
    port = monitor_port(host, number)
    if guest.monitor == "off":
        return "none", "off", None
    if guest.monitor == "unix":
        sock = paths.monitor_socket(guest.name)
        return f"unix:{sock},server=on,wait=off", f"unix {sock}", None
    address = {"inet": "127.0.0.1", "inet6": "[::1]"}.get(guest.monitor, "localhost")
    return f"tcp:{address}:{port},server=on,wait=off", f"tcp {address}:{port}", port


def plan(guest: Guest, number: int, host: Host, paths: Paths, facts: Facts) -> Plan:
    name = guest.name
    pidfile, qmp = paths.pidfile(name), paths.qmp(name)
    argv: List[str] = [guest.tgtarch, "-name", f"{name},process=qemu-{name.lower()}"]
    if guest.daemon:
        argv.append("-daemonize")
    argv += ["-pidfile", pidfile, "-qmp", f"unix:{qmp},server=on,wait=off"]
    monitor, monitor_text, port = _monitor(guest, host, number, paths)
    argv += ["-monitor", monitor]
    display = vnc_display(guest, host, number)
    if display:
        argv += ["-vnc", f"{display[0]}:{display[1]}"]
        vnc_text = f"{display[0]}:{display[1]} (port {5900 + display[1]})"
    else:
        argv += ["-display", "none"]
        vnc_text = "off"
    if guest.runas:
        if facts.qemu_version and facts.qemu_version >= RUN_WITH_SINCE:
            argv += ["-run-with", f"user={qemu_escape(guest.runas)}"]
        else:
            argv += ["-runas", guest.runas]
    if guest.kvm:
        argv += ["-accel", "kvm"]
    for option, value in (("-cpu", guest.cpu), ("-machine", guest.machine), ("-m", guest.ram),
                          ("-smp", guest.smp), ("-vga", guest.vga)):
        if value:
            argv += [option, value]
    taps = []
    for nic in guest.nics:
        tap = tap_name(number, nic)
        taps.append(tap)
        netdev = (f"tap,id=net{nic.index},ifname={tap},script={qemu_escape(paths.ifup(nic.bridge))},"
                  f"downscript={qemu_escape(paths.ifdown(nic.bridge))}")
        argv += ["-netdev", netdev, "-device", f"{nic.model},netdev=net{nic.index},mac={nic.mac}"]
    for drive in guest.drives:
        escaped = qemu_escape(drive.file)
        if drive.kind == "disk":
            argv += ["-drive", f"file={escaped},if=virtio,format={image_format_by_name(drive.file)}"]
        else:
            argv += ["-drive", f"file={escaped},media=cdrom,readonly=on"]
    argv += guest.raw
    return Plan(name=name, number=number, argv=tuple(argv), pidfile=pidfile, qmp=qmp,
                lock=paths.lock(name), log=paths.log(name), taps=tuple(taps), monitor=monitor_text,
                monitor_port=port, vnc=vnc_text, vnc_display=display, stopdelay=guest.stopdelay)


def image_format_by_name(path: str) -> str:
    """A disk's format, from its file name (``.qcow2``, ``.vmdk``, …; anything else is raw).

    Never from the image's contents: a guest can write any header into a raw disk, and QEMU
    opening it as qcow2 with a backing file would hand the guest files of the host. `check`
    warns when a header and the name disagree."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    return ext if ext in ("qcow2", "qed", "vdi", "vmdk", "vhdx") else "raw"
