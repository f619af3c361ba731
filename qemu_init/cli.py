"""The command line (SPEC §8): the only module that imports typer.

Every user error is a QemuInitError, printed as one line on stderr; anything else is a bug,
reported in one line too unless --debug asks for the traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import List, Optional

import typer

from . import __version__
from .config import CFG_SUFFIX, RC_SUFFIX, load_guest
from .errors import ERROR, ConfigError, GuestError, Problem, QemuInitError
from .inventory import Inventory, rcfiles
from .paths import ROOT_ENV, host_paths
from . import values

app = typer.Typer(help="QEMU guests described by tiny text files, run by plain init scripts.",
                  no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False)
autostart_app = typer.Typer(help="Which guests the host service starts at boot.", no_args_is_help=True)
qemud_app = typer.Typer(help="The host service: start, stop and show all guests.", no_args_is_help=True)
app.add_typer(autostart_app, name="autostart")
app.add_typer(qemud_app, name="qemud")



class State:
    inventory: Optional[Inventory] = None


def inv() -> Inventory:
    assert State.inventory is not None
    return State.inventory


def complete_guest(incomplete: str) -> List[str]:
    try:
        return [e.name for e in Inventory(host_paths()).entries() if e.name.lower().startswith(incomplete.lower())]
    except Exception:  # completion must never print a traceback into the user's shell
        return []


def _complete_init(incomplete: str) -> List[str]:
    from .render import INIT_SYSTEMS
    return [i for i in INIT_SYSTEMS if i.startswith(incomplete)]


def _complete_init_or_all(incomplete: str) -> List[str]:
    from .render import INIT_SYSTEMS
    return [i for i in INIT_SYSTEMS + ("all",) if i.startswith(incomplete)]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qemu-init {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    root: Optional[str] = typer.Option(None, "--root", envvar=ROOT_ENV, metavar="DIR",
                                       help="Move every host path (ETCDIR, RUNDIR, VARDIR, scripts) under DIR."),
    debug: bool = typer.Option(False, "--debug", help="Show a traceback for internal errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    State.inventory = Inventory(host_paths(root))


def table(rows: List[List[str]], headers: List[str]) -> None:
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    for row in [headers] + rows:
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def report(problems: List[Problem]) -> None:
    for problem in problems:
        typer.echo(str(problem), err=True)


# --- configuration --------------------------------------------------------------------------

@app.command()
def new(name: str = typer.Argument(..., help="The new guest's name."),
        dir: str = typer.Option(".", "--dir", help="Folder for the guest's files.")) -> None:
    """Write a commented rc-file and cfg-file for a new guest."""
    from . import render
    from .files import write_atomic
    try:
        values.name(name)
    except ValueError as exc:
        raise ConfigError([Problem("<command line>", None, "NAME", str(exc))]) from None
    rc = os.path.join(dir, name.lower() + RC_SUFFIX)
    cfg = os.path.join(dir, name.lower() + CFG_SUFFIX)
    for path in (rc, cfg):
        if os.path.exists(path):
            raise QemuInitError(f"{path}: already exists, not overwritten")
    write_atomic(rc, render.new_rcfile(name))
    write_atomic(cfg, render.new_cfgfile(name, inv().paths.template_cfg))
    typer.echo(f"wrote {rc} and {cfg}; edit them, then: qemu-init register {rc}")


@app.command()
def register(paths: List[str] = typer.Argument(..., metavar="PATH...",
                                               help="rc-files, or folders standing for all rc-files in them.")) -> None:
    """Register guests: validate them and give each a permanent number."""
    inventory = inv()
    rcs = list(dict.fromkeys(rc for target in paths for rc in rcfiles(target)))  # each file once
    # Checked together, so guests registered at once may depend on each other.
    errors = [p for p in inventory.check(rcs) if p.level == ERROR]
    report(errors)
    bad = {p.path for p in errors}
    good = []
    for rc in rcs:
        guest, _ = load_guest(rc, inventory.host)
        if guest is not None and rc not in bad and not (guest.cfgfile and guest.cfgfile.path in bad):
            good.append((guest.name, guest.folder))
    for entry in inventory.registry.add_all(good):
        typer.echo(f"registered {entry.name} as number {entry.number} ({entry.folder})")
    if errors:
        raise typer.Exit(1)


@app.command()
def unregister(name: str = typer.Argument(..., autocompletion=complete_guest)) -> None:
    """Forget a guest (its files stay). Refused while it runs."""
    inventory = inv()
    entry = inventory.registry.get(name)
    if inv().running(entry.name):
        raise QemuInitError(f"{entry.name}: is running; stop it first (qemu-init stop {entry.name})")
    inventory.registry.remove(entry.name)
    typer.echo(f"unregistered {entry.name}")


@app.command("list")
def list_guests() -> None:
    """Registered guests: number, name, folder, autostart, state."""
    inventory = inv()
    auto = {n.lower() for n in inventory.registry.autostart()}
    rows = [[str(e.number), e.name, e.folder, "yes" if e.name.lower() in auto else "no", _state(e.name)]
            for e in inventory.entries()]
    if rows:
        table(rows, ["NR", "NAME", "FOLDER", "AUTOSTART", "STATE"])
    else:
        typer.echo("no guests registered (qemu-init new NAME, then qemu-init register PATH)")


@app.command()
def check(targets: List[str] = typer.Argument(None, metavar="[NAME|PATH]...",
                                              help="Guests or files to check (default: all registered)."),
          init: Optional[str] = typer.Option(None, "--init", autocompletion=_complete_init,
                                             help="Check the shutdown budget of this init system"
                                                  " (default: this host's).")) -> None:
    """Validate guests; exit 0 when clean, 1 on errors (warnings do not fail)."""
    from . import install as installer
    from .render import INIT_SYSTEMS
    if init is not None and init not in INIT_SYSTEMS:
        raise QemuInitError(f"--init {init}: not an init system (use {', '.join(INIT_SYSTEMS)})")
    problems = inv().check(targets or [], init or installer.detect_init())
    report(problems)
    errors = sum(p.level == ERROR for p in problems)
    warnings = len(problems) - errors
    typer.echo(f"{errors} error(s), {warnings} warning(s)", err=bool(problems))
    raise typer.Exit(1 if errors else 0)


@app.command()
def show(name: str = typer.Argument(..., autocompletion=complete_guest),
         argv: bool = typer.Option(False, "--argv", help="Print only the QEMU command line.")) -> None:
    """Effective configuration, then the QEMU command line, one argument per line."""
    inventory = inv()
    entry, guest = inventory.guest(name)
    plan = inventory.plan(entry, guest)
    if not argv:
        rows = [["number", str(entry.number)], ["name", guest.name], ["description", guest.desc],
                ["rc-file", guest.rcfile.path], ["cfg-file", guest.cfgfile.path if guest.cfgfile else "-"],
                ["emulator", guest.tgtarch], ["run as", guest.runas or "(not dropped)"],
                ["memory", guest.ram or "QEMU's"], ["cpus", guest.smp or "QEMU's"],
                ["kvm", "yes" if guest.kvm else "no"], ["monitor", plan.monitor], ["vnc", plan.vnc],
                ["stop delay", f"{guest.stopdelay} s"], ["boot delay", f"{guest.bootdelay} s"],
                ["depends", " ".join(guest.depends) or "-"], ["pid file", plan.pidfile],
                ["control socket", plan.qmp]]
        rows += [[f"nic{n.index}", f"{n.bridge} {n.model} {n.mac} tap {t}"] for n, t in zip(guest.nics, plan.taps)]
        rows += [[f"{d.kind}{d.index}", d.file] for d in guest.drives]
        table(rows, ["SETTING", "VALUE"])
        typer.echo("\nQEMU command line:")
    for word in plan.argv:
        typer.echo(word)


@autostart_app.command("on")
def autostart_on(name: str = typer.Argument(..., autocompletion=complete_guest)) -> None:
    """Start NAME at host boot (appended to the start order)."""
    inv().registry.set_autostart(name, True)


@autostart_app.command("off")
def autostart_off(name: str = typer.Argument(..., autocompletion=complete_guest)) -> None:
    """Do not start NAME at host boot."""
    inv().registry.set_autostart(name, False)


@autostart_app.command("list")
def autostart_list() -> None:
    """The guests started at host boot, in order."""
    for name in inv().registry.autostart():
        typer.echo(name)


# --- init scripts ---------------------------------------------------------------------------

@app.command()
def generate(names: List[str] = typer.Argument(None, metavar="[NAME]...", autocompletion=complete_guest,
                                               help="Guests to render (default: all, and the host service)."),
             init: Optional[str] = typer.Option(None, "--init", metavar="sysv|openrc|bsd|systemd|all",
                                                autocompletion=_complete_init_or_all,
                                                help="Init system (default: the one running this host)."),
             output: Optional[str] = typer.Option(None, "--output", metavar="DIR",
                                                  help="Write into DIR (one subfolder per init system with"
                                                       " --init all) instead of where install puts them.")) -> None:
    """Render init scripts: the guests', their bridges' services and tap scripts, the host service."""
    from . import install as installer
    for path in installer.generate(inv(), init, output, names or ()):
        typer.echo(path)


@app.command()
def install(init: Optional[str] = typer.Option(None, "--init", metavar="sysv|openrc|bsd|systemd",
                                               autocompletion=_complete_init,
                                               help="Init system (default: the one running this host)."),
            destdir: Optional[str] = typer.Option(None, "--destdir", metavar="DIR",
                                                  help="Install under DIR (for packages).")) -> None:
    """Install the scripts of every registered guest, bridge and the host service, atomically."""
    from . import install as installer
    chosen = init or installer.detect_init()
    for path in installer.install(inv(), chosen, destdir):
        typer.echo(f"installed {path}")
    packaged = installer.packaged_service(inv().paths)
    if packaged and chosen in ("sysv", "openrc") and not destdir:
        typer.echo(f"kept {packaged}: the package's host service, which serves every guest")
    typer.echo(installer.ENABLE_HINTS[chosen], err=True)


# --- runtime --------------------------------------------------------------------------------

@contextlib.contextmanager
def _guest(name: str):
    """(GuestControl, runtime.control) of a registered guest; runtime errors name the guest,
    as the init scripts' helper does."""
    from .runtime import control
    inventory = inv()
    entry, guest = inventory.guest(name)
    try:
        yield inventory.control(entry, guest), control
    except GuestError as exc:
        raise GuestError(f"{guest.name}: {exc}", exc.exit_code) from None


