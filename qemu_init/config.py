"""Configuration files to model: parse with the key table, resolve defaults, report every problem.

Only checks that need nothing but the files themselves live here; checks across guests and
against the host are in ``checks``.
"""

from __future__ import annotations

import hashlib
import os
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: ~4 ms of every command
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple

from . import keys, values
from .errors import WARNING, Problem
from .keys import HOST_KEYS, RC_KEYS, Key
from .model import Drive, Guest, Host, Nic, Source
from .reader import Entry, RawOptions, Shorthand, read_assignments, read_cfg
from .records import replace
from .runtime import savestate
from .trust import TrustError, read_file

RC_SUFFIX = "-qemud.rc"
CFG_SUFFIX = "-qemu.cfg"

# Options qemu-init itself owns (SPEC §3): a cfg-file that sets them would fight the helper.
OWNED_OPTIONS = {"-name", "-daemonize", "-pidfile", "-monitor", "-qmp", "-runas", "-run-with", "-sandbox"}

# Keys where "0" is a meaningful value rather than "not set".
_ZERO_MEANS_ZERO = {"BOOTDELAY", "STOPDELAY", "DAEMON", "KVM", "DISPLAY", "MONITOR"}


def derived_mac(name: str, index: int) -> str:
    """A stable, locally administered unicast MAC from the guest's name and NIC index."""
    digest = hashlib.sha256(f"{name.lower()}/{index}".encode()).digest()
    return "52:54:" + ":".join(f"{b:02x}" for b in digest[:4])


