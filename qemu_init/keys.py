"""The one table of keys: rc-file keys (SPEC §2) and host settings (SPEC §4).

Parsing, checking, the commented rc-file that ``new`` writes and the manual page all come from
these tables, so a key's type, default and help never drift apart.
"""

from __future__ import annotations

from .records import record as dataclass  # @record: dataclasses' decorator without its import cost (records.py)
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: ~4 ms of every command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional

from . import values
from .runtime import defaults


@dataclass(frozen=True)
class Key:
    name: str
    parse: Callable[[str], Any]
    default: Optional[str]  # as written in a file; None: computed (see ``default_help``)
    help: str
    severity: str = "optional"  # required / recommended / optional
    default_help: str = ""  # how a computed default is found
    example: str = ""
    qemu: str = ""  # the QEMU option it drives, for the documentation

    @property
    def default_text(self) -> str:
        if self.default_help:
            return self.default_help
        return self.default if self.default else "not set"


RC_KEYS: Dict[str, Key] = {k.name: k for k in (
    Key("NAME", values.name, None, "The guest's name: letters and digits, at most 40, not ending in 0;"
        " must match the file name. Best also the guest's hostname.", "required",
        default_help="none, must be set", qemu="-name"),
    Key("DESC", values.description, "", "Free text shown in status listings and script descriptions;"
        f" one line of at most {values.DESC_MAX} characters.", example="Web server"),
    Key("TGTARCH", values.tgtarch, None, "The QEMU system emulator that runs the guest.", "required",
        default_help="none, must be set (new rc-files say qemu-system-x86_64)",
        example="qemu-system-x86_64"),
    Key("RUNAS", values.user, None, "User QEMU runs as (the helper drops to it before QEMU starts);"
        " running as root needs RUNAS=root written out.",
        default_help="the host's SYSUSR (also when empty)", example="qemud"),
    Key("DAEMON", values.boolean, "yes", "Run QEMU detached, in the background. It always is: the"
        " helper detaches it (QEMU's sandbox forbids -daemonize); kept for old rc-files.", "recommended"),
    Key("KVM", values.boolean, "yes", "Hardware acceleration with KVM.", "recommended", qemu="-accel kvm"),
    Key("MONITOR", values.monitor, "unix", "Where the human monitor listens: unix (a root-only socket in"
        " the run folder), inet (127.0.0.1) or inet6 (::1), a TCP port every local user can reach, or off.",
        qemu="-monitor"),
    Key("BOOTDELAY", values.seconds, "0", "Seconds to wait before this guest starts at host boot."),
    Key("STOPDELAY", values.seconds, str(defaults.STOPDELAY), "Seconds to wait for a clean shutdown before forcing the guest"
        " off; raised to the host's MINSTOPDELAY."),
    Key("ONSHUTDOWN", values.onshutdown, None, "What a stop through the guest's service does (the"
        " host's shutdown, `qemud stop`): shutdown (the power button, as STOPDELAY says) or save (the"
        " guest is paused and its state written to a root-only file in the state folder, then QEMU quits;"
        " the next start restores it and it runs on; if the save fails or does not fit its time, the"
        " power button as with shutdown). `qemu-init stop NAME` shuts down unless given --save.",
        default_help="the host's ONSHUTDOWN (shutdown)", example="save"),
    Key("PRECMD", values.text, "", "Command run (by /bin/sh) before the guest starts; only from a"
        " root-owned rc-file nobody else can write."),
    Key("POSTCMD", values.text, "", "Command run (by /bin/sh) after the guest started; same rule."),
    Key("DEPENDS", values.depends, "", "Guests that must run before this one, separated by spaces.",
        example="db1 cache1"),
    Key("RAM", values.size, "2G", "Memory size.", "recommended", qemu="-m", example="512M"),
    Key("SMP", values.smp, "", "Virtual CPUs: a count and/or topology (cpus, maxcpus, sockets, dies,"
        f" clusters, cores, threads), each from 1 to {values.SMP_MAX}; as in QEMU, the topology makes"
        " maxcpus (by default the count), and items left out are what divides it.", default_help="QEMU's", qemu="-smp",
        example="4,sockets=1,cores=4,threads=1"),
    Key("CPU", values.qemu_property, "", "CPU model.", default_help="QEMU's (host when KVM is on)",
        example="host", qemu="-cpu"),
    Key("MACHINE", values.qemu_property, "", "Machine type.", default_help="QEMU's", qemu="-machine",
        example="q35"),
    Key("VGA", values.identifier, "", "Display adapter.", default_help="QEMU's", qemu="-vga", example="std"),
    Key("DISPLAY", values.display, None, "VNC display: a number, ADDR:NUMBER, or 0/empty for no VNC;"
        f" display N is TCP port {values.VNC_BASE}+N, so at most {values.DISPLAY_MAX}.",
        default_help="an automatic display on 127.0.0.1", qemu="-vnc", example="127.0.0.1:5"),
    Key("BRIDGE", values.bridge, None, "Bridge of the first NIC; none for no network.",
        default_help="the host's BRIDGE (br0)", example="br0", qemu="-netdev tap"),
    Key("NIC", values.identifier, "virtio-net-pci", "Model of the first NIC.", qemu="-device"),
    Key("MAC", values.mac, None, "MAC address of the first NIC.",
        default_help="stable, derived from the name (locally administered)", example="52:54:00:12:34:56",
        qemu="-device …,mac="),
)}

HOST_KEYS: Dict[str, Key] = {k.name: k for k in (
    Key("BRIDGE", values.bridge, "br0", "Default bridge of the guests' first NIC."),
    Key("UPLINK", values.ifname, "", "Interface the bridge-setup service enslaves to the default bridge."),
    Key("SYSUSR", values.user, "qemud", "System user QEMU drops its privileges to by default."),
    Key("SYSGRP", values.user, "kvm", "System group of qemu-init's files."),
    Key("MONPORT", values.port, "30320", "Monitor TCP port of guest number 1; guest N gets MONPORT+N-1."),
    Key("VNCDISPLAY", values.vnc_base, "1", "Automatic VNC display of guest number 1; guest N gets"
        f" VNCDISPLAY+N-1, which must stay at most {values.DISPLAY_MAX} (TCP port 65535)."),
    Key("MINSTOPDELAY", values.seconds, "40", "The floor for every guest's STOPDELAY."),
    Key("ONSHUTDOWN", values.onshutdown, "shutdown", "What the guests without an ONSHUTDOWN of"
        " their own do at the host's shutdown: shutdown or save."),
    Key("SAVESPEED", values.speed, "100M", "How fast the state folder takes a saved guest's state,"
        " per second (conservative: a disk writes faster): a save may take 5 s plus RAM over this;"
        " `check` counts that time in the shutdown budget."),
    Key("PARALLEL", values.count, "", "How many guests the host service stops at once.",
        default_help="all"),
)}


def default(table: Dict[str, Key], name: str, empty: Any = None) -> Any:
    """The parsed default of key ``name`` of ``table``; ``empty`` when it has none ("")."""
    text = table[name].default
    return table[name].parse(text) if text else empty


def stopdelay(value: int, minstopdelay: int) -> int:
    """A guest's STOPDELAY as it applies: raised to the host's MINSTOPDELAY."""
    return max(value, minstopdelay)
