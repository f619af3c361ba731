"""The Site: everything the scripts are made from, computed from the Inventory before any
template runs (render.py renders it), and how the scripts call the helper and the host service
calls qemu-init.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from . import trust
from .cmdline import Plan
from .errors import ERROR, ConfigError, RegistryError
from .inventory import Inventory
from .model import Guest, Host, Source
from .paths import Paths, read_layout


@dataclass(frozen=True)
class GuestInfo:
    number: int
    guest: Guest
    plan: Plan


@dataclass(frozen=True)
class Site:
    """Everything the scripts are made from, computed before any template runs.

    ``site()`` builds it from the Inventory; golden tests build it with fixed paths.
    """

    paths: Paths
    host: Host
    guests: Tuple[GuestInfo, ...]
    helper: Tuple[str, ...]  # how scripts call the runtime helper
    command: Tuple[str, ...]  # how the host service calls qemu-init, --root included
    host_source: Optional[Source] = None  # the host settings, when there is such a file

    @property
    def bridges(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(b for info in self.guests for b in info.guest.bridges))


def _command(name: str) -> Optional[str]:
    """The console script ``name`` of this installation: in the BINDIR that ``make install``
    recorded (it keeps the package in a private folder, so ``python -m`` would not find it),
    else beside the interpreter (a venv, a distribution package)."""
    bindir = read_layout().bindir
    if bindir:
        return os.path.join(bindir, name)
    script = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), name)
    return script if os.access(script, os.X_OK) else None


def helper_command() -> Tuple[str, ...]:
    """How scripts run the helper: its console script, else its module by this interpreter."""
    script = _command("qemu-init-helper")
    return (script,) if script else (os.path.abspath(sys.executable), "-m", "qemu_init.runtime.helper")


def cli_command(paths: Paths) -> Tuple[str, ...]:
    """``qemu-init`` as the host service runs it, with the sandbox root if there is one."""
    script = _command("qemu-init")
    base = (script,) if script else (os.path.abspath(sys.executable), "-m", "qemu_init")
    return base + (("--root", paths.root) if paths.root else ())


def file_source(path: str) -> Optional[Source]:
    try:
        return Source(path, hashlib.sha256(trust.read_file(path)).hexdigest())
    except FileNotFoundError:
        return None


def site(inventory: Inventory, names: Sequence[str] = (), helper: Optional[Sequence[str]] = None,
         command: Optional[Sequence[str]] = None) -> Site:
    """The Site of ``names`` (default: every registered guest).

    Nothing is rendered from an invalid configuration: every error of the selected guests is
    raised at once as a ConfigError.
    """
    entries = inventory.entries()
    if names:
        by_name = {e.name.lower(): e for e in entries}
        missing = [n for n in names if n.lower() not in by_name]
        if missing:
            raise RegistryError(f"{', '.join(missing)}: not registered (see `qemu-init list`)")
        entries = list({by_name[n.lower()].name: by_name[n.lower()] for n in names}.values())
    # Checked like `qemu-init check` does (host settings included), so it says the same.
    errors = [p for p in inventory.check([e.name for e in entries]) if p.level == ERROR]
    if errors:
        raise ConfigError(errors)
    guests = []
    for entry in entries:
        guest = inventory.load_entry(entry).guest  # valid: checked just above
        assert guest is not None
        guests.append(GuestInfo(entry.number, guest, inventory.plan(entry, guest)))
    return Site(paths=inventory.paths, host=inventory.host, guests=tuple(guests),
                helper=tuple(helper) if helper else helper_command(),
                command=tuple(command) if command else cli_command(inventory.paths),
                host_source=file_source(inventory.paths.host_conf))
