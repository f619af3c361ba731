"""Value parsers for rc-file and host-settings keys: text in, typed value out, ValueError on bad input.

Pure functions, no I/O. The messages are what the user reads after ``file:line: KEY:``.
"""

from __future__ import annotations

import re
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: ~4 ms of every command
if TYPE_CHECKING:
    from typing import Callable, Optional, Tuple

from .runtime.status import VNC_BASE_PORT

NAME_MAX = 40
IFNAME_MAX = 15  # Linux IFNAMSIZ - 1
DESC_MAX = 200  # a description, not a document: one line of the status table and of the scripts' headers
SMP_MAX = 1024  # QEMU's most CPUs of a machine (x86 q35); a machine that takes fewer, QEMU names at start
VNC_BASE = VNC_BASE_PORT  # display N is TCP port 5900+N
DISPLAY_MAX = 65535 - VNC_BASE
SMP_KEYS = ("cpus", "maxcpus", "sockets", "dies", "clusters", "cores", "threads")  # QEMU 7.2's

_DIGITS = re.compile(r"[0-9]+")  # str.isdigit() would take "²"
_NAME = re.compile(r"[A-Za-z0-9]+")
_TGTARCH = re.compile(r"qemu-system-[a-z0-9_]+")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_SIZE = re.compile(r"([1-9][0-9]*)([KMGT]?)", re.IGNORECASE)
_QEMU_PROP = re.compile(r"[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+(=[A-Za-z0-9_.+-]+)?)*")
_IDENT = re.compile(r"[a-z0-9][a-z0-9_-]*")
_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off", ""}

MONITOR_KINDS = {"": "unix", "0": "off", "inet": "inet", "ipv4": "inet", "inet6": "inet6", "ipv6": "inet6", "unix": "unix", "off": "off"}


def _matching(pattern: "re.Pattern[str]", message: str) -> Callable[[str], str]:
    """A parser that accepts exactly what ``pattern`` matches; ``message`` names the value."""
    def parse(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(message.format(value=repr(value)))
        return value
    return parse


user = _matching(_USER, "not a user or group name: {value}")
# CPU and MACHINE: a model with optional properties, one QEMU argument, no spaces.
qemu_property = _matching(_QEMU_PROP, "not a QEMU model name with properties: {value}")
identifier = _matching(_IDENT, "not a QEMU device or adapter name: {value}")


def name(value: str) -> str:
    """A guest name by SPEC §1.2: letters and digits only, 1..40 characters, not ending in 0."""
    if not value:
        raise ValueError("must not be empty")
    if not _NAME.fullmatch(value):
        bad = sorted({c for c in value if not c.isascii() or not c.isalnum()})
        raise ValueError(f"letters and digits only, {''.join(bad)!r} is not allowed in {value!r}")
    if len(value) > NAME_MAX:
        raise ValueError(f"at most {NAME_MAX} characters, {value!r} has {len(value)}")
    if value.endswith("0"):
        raise ValueError(f"must not end with the digit 0: {value!r}")
    return value


def text(value: str) -> str:
    return value


def description(value: str) -> str:
    if len(value) > DESC_MAX:
        raise ValueError(f"at most {DESC_MAX} characters (one line), this has {len(value)}")
    return value


def smp(value: str) -> str:
    """QEMU's -smp: ``N`` and/or ``KEY=N`` topology items, each count from 1 to SMP_MAX, and a
    topology QEMU 7.2 accepts: maxcpus (by default the CPU count) is the product of sockets,
    dies, clusters, cores and threads; an item left out is computed as the quotient, so what is
    written must divide it (tried against qemu-system-x86_64 7.2)."""
    example = "(e.g. 2, or 4,sockets=1,cores=4,threads=1)"
    counts: dict = {}
    for i, item in enumerate(value.split(",")):
        key, sep, number = item.partition("=")
        if not sep and i == 0:
            key, number = "cpus", item
        if key not in SMP_KEYS or key in counts or not _DIGITS.fullmatch(number):
            raise ValueError(f"not a CPU count or topology: {value!r} {example}")
        if len(number) > 5 or not 1 <= int(number) <= SMP_MAX:
            shown = item if len(item) <= 20 else item[:20] + "…"
            raise ValueError(f"{shown}: from 1 to {SMP_MAX} (QEMU's most CPUs)")
        counts[key] = int(number)
    topology = 1
    for key in SMP_KEYS[2:]:
        topology *= counts.get(key, 1)
    if topology > SMP_MAX:
        raise ValueError(f"the topology makes {topology} CPUs, more than QEMU's {SMP_MAX}")
    cpus, maxcpus = counts.get("cpus"), counts.get("maxcpus")
    if cpus and maxcpus and cpus > maxcpus:
        raise ValueError(f"{cpus} CPUs but maxcpus={maxcpus}")
    total = maxcpus or cpus  # QEMU's maxcpus: what the topology must make
    if total and topology > 1:
        made = "*".join(f"{k}={counts[k]}" for k in SMP_KEYS[2:] if k in counts)
        wanted = f"maxcpus={maxcpus}" if maxcpus else f"{cpus} CPUs"
        if all(k in counts for k in ("sockets", "cores", "threads")):  # QEMU computes nothing
            if topology != total:
                raise ValueError(f"{made} makes {topology} CPUs, not {wanted}")
        elif total % topology:  # QEMU computes the item left out as the quotient
            product = made if made.count("=") == 1 else f"{made} ({topology})"
            raise ValueError(f"{product} does not divide {wanted}")
    return value


def boolean(value: str) -> bool:
    low = value.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"not a boolean: {value!r} (use yes/no, true/false, on/off, 1/0)")


