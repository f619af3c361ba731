"""Checks across guests (pure) and against this host (they look at the machine).

Each returns a list of Problems; nothing stops at the first one.
"""

from __future__ import annotations

import math
import os
import pwd
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .cmdline import Plan, image_format_by_name, vnc_display
from .errors import WARNING, Problem
from .facts import image_format, qemu_binary
from .model import Guest, Host
from .paths import Paths
from .runtime.stop import Timing
from .values import DISPLAY_MAX, VNC_BASE

SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL

# How long each init system lets a script take at host shutdown (seconds), and who says so.
SHUTDOWN_BUDGETS = {
    "sysv": (300, "systemd gives a SysV script 5 minutes"),
    "systemd": (None, "the unit's TimeoutStopSec covers it"),
    "openrc": (None, "OpenRC waits for the script"),
    "bsd": (90, "FreeBSD's rc.shutdown gives 90 s (rcshutdown_timeout)"),
}
# Seconds the stop sequence may spend after STOPDELAY (quit, SIGTERM, SIGKILL): the stop
# machine's own figure, in whole seconds.
FORCED_STEPS = math.ceil(Timing().forced)


def _at(guest: Guest, key: str) -> Tuple[str, int]:
    return guest.rcfile.path, guest.lines.get(key) or None  # type: ignore[return-value]


def cross_guest(guests: Sequence[Guest], numbers: Dict[str, int], host: Host, all_names: Iterable[str]
                ) -> List[Problem]:
    """Problems between guests: names, DEPENDS, MACs, VNC displays."""
    problems: List[Problem] = []
    known = {n.lower() for n in all_names} | {g.name.lower() for g in guests}

    seen_names: Dict[str, Guest] = {}
    for guest in guests:
        other = seen_names.setdefault(guest.name.lower(), guest)
        if other is not guest:
            problems.append(Problem(*_at(guest, "NAME"), "NAME",
                                    f"{guest.name!r} clashes with {other.name!r} in {other.rcfile.path}"
                                    " (names are compared in lower case)"))

    for guest in guests:
        for dep in guest.depends:
            if dep.lower() not in known:
                problems.append(Problem(*_at(guest, "DEPENDS"), "DEPENDS", f"{dep!r} is not a registered guest"))
            elif dep.lower() == guest.name.lower():
                problems.append(Problem(*_at(guest, "DEPENDS"), "DEPENDS", "a guest cannot depend on itself"))
    for cycle in dependency_cycles(guests):
        first = next(g for g in guests if g.name.lower() == cycle[0])
        problems.append(Problem(*_at(first, "DEPENDS"), "DEPENDS",
                                "dependency cycle: " + " -> ".join(cycle + [cycle[0]])))

    macs: Dict[str, Tuple[Guest, str]] = {}
    for guest in guests:
        for nic in guest.nics:
            label = "MAC" if nic.index == 0 else f"NIC{nic.index}"
            if nic.mac in macs:
                owner, owner_label = macs[nic.mac]
                problems.append(Problem(nic.path or guest.rcfile.path, nic.line or None, label,
                                        f"MAC {nic.mac} is also used by {owner.name} ({owner_label})"))
            else:
                macs[nic.mac] = (guest, label)

    # Same display number is the same TCP port: a clash even on different addresses of the host.
    displays: Dict[int, Guest] = {}
    for guest in guests:
        number = numbers.get(guest.name.lower())
        display = vnc_display(guest, host, number) if number is not None else None
        if display is None:
            continue
        clash = displays.setdefault(display[1], guest)
        if clash is not guest:
            problems.append(Problem(*_at(guest, "DISPLAY"), "DISPLAY",
                                    f"VNC display {display[1]} is also {clash.name}'s"))
    return problems


def dependency_cycles(guests: Sequence[Guest]) -> List[List[str]]:
    """Each DEPENDS cycle once, as lower-case names, found by depth-first search."""
    graph = {g.name.lower(): [d.lower() for d in g.depends] for g in guests}
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: List[List[str]] = []

    def visit(node: str, path: List[str]) -> None:
        state[node] = 1
        for dep in graph.get(node, ()):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):]
                start = cycle.index(min(cycle))  # the same cycle reads the same from any start
                cycles.append(cycle[start:] + cycle[:start])
            elif dep in graph and dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    return cycles