def _parse_entries(path: str, entries: List[Entry], table: Dict[str, Key],
                   problems: List[Problem]) -> Tuple[Dict[str, object], Dict[str, int]]:
    """Typed values of the known keys that parse; absent keys are simply missing."""
    found: Dict[str, object] = {}
    lines: Dict[str, int] = {}
    for entry in entries:
        key = table.get(entry.key)
        if key is None:
            import difflib  # only for a key that is wrong: not on every command's path
            close = difflib.get_close_matches(entry.key.upper(), table, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(Problem(path, entry.line, entry.key, f"unknown key{hint}"))
            continue
        if entry.key in lines:
            problems.append(Problem(path, entry.line, entry.key,
                                    f"duplicate key, already set at line {lines[entry.key]}"))
            continue
        lines[entry.key] = entry.line
        if entry.value in ("", "0") and key.severity == "required":
            problems.append(Problem(path, entry.line, entry.key, "must be set, not empty or 0"))
            lines[entry.key] = -entry.line
            continue
        if entry.value == "" or (entry.value == "0" and entry.key not in _ZERO_MEANS_ZERO):
            found[entry.key] = None  # "not set": the QEMU option is not passed
            continue
        try:
            found[entry.key] = key.parse(entry.value)
        except ValueError as exc:
            problems.append(Problem(path, entry.line, entry.key, str(exc)))
            lines[entry.key] = -entry.line  # known but invalid: no "missing" error on top
    return found, lines


def _read(path: str, problems: List[Problem], missing_ok: bool = False) -> Optional[bytes]:
    """The file's bytes if it may be trusted (trust.py); else None and the problem that says
    why. With ``missing_ok``, a file that is not there is no problem."""
    try:
        return read_file(path)
    except TrustError as exc:
        problems.append(Problem(path, None, None, exc.reason))
    except FileNotFoundError as exc:
        if not missing_ok:  # a missing folder on the way is as good as a missing file
            problems.append(Problem(path, None, None, f"cannot read: {exc.strerror}"))
    except OSError as exc:
        problems.append(Problem(path, None, None, f"cannot read: {exc.strerror}"))
    return None


def load_host(path: str) -> Tuple[Host, List[Problem]]:
    """Host settings; a missing file means all defaults."""
    problems: List[Problem] = []
    data = _read(path, problems, missing_ok=True)
    if data is None:
        return default_host(path=path), problems
    entries, problems = read_assignments(path, data)
    found, _ = _parse_entries(path, entries, HOST_KEYS, problems)
    return _host(found, path), problems


def default_host(**changes) -> Host:
    """The host settings without a qemu-init.conf: every one at the key table's default."""
    return replace(_host({}, ""), **changes)


def _host(found: Dict[str, object], path: str) -> Host:
    """Host settings from what a file set (``found``); the key table's default for the rest."""
    def setting(key: str, empty=None):
        if found.get(key) is not None:
            return found[key]
        return keys.default(HOST_KEYS, key, empty)

    return Host(
        bridge=setting("BRIDGE"),
        uplink=setting("UPLINK", ""),
        sysusr=setting("SYSUSR"),
        sysgrp=setting("SYSGRP"),
        monport=setting("MONPORT"),
        vncdisplay=setting("VNCDISPLAY"),
        minstopdelay=setting("MINSTOPDELAY"),
        parallel=setting("PARALLEL", 0),
        onshutdown=setting("ONSHUTDOWN"),
        savespeed=setting("SAVESPEED"),
        path=path,
    )


_TABLE = object()  # load_guest's value(): the key table's default


def guest_name_from_file(path: str) -> Optional[str]:
    base = os.path.basename(path)
    return base[: -len(RC_SUFFIX)] if base.endswith(RC_SUFFIX) else None


def load_guest(rcpath: str, host: Host, partial: bool = False) -> Tuple[Optional[Guest], List[Problem]]:
    """The guest described by ``rcpath`` (and its cfg-file beside it), or None with the problems.

    ``partial``: a guest even when there are errors, as far as its files could be read (a value
    that is wrong keeps its default), so that `check` can look further in the same run. Such a
    guest is for finding more problems only, never to be run or rendered."""
    rcpath = os.path.abspath(rcpath)
    problems: List[Problem] = []
    data = _read(rcpath, problems)
    if data is None:
        return None, problems
    entries, problems = read_assignments(rcpath, data)
    found, lines = _parse_entries(rcpath, entries, RC_KEYS, problems)

    for required in (k.name for k in RC_KEYS.values() if k.severity == "required"):
        if required not in lines:
            problems.append(Problem(rcpath, None, required, "missing, must be set"))

    name = found.get("NAME")
    filename = guest_name_from_file(rcpath)
    if filename is None:
        problems.append(Problem(rcpath, None, None, f"an rc-file's name must be <name>{RC_SUFFIX}"))
    elif isinstance(name, str) and filename != name.lower():
        problems.append(Problem(rcpath, lines["NAME"], "NAME",
                                f"{name!r} does not match the file name (expected {filename}{RC_SUFFIX}"
                                f" to be {name.lower()}{RC_SUFFIX})"))

    folder = os.path.dirname(rcpath)
    cfgpath = os.path.join(folder, f"{(filename or '').lower()}{CFG_SUFFIX}")
    cfgdata = _read(cfgpath, problems, missing_ok=True) if filename else None
    drives, extra_nics, raw = _load_cfg(cfgpath, cfgdata, folder, host, name or filename or "", problems)

    if not isinstance(name, str) or (not partial and any(p.level == "error" for p in problems)):
        assert any(p.level == "error" for p in problems), "no guest, but no error to say why"
        return None, problems

    def value(key: str, fallback=_TABLE):
        """The parsed value; the table's default when absent; ``fallback`` when set empty (by
        default the table's default too)."""
        default = keys.default(RC_KEYS, key, None if fallback is _TABLE else fallback)
        if key in found:
            return (default if fallback is _TABLE else fallback) if found[key] is None else found[key]
        return default

    kvm = value("KVM", False)
    bridge = value("BRIDGE", "none") if "BRIDGE" in found else host.bridge
    mac = found.get("MAC") or derived_mac(name, 0)
    nics = ((Nic(0, bridge, value("NIC"), mac, bool(found.get("MAC")),
                 abs(lines.get("MAC", lines.get("BRIDGE", 0))), rcpath),) if bridge != "none" else ())
    stopdelay = value("STOPDELAY")
    if "STOPDELAY" in found and stopdelay < host.minstopdelay:
        problems.append(Problem(rcpath, lines["STOPDELAY"], "STOPDELAY",
                                f"{stopdelay} s is below the host's MINSTOPDELAY: {host.minstopdelay} s is used",
                                WARNING))
    onshutdown = value("ONSHUTDOWN", "") or host.onshutdown
    ram = value("RAM", "")
    guest = Guest(
        name=name,
        desc=value("DESC", ""),
        tgtarch=value("TGTARCH", ""),
        runas=value("RUNAS", "") or host.sysusr,  # root only where written out
        daemon=value("DAEMON", False),
        kvm=kvm,
        monitor=value("MONITOR"),
        bootdelay=value("BOOTDELAY", 0),
        stopdelay=keys.stopdelay(stopdelay, host.minstopdelay),
        precmd=value("PRECMD", ""),
        postcmd=value("POSTCMD", ""),
        depends=value("DEPENDS", ()),
        ram=ram,
        smp=value("SMP", ""),
        cpu=value("CPU", "") or ("host" if kvm and "CPU" not in found else ""),
        machine=value("MACHINE", ""),
        vga=value("VGA", ""),
        display=found["DISPLAY"] if "DISPLAY" in found else None,
        display_auto="DISPLAY" not in found,
        nics=nics + tuple(extra_nics),
        drives=tuple(drives),
        raw=tuple(raw),
        folder=folder,
        rcfile=Source(rcpath, hashlib.sha256(data).hexdigest()),
        cfgfile=Source(cfgpath, hashlib.sha256(cfgdata).hexdigest()) if cfgdata is not None else None,
        lines={k: abs(v) for k, v in lines.items()},
        onshutdown=onshutdown,
        # a budget for every guest: `qemu-init stop --save` saves any guest
        savetime=savestate.budget(values.size_bytes(ram), host.savespeed) if ram else 0,
    )
    return guest, problems


def _load_cfg(path: str, data: Optional[bytes], folder: str, host: Host, name: str,
              problems: List[Problem]) -> Tuple[List[Drive], List[Nic], List[str]]:
    if data is None:
        return [], [], []
    items, found = read_cfg(path, data)
    problems.extend(found)
    drives: List[Drive] = []
    nics: List[Nic] = []
    raw: List[str] = []
    seen: Dict[Tuple[str, int], int] = {}
    for item in items:
        if isinstance(item, RawOptions):
            for word in item.words:
                option = "-" + word.lstrip("-") if word.startswith("-") else None
                if option in OWNED_OPTIONS:
                    problems.append(Problem(path, item.line, option,
                                            "qemu-init sets this option itself; remove it from the cfg-file"))
            raw.extend(item.words)
            continue
        label = f"{item.kind}{item.index}"
        if (item.kind, item.index) in seen:
            problems.append(Problem(path, item.line, label,
                                    f"duplicate, already set at line {seen[item.kind, item.index]}"))
            continue
        seen[item.kind, item.index] = item.line
        if not item.value:
            problems.append(Problem(path, item.line, label, "must not be empty"))
        elif item.kind in ("DSK", "CDR"):
            drives.append(Drive("disk" if item.kind == "DSK" else "cdrom", item.index,
                                os.path.join(folder, item.value), item.line))
        else:
            try:
                nics.append(_parse_nic(item, name))
            except ValueError as exc:
                problems.append(Problem(path, item.line, label, str(exc)))
    for kind in ("DSK", "CDR", "NIC"):
        numbers = sorted(i for k, i in seen if k == kind)
        for expected, number in enumerate(numbers, 1):
            if number != expected:
                problems.append(Problem(path, seen[kind, number], f"{kind}{number}",
                                        f"numbered with a gap: {kind}{expected} is missing"))
                break
    return drives, nics, raw


def _parse_nic(item: Shorthand, name: str) -> Nic:
    bridge, *props = item.value.split(",")
    settings = {"model": RC_KEYS["NIC"].default or "", "mac": ""}  # the first NIC's default model
    for prop in props:
        key, sep, val = prop.partition("=")
        if not sep or key not in settings:
            raise ValueError(f"unknown NIC property {prop!r} (use mac=… or model=…)")
        settings[key] = val
    model = values.identifier(settings["model"])
    mac = values.mac(settings["mac"]) if settings["mac"] else derived_mac(name, item.index)
    return Nic(item.index, values.ifname(bridge), model, mac, bool(settings["mac"]), item.line, item.path)
