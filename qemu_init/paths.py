"""Where things live on the host: the install layout (FHS or APPDIR) and the sandbox root.

``make install`` records the layout in ``qemu_init/layout.conf`` (KEY=VALUE); without it the
FHS layout for PREFIX=/usr is used. ``--root DIR`` / ``QEMU_INIT_ROOT`` moves every path under
DIR, which is how tests and the demo run without touching the real /etc.
"""

from __future__ import annotations

import os
import sys
from .records import record as dataclass  # @record: dataclasses' decorator without its import cost (records.py)
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: ~4 ms of every command
if TYPE_CHECKING:
    from typing import Dict, Optional

LAYOUT_FILE = os.path.join(os.path.dirname(__file__), "layout.conf")
ROOT_ENV = "QEMU_INIT_ROOT"


@dataclass(frozen=True)
class Layout:
    kind: str = "fhs"  # fhs or appdir
    prefix: str = "/usr"
    suffix: str = "qemu-init"
    appdir: str = "/var/lib/qemud"  # the system user's home, for the APPDIR layout
    bindir: str = ""  # where `make install` put qemu-init and qemu-init-helper ("": not recorded)
    # The host service a package ships (e.g. /etc/init.d/qemud, a dpkg conffile): `qemu-init
    # install` leaves it alone, so an upgrade never finds it changed and never asks about it.
    packaged_service: str = ""


def read_layout(path: str = LAYOUT_FILE) -> Layout:
    settings: Dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep and not key.startswith("#"):
                    settings[key.strip().lower()] = value.strip()
    except FileNotFoundError:
        pass
    return Layout(**{k: v for k, v in settings.items() if k in Layout._fields})


@dataclass(frozen=True)
class Paths:
    root: str
    etcdir: str
    vardir: str
    rundir: str
    logdir: str
    initdir: str  # SysV and OpenRC scripts
    rcddir: str  # FreeBSD rc.d scripts
    unitdir: str  # systemd units

    @classmethod
    def for_layout(cls, layout: Layout, root: Optional[str] = None) -> "Paths":
        root = os.path.abspath(root) if root else ""
        prefix = layout.prefix.rstrip("/")
        etc_base = "/etc" if prefix in ("", "/usr") else f"{prefix}/etc"
        if layout.kind == "appdir":
            home = layout.appdir.rstrip("/")
            dirs = dict(etcdir=f"{home}/etc", vardir=f"{home}/var", rundir=f"{home}/var/run",
                        logdir=f"{home}/var")
        else:
            run = "/var/run" if sys.platform.startswith("freebsd") else "/run"  # FreeBSD has no /run
            dirs = dict(etcdir=f"{etc_base}/{layout.suffix}", vardir=f"/var/lib/{layout.suffix}",
                        rundir=f"{run}/{layout.suffix}", logdir=f"/var/log/{layout.suffix}")
        dirs.update(initdir="/etc/init.d", rcddir=f"{etc_base}/rc.d", unitdir="/etc/systemd/system")
        return cls(root=root, **{k: root + v for k, v in dirs.items()})

    # Host files (SPEC §4).
    @property
    def registered(self) -> str:
        return os.path.join(self.etcdir, "registered")

    @property
    def autostart(self) -> str:
        return os.path.join(self.etcdir, "autostart")

    @property
    def host_conf(self) -> str:
        return os.path.join(self.etcdir, "qemu-init.conf")

    @property
    def template_cfg(self) -> str:
        return os.path.join(self.etcdir, "template-qemu.cfg")

    @property
    def registry_lock(self) -> str:
        return os.path.join(self.etcdir, ".registry.lock")

    @property
    def number_file(self) -> str:
        return os.path.join(self.vardir, "next-number")

    # Per guest status files.
    def pidfile(self, name: str) -> str:
        return os.path.join(self.rundir, f"{name.lower()}.pid")

    def qmp(self, name: str) -> str:
        return os.path.join(self.rundir, f"{name.lower()}.qmp")

    def monitor_socket(self, name: str) -> str:
        return os.path.join(self.rundir, f"{name.lower()}.mon")

    def console_socket(self, name: str) -> str:
        return os.path.join(self.rundir, f"{name.lower()}.console")

    def agent_socket(self, name: str) -> str:
        return os.path.join(self.rundir, f"{name.lower()}.qga")

    def console_log(self, name: str) -> str:
        return os.path.join(self.logdir, f"{name.lower()}.console.log")

    def lock(self, name: str) -> str:
        return os.path.join(self.rundir, f"{name.lower()}.lock")

    def log(self, name: str) -> str:
        return os.path.join(self.logdir, f"{name.lower()}.log")

    def statefile(self, name: str) -> str:
        """A saved guest's state (ONSHUTDOWN=save), in a root-only folder of VARDIR."""
        return os.path.join(self.vardir, "state", f"{name.lower()}.state")

    # Tap scripts QEMU runs, one pair per bridge.


def host_paths(root: Optional[str] = None) -> Paths:
    """The paths in force: the installed layout, under ``root`` or $QEMU_INIT_ROOT if given."""
    return Paths.for_layout(read_layout(), root or os.environ.get(ROOT_ENV) or None)
