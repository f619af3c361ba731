"""Rendering: one Jinja environment, the files ``new`` writes, and every script and unit of a
Site (sites.py), each guest's, bridge's and the host service's.

Values reach a script only through a quoting filter (quoting.py); templates make no decisions
beyond ``if``/``for`` over fields computed here. Service names are owner.py's, timeouts
services.py's.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Dict, List, NamedTuple, Sequence

import jinja2

from . import __version__, helpercalls, trust
from .checks import FORCED_STEPS, shutdown_estimate, shutdown_time
from .cmdline import plan as cmdline_plan
from .errors import RenderError
from .keys import RC_KEYS
from .model import Source
from .owner import bridge_service, guest_service
from .paths import INIT_SYSTEMS, SERVICE_FOLDER, Paths
from .quoting import comment, sh, shjoin, shlines, unit, unitjoin, unitlines, unittext
from .runtime.control import LAUNCH_TIMEOUT
from .services import START_MARGIN, STOP_MARGIN, start_timeout, stop_timeout, unit_file
from .sites import GuestInfo, Site

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


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


SCRIPT_MODE = 0o755
UNIT_MODE = 0o644


class Rendered(NamedTuple):
    """One generated file: its name (relative to its folder), text and mode, and ``folder``,
    the Paths attribute naming where ``install`` puts it."""

    path: str
    text: str
    mode: int
    folder: str


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
    if init == "bsd":  # FreeBSD's QEMU takes fewer options (cmdline.name_option)
        plan = cmdline_plan(guest, info.number, site.host, site.paths, system="freebsd")
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
        forced_steps=FORCED_STEPS, stop_margin=STOP_MARGIN, stop_timeout=stop_timeout(plan.stopdelay + plan.savetime),
        launch_timeout=math.ceil(LAUNCH_TIMEOUT), start_margin=START_MARGIN,
        start_timeout=start_timeout(plan.savetime),
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
        # qemud start launches the guests one after the other: each may take a guest unit's start
        # (a restore's time included); with none registered yet, one guest's worth.
        start_timeout=sum(g.bootdelay + start_timeout(g.savetime) for g in guests) if guests else start_timeout(),
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
