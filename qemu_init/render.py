"""Rendering: one Jinja environment, quoting filters, and the files ``new`` writes.

Values reach a script only through a quoting filter (``sh`` for POSIX sh, ``unit`` for systemd
``Exec*=`` lines, ``unittext`` for other unit settings, ``comment`` for ``#`` lines); templates make
no decisions beyond ``if``/``for`` over fields computed here.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import shlex
import sys
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import jinja2

from . import __version__, helpercalls, trust
from .checks import FORCED_STEPS, shutdown_estimate, shutdown_time
from .cmdline import Plan
from .errors import ERROR, ConfigError, RegistryError, RenderError
from .inventory import Inventory
from .keys import RC_KEYS
from .model import Guest, Host, Source
from .owner import bridge_service, guest_service
from .paths import SERVICE_FOLDER, Paths, read_layout
from .runtime.control import LAUNCH_TIMEOUT

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def sh(value: Any) -> str:
    """One POSIX sh word that stands for exactly ``value``."""
    return shlex.quote(str(value))


def shjoin(words: Iterable[Any]) -> str:
    return " ".join(sh(w) for w in words)


def shlines(lines: Iterable[Iterable[Any]], tabs: int = 1) -> str:
    """A command as lines of words (a helper call: runtime/helperargs.lines), each line's words
    quoted and joined, the lines continued with a backslash and indented by ``tabs`` tabs."""
    return (" \\\n" + "\t" * tabs).join(shjoin(words) for words in lines)


# systemd ends a unit line at \n, \r and NUL; other non-printable characters (C0, DEL, C1 such as
# U+0085, U+2028/2029) are escaped as well, so no value can ever start a line of its own.
_UNIT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _c_escape(char: str) -> str:
    """A non-printable character as a C escape that systemd's unquoting gives back (``\\xNN``
    only below 0x80: above, systemd would take it for a raw byte, not a code point)."""
    code = ord(char)
    if char in _UNIT_ESCAPES:
        return _UNIT_ESCAPES[char]
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def unit(value: Any) -> str:
    """One word of a systemd ``Exec*=`` line: ``$``/``%`` doubled, quoted when needed, every
    non-printable character C-escaped inside the quotes."""
    text = str(value).replace("%", "%%").replace("$", "$$")
    if text and text.isprintable() and not any(c in text for c in " \"';\\"):
        return text
    return '"' + "".join(_unit_quoted(c) for c in text) + '"'


def _unit_quoted(char: str) -> str:
    if not char.isprintable():
        return _c_escape(char)
    return "\\" + char if char in "\\\"" else char


def unitjoin(words: Iterable[Any]) -> str:
    return " ".join(unit(w) for w in words)


def unitlines(lines: Iterable[Iterable[Any]], tabs: int = 1) -> str:
    """shlines for a systemd Exec*= line."""
    return (" \\\n" + "\t" * tabs).join(unitjoin(words) for words in lines)


def unittext(value: Any) -> str:
    """A unit setting's whole value (Description=, PIDFile=): one line, ``%`` doubled, no
    trailing backslash (it would continue the line). Whitespace runs (line breaks included)
    become one space; any other non-printable character is written as its C escape, as text:
    these settings are not unescaped, but a NUL or a lone control character must not reach the file."""
    text = " ".join(str(value).replace("%", "%%").split())
    return "".join(c if c.isprintable() else _c_escape(c) for c in text).rstrip("\\ ")


def comment(value: Any) -> str:
    """Text safe inside a ``#`` comment line (no line breaks can end the comment, and no trailing
    backslash can continue it in a systemd unit; no NUL or other control character, at which
    systemd would end the line)."""
    text = " ".join(str(value).split())
    return "".join(c if c.isprintable() else _c_escape(c) for c in text).rstrip("\\ ")


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # we write shell scripts and units, not HTML; quoting filters do the job
    )
    env.filters.update(sh=sh, shjoin=shjoin, shlines=shlines, unit=unit, unitjoin=unitjoin, unitlines=unitlines,
                       unittext=unittext, comment=comment)
    env.globals.update(version=__version__)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def new_rcfile(name: str) -> str:
    return render("new/guest-qemud.rc.j2", name=name, keys=RC_KEYS.values())


def new_cfgfile(name: str, template_path: str) -> str:
    """The host's cfg-file template (only if root may trust it: trust.py), else the built-in one."""
    try:
        data = trust.read_file(template_path)
    except FileNotFoundError:
        return render("new/template-qemu.cfg.j2", name=name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RenderError(f"{template_path}: not UTF-8 text (byte {data[exc.start]:#04x})") from None


# --- init scripts ---------------------------------------------------------------------------

INIT_SYSTEMS = ("sysv", "openrc", "bsd", "systemd")


# Seconds systemd waits beyond our own stop sequence before it signals QEMU itself.
STOP_MARGIN = 10
# Seconds systemd allows a guest's start beyond the helper's own wait for QEMU (LAUNCH_TIMEOUT):
# the lock, the checks, PRECMD and POSTCMD.
START_MARGIN = 30

SCRIPT_MODE = 0o755
UNIT_MODE = 0o644


class Rendered(NamedTuple):
    """One generated file: its name (relative to its folder), text and mode, and ``folder``,
    the Paths attribute naming where ``install`` puts it."""

    path: str
    text: str
    mode: int
    folder: str


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


# Service names: owner.guest_service, owner.bridge_service. Guest names are letters and digits; bridge names may hold "." and "-", which
# rc.conf variables (qemu_bridge_<br>_enable) cannot.
def unit_file(name: str) -> str:
    return name + ".service"


def start_timeout() -> int:
    """systemd's TimeoutStartSec for one guest: the helper gives QEMU LAUNCH_TIMEOUT to come up,
    and systemd must not kill the start (and the QEMU with it) before the helper gives up."""
    return math.ceil(LAUNCH_TIMEOUT) + START_MARGIN


def stop_timeout(stopdelay: int) -> int:
    """systemd's TimeoutStopSec for a guest: the clean shutdown, the forced steps, a margin."""
    return stopdelay + FORCED_STEPS + STOP_MARGIN


def _bridge_marker(paths: Paths, bridge: str) -> str:
    # In RUNDIR, so a reboot forgets it together with the bridge itself.
    return os.path.join(paths.rundir, f"bridge-{bridge}.created")


_EDIT_HOST = ("Do not edit: change the host settings instead and regenerate with `qemu-init install`.",)
_EDIT_GUEST = ("Do not edit: change the guest's rc-file or cfg-file instead and regenerate with",
               "`qemu-init install`. `start` warns when those files changed since.")


def _common(site: Site, init: str, summary: str, sources: Sequence[Source],
            edit: Sequence[str] = _EDIT_HOST) -> Dict[str, Any]:
    """What every template's banner needs."""
    return dict(init=init, summary=summary, sources=list(sources), edit=list(edit), helper=site.helper)


def _host_sources(site: Site) -> List[Source]:
    return [site.host_source] if site.host_source else []


def guest_files(site: Site, info: GuestInfo, init: str) -> List[Rendered]:
    """The guest's service: a script in the init folder, or a systemd unit."""
    guest, plan = info.guest, info.plan
    service = guest_service(init, guest.name)
    needs = [bridge_service(init, b) for b in guest.bridges] + [guest_service(init, d) for d in guest.depends]
    title = f"QEMU guest {guest.name}"
    heading = f"{title}: {guest.desc}" if guest.desc else title
    summary = f"{service}: {title}" + (f" ({guest.desc})" if guest.desc else "")
    context = _common(site, init, summary, guest.sources, _EDIT_GUEST)
    context.update(
        service=service, title=title, heading=heading, desc=guest.desc, guest=guest, plan=plan,
        calls=helpercalls.calls(guest, plan),
        lsb_required=["$remote_fs", "$network"] + needs,
        openrc_need=needs,
        rcd_require=["LOGIN"] + needs,
        rcvar=f"{service}_enable",
        unit_after=["network.target", "remote-fs.target"] + [unit_file(n) for n in needs],
        unit_requires=[unit_file(n) for n in needs],
        forced_steps=FORCED_STEPS, stop_margin=STOP_MARGIN, stop_timeout=stop_timeout(plan.stopdelay),
        launch_timeout=math.ceil(LAUNCH_TIMEOUT), start_margin=START_MARGIN, start_timeout=start_timeout(),
    )
    if init == "systemd":
        return [Rendered(unit_file(service), render("systemd/guest.service.j2", **context), UNIT_MODE, "unitdir")]
    return [Rendered(service, render(f"{init}/guest.j2", **context), SCRIPT_MODE, SERVICE_FOLDER[init])]


def bridge_files(site: Site, bridge: str, init: str) -> List[Rendered]:
    """The bridge-setup service (on systemd: a unit and the script it runs, in ETCDIR)."""
    service = bridge_service(init, bridge)
    title = f"Bridge {bridge} for QEMU guests"
    context = _common(site, init, f"{service}: {title}", _host_sources(site))
    context.update(
        service=service, title=title, bridge=bridge, marker=_bridge_marker(site.paths, bridge),
        uplink=site.host.uplink if bridge == site.host.bridge else "",
        rcvar=f"{service}_enable", rcd_require=["NETWORKING"], rcd_before=["LOGIN"],
        script=os.path.join(site.paths.etcdir, service), unit_name=unit_file(service),
    )
    if init == "systemd":
        return [Rendered(unit_file(service), render("systemd/bridge.service.j2", **context), UNIT_MODE, "unitdir"),
                Rendered(service, render("systemd/bridge.j2", **context), SCRIPT_MODE, "etcdir")]
    return [Rendered(service, render(f"{init}/bridge.j2", **context), SCRIPT_MODE, SERVICE_FOLDER[init])]


def qemud_files(site: Site, init: str) -> List[Rendered]:
    """The host service: autostart guests at boot, stop every guest at shutdown."""
    needs = [bridge_service(init, b) for b in site.bridges]
    guests = [i.guest for i in site.guests]
    title = "QEMU guests of qemu-init"
    context = _common(site, init, f"qemud: {title}", _host_sources(site))
    context.update(
        service="qemud", title=title, command=site.command, autostart=site.paths.autostart,
        long_description=f"Starts the guests listed in {site.paths.autostart} at boot and stops every"
                         " running guest at shutdown.",
        # SysV and OpenRC: nothing about the registered guests, so the host service a package
        # ships stays right as guests come and go. Bridges order themselves before qemud, and
        # a guest's service brings its bridges up (qemud does that for SysV).
        lsb_required=["$remote_fs", "$network"],
        openrc_need=[],
        rcd_require=["LOGIN"] + needs,
        # Wants, not Requires: one bridge failing must not keep the guests on other bridges down.
        unit_after=["network.target", "remote-fs.target"] + [unit_file(n) for n in needs],
        unit_wants=[unit_file(n) for n in needs],
        # qemud start launches the guests one after the other: each may take a guest unit's start.
        start_timeout=sum(g.bootdelay for g in guests) + start_timeout() * max(len(guests), 1),
        start_per_guest=start_timeout(),
        # At least one guest's worth: guests registered later get stopped too, even before the
        # next `qemu-init install` recomputes this.
        stop_timeout=max(shutdown_estimate(guests, site.host.parallel),
                         shutdown_time([site.host.minstopdelay], 0)) + STOP_MARGIN,
        parallel_text=f"{site.host.parallel} at a time" if site.host.parallel else "all at once",
    )
    if init == "systemd":
        return [Rendered("qemud.service", render("systemd/qemud.service.j2", **context), UNIT_MODE, "unitdir")]
    return [Rendered("qemud", render(f"{init}/qemud.j2", **context), SCRIPT_MODE, SERVICE_FOLDER[init])]


def render_site(site: Site, init: str, qemud: bool = True) -> List[Rendered]:
    """Every file for ``init``: each guest's service, each bridge's service and (unless
    ``qemud`` is False) the host service. No tap scripts: the helper makes the taps itself."""
    if init not in INIT_SYSTEMS:
        raise RenderError(f"unknown init system {init!r} (use {', '.join(INIT_SYSTEMS)})")
    files: List[Rendered] = []
    for info in site.guests:
        files += guest_files(site, info, init)
    for bridge in site.bridges:
        files += bridge_files(site, bridge, init)
    if qemud:
        files += qemud_files(site, init)
    return files
