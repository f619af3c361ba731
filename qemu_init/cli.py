"""The command line (SPEC §8) as a Typer app: every command, its help and its completion. The only
module that imports typer.

The everyday commands (status, list, start, stop, …) usually never come here: ``fastcli`` reads
their command lines itself and calls ``guestcmds`` directly, as the commands below do too; it
hands everything else (help, completion, usage errors, the other commands) to ``main`` here.
Every user error is a QemuInitError, printed as one line on stderr; anything else is a bug,
reported in one line too unless --debug asks for the traceback.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import click
import typer
import typer.core

from . import __version__, guestcmds
from .config import CFG_SUFFIX, RC_SUFFIX, load_guest
from .errors import ERROR, ConfigError, Problem, QemuInitError
from .inventory import Inventory, rcfiles
from .output import JSON_HELP, emit_json, guarded, none_registered, report, table
from .paths import ROOT_ENV, host_paths
from . import values

# Plain help and one-line errors on every Typer we allow: Typer draws boxes whenever it can import
# rich (Debian may have python3-rich installed); qemu-init prints as systemctl does.
if getattr(typer.core, "rich", None) is not None:
    typer.core.rich = None

app = typer.Typer(help="QEMU guests described by tiny text files, run by plain init scripts.",
                  no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False)


class _AutostartGroup(typer.core.TyperGroup):
    """`autostart NAME on|off` (SPEC §8) is `autostart on|off NAME`: the name comes first the way
    one says it, and a guest can never be called like a subcommand (on, off, list) anyway."""

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        if len(args) == 2 and args[1] in ("on", "off") and args[0] not in self.commands:
            args = [args[1], args[0]]
        return super().parse_args(ctx, args)


autostart_app = typer.Typer(help="Which guests the host service starts at boot:"
                                 " autostart NAME on|off, autostart list.",
                            no_args_is_help=True, cls=_AutostartGroup)
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


def _seconds(value: Optional[str]) -> Optional[float]:
    """--timeout S: a number of seconds, 0 or more (a usage error otherwise, exit 2)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):  # also refuses nan
        raise typer.BadParameter(f"not a number of seconds (0 or more): {value!r}")
    return seconds


def _init_system(value: Optional[str]) -> Optional[str]:
    if value is None:  # Click calls this for an absent option too: no templates loaded then
        return None
    from .render import INIT_SYSTEMS
    if value not in INIT_SYSTEMS:
        raise typer.BadParameter(f"{value!r} is not an init system (use {', '.join(INIT_SYSTEMS)})")
    return value


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
    # A root that does not exist is a typo, not an empty host; only the commands that make a
    # host's folders may start from nothing.
    command = click.get_current_context().invoked_subcommand
    if root and not os.path.isdir(root) and command not in _MAKE_ROOT:
        raise typer.BadParameter(f"{root}: no such folder", param_hint="'--root'")
    State.inventory = Inventory(host_paths(root))


_MAKE_ROOT = ("new", "register", "generate", "install")


def _none_registered() -> None:
    none_registered(inv().paths.etcdir)


# --- configuration --------------------------------------------------------------------------

@app.command()
def new(name: str = typer.Argument(..., metavar="NAME", help="The new guest's name."),
        dir: str = typer.Option(".", "--dir", metavar="DIR", help="Folder for the guest's files.")) -> None:
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
def unregister(name: str = typer.Argument(..., metavar="NAME", autocompletion=complete_guest)) -> None:
    """Forget a guest (its files stay). Refused while it runs."""
    inventory = inv()
    entry = inventory.registry.get(name)
    if inv().running(entry.name):
        raise QemuInitError(f"{entry.name}: is running; stop it first (qemu-init stop {entry.name})")
    inventory.registry.remove(entry.name)
    typer.echo(f"unregistered {entry.name}")


