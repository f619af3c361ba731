"""The host's guests as a whole: host settings + registry + each guest's files, loaded and checked.

The CLI and the host service both work through this, so "what is registered and valid" has one
answer.
"""

from __future__ import annotations

import glob
import json
import os
from .records import record as dataclass  # @record: dataclasses' decorator without its import cost (records.py)
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: ~4 ms of every command
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence

from . import trust
from .cmdline import Plan, plan
from .config import CFG_SUFFIX, RC_SUFFIX, load_guest, load_host
from .errors import ERROR, ConfigError, Problem, QemuInitError, RegistryError
from .model import Guest
from .paths import Paths
from .registry import Entry, Registry
from .runtime import helperargs


@dataclass
class Loaded:
    rcfile: str
    entry: Optional[Entry]  # None: not registered
    guest: Optional[Guest]  # None: unreadable or invalid
    problems: List[Problem]
    partial: Optional[Guest] = None  # as far as it could be read, errors or not (for check only)


def _load(rcfile: str, entry: Optional[Entry], host) -> Loaded:
    partial, problems = load_guest(rcfile, host, partial=True)
    valid = partial is not None and not any(p.level == ERROR for p in problems)
    return Loaded(rcfile, entry, partial if valid else None, problems, partial)


def rcfiles(target: str) -> List[str]:
    """PATH as SPEC §8 means it: an rc-file, or a folder standing for all rc-files in it."""
    if os.path.isdir(target):
        trust.check_folder(target)  # whoever may write to it could put any guest there
        found = sorted(glob.glob(os.path.join(glob.escape(target), "*" + RC_SUFFIX)))
        if not found:
            raise RegistryError(f"{target}: no *{RC_SUFFIX} file in this folder")
        return [os.path.abspath(f) for f in found]
    if not os.path.exists(target):
        raise RegistryError(f"{target}: no such file or folder")
    return [os.path.abspath(target)]


def _record_lines(record: str) -> List[str]:
    try:
        return trust.read_file(record).decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return []


def recorded_scripts(record: str) -> List[str]:
    """The scripts an install wrote, from its record in VARDIR (root's: it says what to remove)."""
    return [line for line in _record_lines(record) if line.startswith("/")]


STOP_RECORD = "stop "  # a record line: this, then the guest's stop command as a JSON list


def recorded_stops(record: str) -> Dict[str, Dict[str, object]]:
    """Lower-case guest name -> the GuestControl fields of the stop command its installed
    script runs (install records each one: runtime/helperargs.py reads it back, as the helper
    would). A line that does not parse is left out."""
    found: Dict[str, Dict[str, object]] = {}
    for line in _record_lines(record):
        if line.startswith(STOP_RECORD):
            try:
                words = json.loads(line[len(STOP_RECORD):])
                fields = helperargs.parse([str(w) for w in words])
            except ValueError:  # json's errors are ValueErrors too
                continue
            found.setdefault(str(fields["name"]).lower(), fields)
    return found


def runs(gc) -> bool:  # type: ignore[no-untyped-def]
    """Whether the guest of a GuestControl runs, from its pid file and /proc alone (identity: no
    QMP round trip, no config); when that cannot be told (permissions), assume it does: the
    worst case for callers (a start is refused, a stop is tried and says what is wrong)."""
    from .runtime import proc
    try:
        return proc.probe(gc.pidfile, gc.name, gc.uids)[0] == proc.GUEST
    except OSError:
        return True