def _progress(name: str):
    return lambda step: typer.echo(f"{name}: {step}", err=True)


def _state(name: str) -> str:
    try:
        with _guest(name) as (gc, control):
            return control.status(gc)[1].split(": ", 1)[-1]
    except QemuInitError:
        return "running, configuration invalid" if inv().running(name) else "configuration invalid"


def _say(line: str) -> None:
    typer.echo(line)


def _warn(line: str) -> None:
    typer.echo(line, err=True)


def _start(gc, control, bridges=()) -> None:
    """Start a guest through its installed service (owner), as qemud does at boot."""
    from . import owner
    inventory = inv()
    if inventory.running(gc.name):
        control.start(gc)  # says it already runs, as its script would
        return
    owner.start_guest(inventory.paths, gc.name, lambda: control.start(gc), _say, bridges=bridges, warn=_warn)


def _stop(gc, control, timeout: Optional[int] = None, force: bool = False) -> None:
    """Stop a guest through its installed service (owner). With --timeout or --force, which its
    service has no way to pass on, the helper stops it here; its service then records that."""
    from . import owner
    inventory = inv()
    direct = lambda: control.stop(gc, timeout=timeout, force=force, progress=_progress(gc.name))  # noqa: E731
    if timeout is None and not force:
        owner.stop_guest(inventory.paths, gc.name, direct, lambda: inventory.running(gc.name), _say, warn=_warn)
        return
    direct()
    owner.stop(inventory.paths, owner.detect_init(), gc.name)  # nothing left to stop: just the record