@app.command("list")
def list_guests(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Registered guests: number, name, autostart, state, folder."""
    raise typer.Exit(guestcmds.list_guests(inv(), as_json))


@app.command()
def check(targets: List[str] = typer.Argument(None, metavar="[NAME|PATH]...",
                                              help="Guests or files to check (default: all registered)."),
          init: Optional[str] = typer.Option(None, "--init", metavar="sysv|openrc|bsd|systemd",
                                             autocompletion=_complete_init, callback=_init_system,
                                             help="Check the shutdown budget of this init system"
                                                  " (default: this host's)."),
          as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Validate guests; exit 0 when clean, 1 on errors (warnings do not fail)."""
    from . import install as installer
    if not targets and not inv().entries() and not as_json:
        _none_registered()
    problems = inv().check(targets or [], init or installer.detect_init())
    errors = sum(p.level == ERROR for p in problems)
    warnings = len(problems) - errors
    if as_json:
        emit_json({"errors": errors, "warnings": warnings,
                   "problems": [{"path": p.path, "line": p.line, "key": p.key, "level": p.level,
                                 "message": p.message} for p in problems]})
    else:
        report(problems, err=False)  # the result itself: `check | less` shows it
        typer.echo(f"{errors} error(s), {warnings} warning(s)")
    raise typer.Exit(1 if errors else 0)


@app.command()
def show(name: str = typer.Argument(..., metavar="NAME", autocompletion=complete_guest),
         argv: bool = typer.Option(False, "--argv", help="Print only the QEMU command line."),
         as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Effective configuration, then the QEMU command line, one argument per line."""
    inventory = inv()
    entry, guest = inventory.guest(name)
    plan = inventory.plan(entry, guest)
    # What reading changed (STOPDELAY raised to MINSTOPDELAY): said, not silently applied.
    warnings = [p for p in inventory.load_entry(entry).problems if p.level != ERROR]
    raised = any(p.key == "STOPDELAY" for p in warnings)
    if as_json:
        emit_json({
            "number": entry.number, "name": guest.name, "description": guest.desc,
            "rcfile": guest.rcfile.path, "cfgfile": guest.cfgfile.path if guest.cfgfile else None,
            "emulator": guest.tgtarch, "runas": guest.runas or None, "memory": guest.ram or None,
            "cpus": guest.smp or None, "kvm": guest.kvm, "monitor": plan.monitor, "vnc": plan.vnc,
            "stopdelay": guest.stopdelay, "bootdelay": guest.bootdelay, "depends": list(guest.depends),
            "pidfile": plan.pidfile, "qmp": plan.qmp,
            "console": plan.console or None, "consolelog": plan.console_log or None, "agent": plan.agent or None,
            "onshutdown": guest.onshutdown, "savetime": plan.savetime, "statefile": plan.statefile,
            "nics": [{"index": n.index, "bridge": n.bridge, "model": n.model, "mac": n.mac, "tap": t}
                     for n, t in zip(guest.nics, plan.taps)],
            "drives": [{"kind": d.kind, "index": d.index, "file": d.file} for d in guest.drives],
            "argv": list(plan.argv), "warnings": [str(p) for p in warnings]})
        return
    report(warnings)
    if not argv:
        rows = [["number", str(entry.number)], ["name", guest.name], ["description", guest.desc],
                ["rc-file", guest.rcfile.path], ["cfg-file", guest.cfgfile.path if guest.cfgfile else "-"],
                ["emulator", guest.tgtarch], ["run as", guest.runas or "(not dropped)"],
                ["memory", guest.ram or "QEMU's"], ["cpus", guest.smp or "QEMU's"],
                ["kvm", "yes" if guest.kvm else "no"], ["monitor", plan.monitor], ["vnc", plan.vnc],
                ["stop delay", f"{guest.stopdelay} s" + (" (raised to MINSTOPDELAY)" if raised else "")],
                ["boot delay", f"{guest.bootdelay} s"],
                ["on shutdown", f"save (up to {plan.savetime} s), to {plan.statefile}"
                 if guest.onshutdown == "save" else "shutdown"],
                ["depends", " ".join(guest.depends) or "-"], ["pid file", plan.pidfile],
                ["control socket", plan.qmp],
                ["console", f"{plan.console} (log {plan.console_log})" if plan.console
                 else "off: the cfg-file sets -serial" if guest.console is False and "CONSOLE" not in guest.lines
                 else "off"],
                ["guest agent", plan.agent or "no"]]
        rows += [[f"nic{n.index}", f"{n.bridge} {n.model} {n.mac} tap {t}"] for n, (t, _) in zip(guest.nics, plan.taps)]
        rows += [[f"{d.kind}{d.index}", d.file] for d in guest.drives]
        table(rows, ["SETTING", "VALUE"])
        typer.echo("\nQEMU command line:")
    for word in plan.argv:
        typer.echo(word)


def _set_autostart(names: List[str], on: bool) -> None:
    registry = inv().registry
    entries = [registry.get(name) for name in names]  # every name known, or nothing changes
    for entry in entries:
        registry.set_autostart(entry.name, on)
        typer.echo(f"{entry.name}: {'started' if on else 'not started'} at host boot")


@autostart_app.command("on")
def autostart_on(names: List[str] = typer.Argument(..., metavar="NAME...", autocompletion=complete_guest)) -> None:
    """Start NAME at host boot, last in the order (also: autostart NAME on)."""
    _set_autostart(names, True)


@autostart_app.command("off")
def autostart_off(names: List[str] = typer.Argument(..., metavar="NAME...", autocompletion=complete_guest)) -> None:
    """Do not start NAME at host boot (also: autostart NAME off)."""
    _set_autostart(names, False)


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
    """Render init scripts: the guests', their bridges' services, the host service."""
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
    from .sites import helper_command
    chosen = init or installer.detect_init()
    tree = installer.development_tree(helper_command())
    if tree:
        typer.echo(f"qemu-init: warning: the scripts will call {helper_command()[0]}, in the development tree"
                   f" {tree}: they stop working when it moves or its venv is rebuilt (for real use: make install,"
                   " or the package)", err=True)

    def removed(path: str) -> None:
        typer.echo(f"removed {path} (its guest is no longer registered)")

    for path in installer.install(inv(), chosen, destdir, removed=removed):
        typer.echo(f"installed {path}")
    packaged = installer.packaged_service(inv().paths)
    if packaged and chosen in ("sysv", "openrc") and not destdir:
        typer.echo(f"kept {packaged}: the package's host service, which serves every guest")
    typer.echo(installer.ENABLE_HINTS[chosen], err=True)


# --- runtime --------------------------------------------------------------------------------

# The bodies of these are in guestcmds, shared with the fast path (fastcli): a command here
# only declares its arguments (for help, completion and usage errors) and hands them on. An
# option added here and not to fastcli's table still works: fastcli hands such a command line
# to Typer.

@app.command()
def start(name: str = typer.Argument(..., metavar="NAME", autocompletion=complete_guest),
          discard_state: bool = typer.Option(False, "--discard-state",
                                             help="Delete the guest's saved state and boot it afresh.")) -> None:
    """Start a guest through its installed service (the same command line as at boot); a
    saved state (ONSHUTDOWN=save, stop --save) is restored: the guest runs on where it was."""
    raise typer.Exit(guestcmds.start(inv(), name, discard_state))


@app.command()
def stop(name: str = typer.Argument(..., metavar="NAME", autocompletion=complete_guest),
         timeout: Optional[str] = typer.Option(None, "--timeout", metavar="S", callback=_seconds,
                                               help="Wait S seconds for a clean shutdown instead of STOPDELAY."),
         force: bool = typer.Option(False, "--force", help="Skip the clean shutdown: quit, then signals."),
         save: bool = typer.Option(False, "--save", help="Save the guest's state instead (restored by the next"
                                   " start); if that fails, shut it down.")) -> None:
    """Shut a guest down cleanly through its service: power button, wait, then force it off."""
    raise typer.Exit(guestcmds.stop(inv(), name, timeout, force, save))  # type: ignore[arg-type]


@app.command()
def restart(name: str = typer.Argument(..., metavar="NAME", autocompletion=complete_guest)) -> None:
    """Stop, then start a guest."""
    raise typer.Exit(guestcmds.restart(inv(), name))


@app.command()
def status(name: str = typer.Argument(..., metavar="NAME", autocompletion=complete_guest),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """One line about the guest; the exit code is LSB's: 0 running, 1 dead, 3 stopped, 4 unknown."""
    raise typer.Exit(guestcmds.status(inv(), name, as_json))


def _run_state(action: str, doc: str):  # type: ignore[no-untyped-def]
    def command(name: str = typer.Argument(..., metavar="NAME", autocompletion=complete_guest)) -> None:
        raise typer.Exit(guestcmds.run_state(inv(), name, action))
    command.__doc__ = doc
    app.command(action)(command)


_run_state("pause", "Pause a running guest (its CPUs stop; status says paused) until `resume`.")
_run_state("resume", "Resume a paused guest.")
_run_state("reset", "Reset a guest at once, as its reset button does: a reboot without shutting down.")


@app.command()
def monitor(name: str = typer.Argument(..., metavar="NAME", autocompletion=complete_guest),
            command: List[str] = typer.Argument(None, metavar="[COMMAND]...",
                                                help="A monitor command; none: interactive session.")) -> None:
    """Run one monitor command (e.g. `info status`), or an interactive monitor session."""
    raise typer.Exit(guestcmds.monitor(inv(), name, command or ()))


@app.command()
def console(name: str = typer.Argument(..., metavar="NAME", autocompletion=complete_guest),
            lines: Optional[int] = typer.Argument(None, metavar="[N]", help="With --tail: how many lines"
                                                  " (default 20; 0: the whole log)."),
            tail: bool = typer.Option(False, "--tail", help="Print the end of the console log instead.")) -> None:
    """Attach to the guest's serial console (Ctrl-] detaches), or print its log (--tail [N])."""
    if lines is not None and not tail:
        raise typer.BadParameter("a number of lines goes with --tail", param_hint="N")
    from .runtime.console import TAIL_LINES
    # --tail alone: the default count (None would mean a session)
    raise typer.Exit(guestcmds.console(inv(), name, (TAIL_LINES if lines is None else lines) if tail else None))


# --- host service ---------------------------------------------------------------------------

@qemud_app.command("start")
def qemud_start() -> None:
    """Start the autostart guests in order (DEPENDS first, BOOTDELAY honoured)."""
    raise typer.Exit(guestcmds.qemud_start(inv()))


@qemud_app.command("stop")
def qemud_stop() -> None:
    """Stop every running guest: press every power button at once, then wait (dependents first)."""
    raise typer.Exit(guestcmds.qemud_stop(inv()))


@qemud_app.command("status")
def qemud_status(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """A table of every registered guest; exit 0 while every autostart guest runs, else 3."""
    raise typer.Exit(guestcmds.qemud_status(inv(), as_json))


def _usage_error(exc: click.UsageError) -> int:
    """One line, as systemctl says it, and where to read more: Click's wording, our shape."""
    message = exc.format_message().strip().rstrip(".")
    message = message[:1].lower() + message[1:]
    typer.echo(f"qemu-init: {message}", err=True)
    where = exc.ctx.command_path if exc.ctx is not None else "qemu-init"
    typer.echo(f"Try '{where} --help'.", err=True)
    return 2  # LSB and sysexits' EX_USAGE tradition: 2 for a bad command line


def main(args: Optional[List[str]] = None) -> None:
    sys.exit(run(args))


def run(args: Optional[List[str]] = None) -> int:
    """The exit code of a whole command line (``args``; default: sys.argv[1:])."""
    command = typer.main.get_command(app)

    def parse_and_run() -> int:
        try:
            # standalone_mode=False: usage errors come to us instead of being printed by Typer
            # (a box, in some versions); Exit codes come back as the return value.
            code = command.main(args=args, prog_name="qemu-init", standalone_mode=False)
            return code if isinstance(code, int) else 0
        except click.UsageError as exc:
            return _usage_error(exc)
        except click.ClickException as exc:  # e.g. a file Click could not open
            typer.echo(f"qemu-init: {exc.format_message()}", err=True)
            return exc.exit_code
        except click.Abort:  # Ctrl-C or end of input at a prompt
            typer.echo("qemu-init: interrupted", err=True)
            return 130

    return guarded(parse_and_run, "--debug" in (sys.argv if args is None else args))
