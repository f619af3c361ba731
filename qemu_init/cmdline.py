"""The QEMU command line of a guest: a pure function of the model, the host settings and paths.

``plan`` also returns everything else the runtime needs to know about one guest (status file
paths, monitor and VNC addresses, tap names), so the scripts, the CLI and ``show`` agree.
"""

from __future__ import annotations

import os
from .records import record as dataclass  # @record: dataclasses' decorator without its import cost (records.py)
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: ~4 ms of every command
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

from .model import Guest, Host, Nic
from .paths import Paths
from .runtime import status
from .runtime.fds import HMP_FD, QMP_FD, SANDBOX, TAP_FD

@dataclass(frozen=True)
class Plan:
    name: str
    number: int
    argv: Tuple[str, ...]
    pidfile: str
    qmp: str
    lock: str
    log: str
    runas: str  # the user QEMU runs as ("root" only where the rc-file says so)
    hmp: str  # the human monitor's unix socket, made by the helper; "" if it has none
    taps: Tuple[Tuple[str, str], ...]  # (tap, bridge), made by the helper
    monitor: str  # for humans: "tcp 127.0.0.1:30320", "unix …", "off"
    monitor_port: Optional[int]
    vnc: str  # for humans: "127.0.0.1:5 (port 5905)" or "off"
    vnc_display: Optional[Tuple[str, int]]
    stopdelay: int
    monitor_address: str = ""  # a TCP monitor's "127.0.0.1:30320", else ""
    statefile: str = ""  # where a save writes the guest's state (runtime/savestate.py)
    onshutdown: str = "shutdown"  # what a stop through the guest's service does: shutdown or save
    savetime: int = 0  # seconds a save may take

    @property
    def vnc_address(self) -> str:
        """The VNC display as the helper is given it, "127.0.0.1:5" ("" without VNC)."""
        return f"{self.vnc_display[0]}:{self.vnc_display[1]}" if self.vnc_display else ""


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


def _chardev(ident: str, fd: int, mode: str) -> List[str]:
    """A monitor on a socket the helper made and passes as descriptor ``fd``."""
    return ["-chardev", f"socket,id={ident},fd={fd},server=on,wait=off", "-mon", f"chardev={ident},mode={mode}"]


def _monitor(guest: Guest, host: Host, number: int, paths: Paths) -> Tuple[List[str], str, str, Optional[int]]:
    """(QEMU options, TCP address, unix socket, TCP port) of the human monitor."""
    port = monitor_port(host, number)
    if guest.monitor == "off":
        return ["-monitor", "none"], "", "", None
    if guest.monitor == "unix":
        return _chardev("hmp", HMP_FD, "readline"), "", paths.monitor_socket(guest.name), None
    address = {"inet": "127.0.0.1", "inet6": "[::1]"}.get(guest.monitor, "localhost")
    return ["-monitor", f"tcp:{address}:{port},server=on,wait=off"], f"{address}:{port}", "", port


def name_option(name: str, system: str) -> str:
    """``-name``'s value. ``process=`` (the name ps and top show) only on Linux: elsewhere QEMU
    exits with "Change of process name not supported by your OS" (it needs prctl PR_SET_NAME)."""
    return f"{name},process=qemu-{name.lower()}" if system == "linux" else name


def plan(guest: Guest, number: int, host: Host, paths: Paths, system: Optional[str] = None) -> Plan:
    """QEMU's command line as the helper runs it (runtime/launch.py): no -daemonize, -pidfile,
    -runas or tap scripts, which the seccomp sandbox forbids; the helper does those itself.
    ``system`` (``linux``, ``freebsd``) is where it runs; by default the one we run on."""
    name = guest.name
    qmp = paths.qmp(name)
    if system is None:
        from .runtime import platform
        system = platform.name()
    argv: List[str] = [guest.tgtarch, "-name", name_option(name, system)]
    if system == "linux":  # seccomp is Linux's: elsewhere QEMU says "-sandbox support is not enabled"
        argv += ["-sandbox", SANDBOX]
    argv += _chardev("qmp", QMP_FD, "control")
    monitor, monitor_address, hmp, port = _monitor(guest, host, number, paths)
    argv += monitor
    display = vnc_display(guest, host, number)
    vnc_address = f"{display[0]}:{display[1]}" if display else ""
    if display:
        argv += ["-vnc", vnc_address]
    else:
        argv += ["-display", "none"]
    if guest.kvm:
        argv += ["-accel", "kvm"]
    for option, value in (("-cpu", guest.cpu), ("-machine", guest.machine), ("-m", guest.ram),
                          ("-smp", guest.smp), ("-vga", guest.vga)):
        if value:
            argv += [option, value]
    taps = []
    for position, nic in enumerate(guest.nics):  # the helper passes each tap at TAP_FD + position
        tap = tap_name(number, nic)
        taps.append((tap, nic.bridge))
        argv += ["-netdev", f"tap,id=net{nic.index},fd={TAP_FD + position}",
                 "-device", f"{nic.model},netdev=net{nic.index},mac={nic.mac}"]
    if not guest.nics:
        argv += ["-nic", "none"]  # else QEMU adds a user-mode NIC of its own (outbound NAT)
    for drive in guest.drives:
        escaped = qemu_escape(drive.file)
        if drive.kind == "disk":
            argv += ["-drive", f"file={escaped},if=virtio,format={image_format_by_name(drive.file)}"]
        else:
            argv += ["-drive", f"file={escaped},media=cdrom,readonly=on"]
    argv += guest.raw
    return Plan(name=name, number=number, argv=tuple(argv), pidfile=paths.pidfile(name), qmp=qmp,
                lock=paths.lock(name), log=paths.log(name), runas=guest.runas, hmp=hmp, taps=tuple(taps),
                monitor=status.monitor_text(monitor_address, hmp) or "off", monitor_port=port,
                vnc=status.vnc_text(vnc_address) or "off",
                vnc_display=display, stopdelay=guest.stopdelay, monitor_address=monitor_address,
                statefile=paths.statefile(name), onshutdown=guest.onshutdown, savetime=guest.savetime)


def image_format_by_name(path: str) -> str:
    """A disk's format, from its file name (``.qcow2``, ``.vmdk``, …; anything else is raw).

    Never from the image's contents: a guest can write any header into a raw disk, and QEMU
    opening it as qcow2 with a backing file would hand the guest files of the host. `check`
    warns when a header and the name disagree."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    return ext if ext in ("qcow2", "qed", "vdi", "vmdk", "vhdx") else "raw"