@app.command()
def start(name: str = typer.Argument(..., autocompletion=complete_guest)) -> None:
    """Start a guest through its installed service (the same command line as at boot)."""
    with _guest(name) as (gc, control):
        _start(gc, control, inv().guest(name)[1].bridges)


@app.command()
def stop(name: str = typer.Argument(..., autocompletion=complete_guest),
         timeout: Optional[int] = typer.Option(None, "--timeout", metavar="S",
                                               help="Wait S seconds for a clean shutdown instead of STOPDELAY."),
         force: bool = typer.Option(False, "--force", help="Skip the clean shutdown: quit, then signals.")) -> None:
    """Shut a guest down cleanly through its service: power button, wait, then force it off."""
    with _guest(name) as (gc, control):
        _stop(gc, control, timeout, force)


@app.command()
def restart(name: str = typer.Argument(..., autocompletion=complete_guest)) -> None:
    """Stop, then start a guest."""
    with _guest(name) as (gc, control):
        _stop(gc, control)
        _start(gc, control, inv().guest(name)[1].bridges)


@app.command()
def status(name: str = typer.Argument(..., autocompletion=complete_guest)) -> None:
    """One line about the guest; exits with the LSB status code (0 running, 1 dead, 3 stopped,
    4 unknown)."""
    try:
        with _guest(name) as (gc, control):
            code, line = control.status(gc)
    except ConfigError as exc:
        report(exc.problems)
        raise typer.Exit(4)  # LSB: status unknown
    except QemuInitError as exc:
        typer.echo(f"qemu-init: {exc}", err=True)
        raise typer.Exit(4)
    typer.echo(line)
    raise typer.Exit(code)