def seconds(value: str) -> int:
    if not _DIGITS.fullmatch(value) or len(value) > 9:
        raise ValueError(f"not a number of seconds: {value!r}")
    number = int(value)
    if number > 86400:
        raise ValueError(f"{number} s is more than a day")
    return number


def port(value: str) -> int:
    if not _DIGITS.fullmatch(value) or len(value) > 5 or not 1024 <= int(value) <= 65535:
        raise ValueError(f"not a TCP port from 1024 to 65535: {value!r}")
    return int(value)


def count(value: str) -> int:
    if not _DIGITS.fullmatch(value) or len(value) > 9:
        raise ValueError(f"not a whole number (at most 9 digits): {value!r}")
    return int(value)


def vnc_base(value: str) -> int:
    """The host's VNCDISPLAY: the automatic display of guest number 1."""
    number = count(value)
    if number > DISPLAY_MAX:
        raise ValueError(f"display {number} would be port {VNC_BASE + number}, beyond 65535")
    return number


def tgtarch(value: str) -> str:
    base = value.rsplit("/", 1)[-1]
    if not _TGTARCH.fullmatch(base) or ("/" in value and not value.startswith("/")):
        raise ValueError(f"not a QEMU system emulator (qemu-system-ARCH or its absolute path): {value!r}")
    return value


def monitor(value: str) -> str:
    try:
        return MONITOR_KINDS[value.lower()]
    except KeyError:
        raise ValueError(f"not a monitor kind: {value!r} (use inet, inet6, unix or off)") from None


def size(value: str) -> str:
    match = _SIZE.fullmatch(value)
    if not match:
        raise ValueError(f"not a memory size: {value!r} (e.g. 512M, 2G)")
    return match.group(1) + (match.group(2).upper() or "M")


def size_bytes(value: str) -> int:
    """A size as ``size`` writes it (``512M``, ``2G``), in bytes."""
    return int(value[:-1]) << (10 * "KMGT".index(value[-1].upper()) + 10)


def speed(value: str) -> int:
    """A write speed, bytes per second, written as a size per second: ``100M`` is 100 MiB/s."""
    try:
        return size_bytes(size(value))
    except ValueError:
        raise ValueError(f"not a speed: {value!r} (a size per second, e.g. 100M)") from None


ONSHUTDOWN_MODES = ("shutdown", "save")


def onshutdown(value: str) -> str:
    if value.lower() not in ONSHUTDOWN_MODES:
        raise ValueError(f"not a shutdown mode: {value!r} (use shutdown or save)")
    return value.lower()


def ifname(value: str) -> str:
    if not _IFNAME.fullmatch(value) or len(value) > IFNAME_MAX:
        raise ValueError(f"not a network interface name (at most {IFNAME_MAX} of A-Z a-z 0-9 _ . -): {value!r}")
    return value


def bridge(value: str) -> str:
    return "none" if value.lower() == "none" else ifname(value)


def mac(value: str) -> str:
    low = value.lower()
    if not _MAC.fullmatch(low):
        raise ValueError(f"not a MAC address: {value!r} (six hex pairs, e.g. 52:54:00:12:34:56)")
    if int(low[:2], 16) & 1:
        raise ValueError(f"a multicast MAC cannot be a NIC's address: {value!r}")
    return low


def display(value: str) -> Optional[Tuple[str, int]]:
    """VNC: ``N`` or ``ADDR:N`` -> (address, display); empty or 0 -> None (no VNC)."""
    if value in ("", "0"):
        return None
    addr, _, num = value.rpartition(":")
    if not _DIGITS.fullmatch(num) or len(num) > 9:
        raise ValueError(f"not a VNC display: {value!r} (N or ADDR:N)")
    if int(num) > DISPLAY_MAX:
        raise ValueError(f"display {int(num)} would be port {VNC_BASE + int(num)}, beyond 65535")
    if not addr:
        return ("127.0.0.1", int(num))
    host = addr[1:-1] if addr.startswith("[") and addr.endswith("]") else addr
    import ipaddress  # only a VNC address needs it: not every command's import
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
            raise ValueError(f"not an address: {addr!r}") from None
    return (addr, int(num))


def depends(value: str) -> Tuple[str, ...]:
    names = tuple(value.split())
    for each in names:
        try:
            name(each)
        except ValueError as exc:
            raise ValueError(f"{each!r} is not a guest name: {exc}") from None
    return names