class Inventory:
    def __init__(self, paths: Paths):
        self.paths = paths
        self.registry = Registry(paths)
        self.host, self.host_problems = load_host(paths.host_conf)
        self._loaded: Dict[Entry, Loaded] = {}

    def entries(self) -> List[Entry]:
        return self.registry.entries()

    def load_entry(self, entry: Entry) -> Loaded:
        """The guest's files, read once per Inventory (one command): `check` and the rendering
        or the host service after it see the same guest without parsing it again."""
        if entry not in self._loaded:
            loaded = _load(entry.rcfile, entry, self.host)
            if loaded.partial is not None and loaded.partial.name != entry.name:
                loaded.problems.append(Problem(entry.rcfile, loaded.partial.lines.get("NAME"), "NAME",
                                               f"registered as {entry.name!r}; unregister and register again"))
                loaded.guest = None
            self._loaded[entry] = loaded
        loaded = self._loaded[entry]
        return Loaded(loaded.rcfile, entry, loaded.guest, list(loaded.problems), loaded.partial)  # callers may add

    def load_all(self) -> List[Loaded]:
        return [self.load_entry(e) for e in self.entries()]

    def guest(self, name: str) -> "tuple[Entry, Guest]":
        """A registered guest that loads without errors, or the ConfigError that says why not."""
        loaded = self.load_entry(self.registry.get(name))
        errors = [p for p in self.host_problems + loaded.problems if p.level == ERROR]
        if errors or loaded.guest is None:
            raise ConfigError(errors or [Problem(loaded.rcfile, None, None, "cannot be loaded")])
        return loaded.entry, loaded.guest  # type: ignore[return-value]

    def plan(self, entry: Entry, guest: Guest) -> Plan:
        return plan(guest, entry.number, self.host, self.paths)

    def control(self, entry: Entry, guest: Guest):
        """What the runtime needs to start, stop and query this guest: the same as its script."""
        from .helpercalls import control
        return control(guest, self.plan(entry, guest))

    def bare_control(self, name: str):
        """Enough to see and stop a guest without reading its files (they may have gone bad
        since it started): the stop command its installed script runs, as install recorded it
        (recorded_stops); without a record, every path from its name, STOPDELAY's default
        raised to MINSTOPDELAY, the host's system user and no taps."""
        from .keys import RC_KEYS, default, stopdelay
        from .runtime.control import GuestControl
        recorded = self.recorded_stop(name)
        if recorded:
            return GuestControl(**recorded)
        paths = self.paths
        return GuestControl(name=name, pidfile=paths.pidfile(name), qmp=paths.qmp(name), lock=paths.lock(name),
                            log=paths.log(name), hmp=paths.monitor_socket(name), runas=self.host.sysusr,
                            console=paths.console_socket(name), console_log=paths.console_log(name),
                            stopdelay=stopdelay(default(RC_KEYS, "STOPDELAY"), self.host.minstopdelay),
                            statefile=paths.statefile(name))

    def recorded_stop(self, name: str) -> Dict[str, object]:
        """The GuestControl fields of guest ``name``'s recorded stop ({} if none is recorded)."""
        for record in sorted(glob.glob(os.path.join(glob.escape(self.paths.vardir), "installed-*"))):
            try:
                stop = recorded_stops(record).get(name.lower())
            except (OSError, QemuInitError):
                continue
            if stop:
                return stop
        return {}

    def running(self, name: str) -> bool:
        """Whether guest ``name`` runs, without reading its files (they may have gone bad): see
        runs() and bare_control()."""
        return runs(self.bare_control(name))

    def check(self, targets: Sequence[str] = (), init: Optional[str] = None) -> List[Problem]:
        """Every problem of the targets (names or paths; default: all registered guests, and
        then the registry's own files too)."""
        from . import checks  # only `check` and what renders pay for it (pwd, QEMU probes)
        problems = list(self.host_problems)
        if not targets:
            problems += self.registry.problems()
            if any(p.path == self.paths.registered for p in problems):
                return problems  # no guest can be told from another: nothing more to check
        registered = self.load_all()
        by_name = {l.entry.name.lower(): l for l in registered if l.entry}
        selected: List[Loaded] = []
        for target in targets or [l.entry.name for l in registered if l.entry]:
            if target.lower() in by_name:
                selected.append(by_name[target.lower()])
                continue
            if os.sep not in target and not os.path.exists(target):
                raise RegistryError(f"{target}: neither a registered guest nor a file or folder")
            for rc in rcfiles(target):
                known = next((l for l in registered if l.rcfile == rc), None)
                if known is None:
                    known = _load(rc, None, self.host)
                selected.append(known)

        next_number = max([e.number for e in self.entries()] + [0]) + 1
        numbers = {l.entry.name.lower(): l.entry.number for l in registered if l.entry}
        owners = {name: by_name[name].rcfile for name in numbers}  # who holds each name
        selected = list({l.rcfile: l for l in selected}.values())  # a file named twice counts once
        for loaded in selected:
            problems += loaded.problems
            guest = loaded.partial  # a guest with errors is still looked at: all problems at once
            if guest is None:
                continue
            if loaded.entry is None:
                owner = owners.get(guest.name.lower())
                if owner is not None:
                    how = "is already registered from" if guest.name.lower() in by_name else "is also the name in"
                    problems.append(Problem(loaded.rcfile, guest.lines.get("NAME"), "NAME",
                                            f"{guest.name!r} {how} {owner} (names are compared in lower case)"))
                    continue
                numbers[guest.name.lower()] = next_number
                owners[guest.name.lower()] = loaded.rcfile
                next_number += 1
            if loaded.guest is not None:  # a command line only from files without errors
                guest_plan = plan(guest, numbers[guest.name.lower()], self.host, self.paths)
                problems += checks.plan_limits(guest, guest_plan, self.paths)
            problems += checks.on_host(guest)

        everyone = list({l.rcfile: l.partial for l in registered + selected if l.partial}.values())
        mine = {l.rcfile for l in selected}
        problems += [p for p in checks.cross_guest(everyone, numbers, self.host, numbers)
                     if p.path in mine or (p.path.endswith(CFG_SUFFIX) and p.path[:-len(CFG_SUFFIX)] + RC_SUFFIX in mine)]
        if init:
            problems += checks.shutdown_budget(everyone, self.host, init, self.paths.root + "/etc/rc.conf")
        # A key found wrong is said once, for what is wrong with it: the later phases saw its
        # default, not the value in the file.
        own = {p for l in selected for p in l.problems}
        wrong = {(p.path, p.key) for p in own if p.level == ERROR}
        problems = [p for p in problems if p in own or (p.path, p.key) not in wrong]
        problems = list(dict.fromkeys(problems))  # a problem seen twice is said once
        return sorted(problems, key=lambda p: (p.path, p.line or 0))