@app.command()
def monitor(name: str = typer.Argument(..., autocompletion=complete_guest),
            command: List[str] = typer.Argument(None, help="A monitor command; none: interactive session.")) -> None:
    """Run one monitor command (e.g. `info status`), or an interactive monitor session."""
    with _guest(name) as (gc, control):
        raise typer.Exit(control.monitor(gc, " ".join(command) if command else None))


# --- host service ---------------------------------------------------------------------------

@qemud_app.command("start")
def qemud_start() -> None:
    """Start the autostart guests in order (DEPENDS first, BOOTDELAY honoured)."""
    from . import hostsvc
    raise typer.Exit(hostsvc.start(inv()))


@qemud_app.command("stop")
def qemud_stop() -> None:
    """Stop every running guest: in parallel up to PARALLEL, dependents first."""
    from . import hostsvc
    raise typer.Exit(hostsvc.stop(inv()))


@qemud_app.command("status")
def qemud_status() -> None:
    """A table of every registered guest; exit 0 while every autostart guest runs, else 3."""
    from . import hostsvc
    rows = hostsvc.status(inv())
    if rows:
        table(rows, ["NAME", "STATE", "PID", "VNC", "MONITOR", "AUTOSTART", "DESCRIPTION"])
    else:
        typer.echo("no guests registered")
    # LSB: the service is "running" (0) while every autostart guest runs, else "not running" (3).
    raise typer.Exit(0 if all(r[1] in ("running", "paused") for r in rows if r[5] == "yes") else 3)


def main() -> None:
    command = typer.main.get_command(app)
    try:
        command.main(prog_name="qemu-init")
    except ConfigError as exc:
        report(exc.problems)
        sys.exit(exc.exit_code)
    except QemuInitError as exc:
        typer.echo(f"qemu-init: {exc}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:  # the host said no (permissions, a missing or read-only folder)
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"qemu-init: {where}{exc.strerror or exc}", err=True)
        sys.exit(1)
    except Exception as exc:  # a bug: one line, unless asked for more
        if "--debug" in sys.argv:
            raise
        typer.echo(f"qemu-init: internal error: {exc.__class__.__name__}: {exc} (run with --debug for a traceback)",
                   err=True)
        sys.exit(70)  # EX_SOFTWARE
