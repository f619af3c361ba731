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
    def for_layout(cls, layout: Layout, root: Optional[str] = None, platform: Optional[str] = None) -> "Paths":
        """The host's paths for ``layout`` (under ``root`` if given) on ``platform`` (by
        default this one's, sys.platform)."""
        root = os.path.abspath(root) if root else ""
        prefix = layout.prefix.rstrip("/")
        etc_base = "/etc" if prefix in ("", "/usr") else f"{prefix}/etc"
        if layout.kind == "appdir":
            home = layout.appdir.rstrip("/")
            dirs = dict(etcdir=f"{home}/etc", vardir=f"{home}/var", rundir=f"{home}/var/run",
                        logdir=f"{home}/var")
        else:
            run = "/var/run" if _freebsd(platform) else "/run"  # FreeBSD has no /run
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


def _freebsd(platform: Optional[str]) -> bool:
    return (platform or sys.platform).startswith("freebsd")


SYSTEMD_RUNNING = "/run/systemd/system"  # sd_booted()


def detect_init(platform: Optional[str] = None) -> str:
    """The init system that booted this host, by the marks each leaves at run time; FreeBSD's
    rc.d on FreeBSD (``platform``, by default this one's: ``make install PLATFORM=freebsd``)."""
    if (platform or sys.platform).startswith("freebsd"):
        return "bsd"
    if os.path.isdir(SYSTEMD_RUNNING):  # sd_booted()
        return "systemd"
    if os.path.exists("/run/openrc/softlevel"):  # what openrc-run itself checks
        return "openrc"
    return "sysv"


# Where ``install`` puts each init system's services: an attribute of Paths.
SERVICE_FOLDER = {"sysv": "initdir", "openrc": "initdir", "bsd": "rcddir", "systemd": "unitdir"}
INIT_SYSTEMS = tuple(SERVICE_FOLDER)
LAYOUTS = ("fhs", "appdir")


def install_dirs(layout: Layout, init: str = "none", platform: Optional[str] = None) -> Dict[str, str]:
    """Every folder ``make install`` puts something in, by its Makefile variable: the host's
    folders (Paths), the package's own (LIBDIR, DATADIR), the programs', manual pages' and
    shell completions' under PREFIX, and the host service's (SERVICEDIR, for ``init``; none
    for "none"). The Makefile asks for these (``python3 -m qemu_init.paths --make``)."""
    if layout.kind not in LAYOUTS:
        raise ValueError(f"LAYOUT must be {' or '.join(LAYOUTS)}, not {layout.kind!r}")
    if init != "none" and init not in SERVICE_FOLDER:
        raise ValueError(f"INITSYS must be {', '.join(SERVICE_FOLDER)} or none, not {init!r}")
    paths = Paths.for_layout(layout, platform=platform)
    prefix = layout.prefix.rstrip("/")
    if layout.kind == "appdir":
        home = layout.appdir.rstrip("/")
        libdir, datadir = f"{home}/lib", f"{home}/dat"
    else:
        libdir, datadir = f"{prefix}/lib/{layout.suffix}", f"{prefix}/share/{layout.suffix}"
    dirs = dict(BINDIR=f"{prefix}/bin", LIBDIR=libdir, DATADIR=datadir, EXAMPLESDIR=f"{datadir}/examples",
                MANDIR=f"{prefix}/share/man", BASHCOMPDIR=f"{prefix}/share/bash-completion/completions",
                ZSHCOMPDIR=f"{prefix}/share/zsh/site-functions",
                FISHCOMPDIR=f"{prefix}/share/fish/vendor_completions.d",
                ETCDIR=paths.etcdir, VARDIR=paths.vardir, RUNDIR=paths.rundir, LOGDIR=paths.logdir)
    if init != "none":
        dirs["SERVICEDIR"] = getattr(paths, SERVICE_FOLDER[init])
    return dirs


def _make(argv: "list[str]") -> int:
    """``--make LAYOUT PREFIX SUFFIX APPDIR PLATFORM [INITSYS]``: the folders as make
    assignments, one a line, and INITSYS_GUESS, the init system to install for by default."""
    if len(argv) not in (5, 6):
        print("usage: python3 -m qemu_init.paths --make LAYOUT PREFIX SUFFIX APPDIR PLATFORM [INITSYS]",
              file=sys.stderr)
        return 2
    kind, prefix, suffix, appdir, platform = argv[:5]
    guess = detect_init(platform or None)
    init = (argv[5] if len(argv) == 6 else "") or guess
    try:
        dirs = install_dirs(Layout(kind=kind, prefix=prefix, suffix=suffix, appdir=appdir), init, platform or None)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1
    dirs["INITSYS_GUESS"] = guess
    if any(not v or any(c.isspace() for c in v) for v in dirs.values()):
        print(f"make install cannot handle empty folder names or white space in them: {dirs}", file=sys.stderr)
        return 1
    for name, value in dirs.items():
        print(f"{name}={value}")
    return 0


def host_paths(root: Optional[str] = None) -> Paths:
    """The paths in force: the installed layout, under ``root`` or $QEMU_INIT_ROOT if given."""
    return Paths.for_layout(read_layout(), root or os.environ.get(ROOT_ENV) or None)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--make"]:
        sys.exit(_make(sys.argv[2:]))
    print("usage: python3 -m qemu_init.paths --make LAYOUT PREFIX SUFFIX APPDIR PLATFORM [INITSYS]", file=sys.stderr)
    sys.exit(2)