def plan_limits(guest: Guest, plan: Plan, paths: Paths) -> List[Problem]:
    """Problems of the derived command line: ports, socket path lengths."""
    problems = []
    if plan.monitor_port is not None and plan.monitor_port > 65535:
        problems.append(Problem(*_at(guest, "MONITOR"), "MONITOR",
                                f"monitor port {plan.monitor_port} is beyond 65535 (lower MONPORT)"))
    if guest.display_auto and plan.vnc_display is not None and plan.vnc_display[1] > DISPLAY_MAX:
        display = plan.vnc_display[1]
        problems.append(Problem(*_at(guest, "DISPLAY"), "DISPLAY",
                                f"the automatic VNC display {display} (VNCDISPLAY+{plan.number - 1}) would be"
                                f" port {VNC_BASE + display}, beyond 65535 (lower VNCDISPLAY or set DISPLAY)"))
    for sock in (plan.qmp, paths.monitor_socket(guest.name)):
        if len(sock.encode()) > SOCKET_PATH_MAX:
            problems.append(Problem(guest.rcfile.path, None, None,
                                    f"socket path longer than {SOCKET_PATH_MAX} bytes: {sock}"))
            break
    if "," in paths.rundir:
        problems.append(Problem(guest.rcfile.path, None, None, f"the run folder has a comma: {paths.rundir}"))
    return problems


def on_host(guest: Guest) -> List[Problem]:
    """Warnings about this host: what the guest needs that is not here (yet)."""
    problems = []

    def warn(key, message, line=None):
        problems.append(Problem(guest.rcfile.path if line is None else line[0],
                                guest.lines.get(key) if line is None else line[1], key, message, WARNING))

    if qemu_binary(guest.tgtarch) is None:
        warn("TGTARCH", f"{guest.tgtarch} is not installed on this host")
    if guest.kvm and not os.path.exists("/dev/kvm"):
        warn("KVM", "/dev/kvm does not exist on this host")
    if guest.runas == "root":
        warn("RUNAS", "root: QEMU keeps every privilege, and a guest that breaks out of it owns the host")
    else:
        try:
            pwd.getpwnam(guest.runas)
        except KeyError:
            warn("RUNAS", f"user {guest.runas!r} does not exist on this host")
    if guest.monitor in ("inet", "inet6"):
        warn("MONITOR", f"{guest.monitor}: every local user can connect and run commands as {guest.runas}"
             " (use unix, the default, and `qemu-init monitor`)")
    if not guest.daemon and "DAEMON" in guest.lines:
        warn("DAEMON", "no effect: the helper always starts QEMU detached (its sandbox forbids -daemonize)")
    warned = set()
    for nic in guest.nics:  # each missing bridge once, where it is first named
        if nic.bridge not in warned and not os.path.isdir(f"/sys/class/net/{nic.bridge}/bridge"):
            warned.add(nic.bridge)
            key = "BRIDGE" if nic.index == 0 else f"NIC{nic.index}"
            warn(key, f"bridge {nic.bridge} does not exist on this host (yet)",
                 None if nic.index == 0 else (nic.path, nic.line))
    for drive in guest.drives:
        label = ("DSK" if drive.kind == "disk" else "CDR") + str(drive.index)
        where = (guest.cfgfile.path if guest.cfgfile else "", drive.line)
        if not os.path.exists(drive.file):
            warn(label, f"{drive.file} does not exist", where)
            continue
        header, named = image_format(drive.file), image_format_by_name(drive.file)
        if drive.kind == "disk" and header and header != named:
            warn(label, f"its first bytes look like {header}, its name says {named}: QEMU is told {named};"
                        f" if it really is {header}, name it .{header}", where)
    return problems


def stop_seconds(guest: Guest) -> int:
    """How long one guest's stop may take at host shutdown before its forced steps: a save
    (ONSHUTDOWN=save: RAM over SAVESPEED, runtime/savestate.budget) that may fail at its end,
    then STOPDELAY."""
    return guest.stopdelay + (guest.savetime if guest.onshutdown == "save" else 0)


def shutdown_time(stopdelays: Sequence[int], parallel: int) -> int:
    """Worst-case seconds for the host service to stop guests with these STOPDELAYs."""
    slots = [0] * (parallel if 0 < parallel < len(stopdelays) else max(len(stopdelays), 1))
    for delay in sorted(stopdelays, reverse=True):  # longest first into the least busy slot
        slots[slots.index(min(slots))] += delay + FORCED_STEPS
    return max(slots)


