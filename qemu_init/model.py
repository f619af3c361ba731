"""The typed model: frozen records (records.py), every default already resolved."""

from __future__ import annotations

from .records import field, record as dataclass  # @record: dataclasses' decorator without its import cost (records.py)
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: ~4 ms of every command
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple


@dataclass(frozen=True)
class Host:
    """Host settings (SPEC §4), from ETCDIR/qemu-init.conf. No defaults here: they are the key
    table's (keys.HOST_KEYS), applied by config.load_host (config.default_host without a file)."""

    bridge: str
    uplink: str
    sysusr: str
    sysgrp: str
    monport: int
    vncdisplay: int
    minstopdelay: int
    parallel: int  # 0: all at once
    onshutdown: str  # the guests' default ONSHUTDOWN
    savespeed: int  # bytes per second the state folder takes (SAVESPEED)
    path: str = ""


@dataclass(frozen=True)
class Drive:
    kind: str  # "disk" or "cdrom"
    index: int
    file: str
    line: int = 0


@dataclass(frozen=True)
class Nic:
    index: int  # 0: the rc-file's NIC; 1..: the cfg-file's NICn
    bridge: str
    model: str
    mac: str
    mac_given: bool = False
    line: int = 0
    path: str = ""


@dataclass(frozen=True)
class Source:
    """A file a guest's configuration came from, with its sha256 when it was read."""

    path: str
    sha256: str


@dataclass(frozen=True)
class Guest:
    name: str
    desc: str
    tgtarch: str
    runas: str
    daemon: bool
    kvm: bool
    monitor: str  # "", inet, inet6, unix, off
    bootdelay: int
    stopdelay: int  # already raised to the host minimum
    precmd: str
    postcmd: str
    depends: Tuple[str, ...]
    ram: str
    smp: str
    cpu: str
    machine: str
    vga: str
    display: Optional[Tuple[str, int]]  # None: no VNC
    display_auto: bool  # True: DISPLAY was absent, the display derives from the guest number
    nics: Tuple[Nic, ...]
    drives: Tuple[Drive, ...]
    raw: Tuple[str, ...]  # the cfg-file's raw QEMU options, in order
    folder: str
    rcfile: Source
    cfgfile: Optional[Source]
    onshutdown: str  # shutdown or save (ONSHUTDOWN, the host's default resolved)
    savetime: int  # seconds a save may take (runtime/savestate.budget: RAM over SAVESPEED)
    lines: Dict[str, int] = field(default_factory=dict, compare=False)  # KEY -> rc-file line

    @property
    def sources(self) -> Tuple[Source, ...]:
        return (self.rcfile,) + ((self.cfgfile,) if self.cfgfile else ())

    @property
    def bridges(self) -> Tuple[str, ...]:
        seen: Dict[str, None] = {}
        for nic in self.nics:
            seen.setdefault(nic.bridge)
        return tuple(seen)