def shutdown_estimate(guests: Sequence[Guest], parallel: int) -> int:
    """Worst-case seconds for the host service to stop ``guests``: the slots filled longest
    first, and never less than the longest DEPENDS chain (stop_chain), since a guest stops only
    after every guest that depends on it is down."""
    packed = shutdown_time([stop_seconds(g) for g in guests], parallel)
    return max(packed, stop_chain(guests)[1])


def rc_conf_timeout(path: str) -> Optional[int]:
    """``rcshutdown_timeout`` as FreeBSD's rc.conf at ``path`` sets it (the last plain
    assignment wins, as when rc.shutdown sources it); None when it does not."""
    import re
    try:
        with open(path, errors="replace") as f:
            text = f.read(1 << 20)
    except OSError:
        return None
    found = re.findall(r"""^[ \t]*rcshutdown_timeout=(["']?)(\d+)\1[ \t]*(?:#.*)?$""", text, re.M)
    return int(found[-1][1]) if found else None


def stop_chain(guests: Sequence[Guest]) -> Tuple[List[str], int]:
    """The DEPENDS chain that takes longest to stop, in stopping order (each guest only after the
    ones that depend on it), and its worst-case seconds: those add up, whatever PARALLEL is."""
    by_name = {g.name.lower(): g for g in guests}
    best: Dict[str, Tuple[int, List[str]]] = {}

    def longest(key: str, path: Tuple[str, ...] = ()) -> Tuple[int, List[str]]:
        """The longest way down from ``key`` to a guest it depends on (itself stopping first)."""
        if key not in best:
            own = stop_seconds(by_name[key]) + FORCED_STEPS
            below = [longest(d.lower(), path + (key,)) for d in by_name[key].depends
                     if d.lower() in by_name and d.lower() not in path]  # cycles: cut
            seconds, rest = max(below, key=lambda b: b[0], default=(0, []))
            best[key] = (own + seconds, [by_name[key].name] + rest)
        return best[key]

    seconds, chain = max((longest(k) for k in by_name), key=lambda b: b[0], default=(0, []))
    return chain, seconds


def shutdown_budget(guests: Sequence[Guest], host: Host, init: str, rc_conf: str = "/etc/rc.conf"
                    ) -> List[Problem]:
    """Warnings when stopping every guest at host shutdown can outlast what the init system
    gives: the guests packed into PARALLEL slots, and the longest DEPENDS chain (on FreeBSD,
    ``rc_conf`` may raise rc.shutdown's 90 s: rcshutdown_timeout)."""
    budget, why = SHUTDOWN_BUDGETS.get(init, (None, ""))
    if budget is None or not guests:
        return []
    fix = ""
    if init == "bsd":
        set_there = rc_conf_timeout(rc_conf)
        if set_there is not None:
            budget, why = set_there, f"rcshutdown_timeout in {rc_conf} gives {set_there} s"
    problems = []
    packed = shutdown_time([stop_seconds(g) for g in guests], host.parallel)
    if packed > budget:
        if init == "bsd":
            fix = f" (raise PARALLEL, or set rcshutdown_timeout=\"{packed + 10}\" in {rc_conf})"
        parallel = f"PARALLEL={host.parallel}" if host.parallel else "all guests at once"
        saving = [g for g in guests if g.onshutdown == "save"]
        saves = (f" ({len(saving)} of them saved first, up to {max(g.savetime for g in saving)} s each"
                 f" at SAVESPEED)") if saving else ""
        problems.append(Problem(host.path or "qemu-init.conf", None, "PARALLEL",
                                f"stopping {len(guests)} guests ({parallel}) can take {packed} s{saves},"
                                f" but {why}{fix}", WARNING))
    chain, seconds = stop_chain(guests)
    if len(chain) > 1 and seconds > budget:
        fix = f": set rcshutdown_timeout=\"{seconds + 10}\" in {rc_conf}" if init == "bsd" else ""
        first = next(g for g in guests if g.name == chain[0])
        problems.append(Problem(*_at(first, "DEPENDS"), "DEPENDS",
                                f"stopping the DEPENDS chain {' -> '.join(chain)} one after another can take"
                                f" {seconds} s, but {why}{fix}", WARNING))
    return problems
