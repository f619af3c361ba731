"""The everyday commands' work: list, status, start, stop, restart, pause/resume/reset, monitor and
``qemud start|stop|status``. Each takes the Inventory and its parsed arguments and returns the
exit code; the fast path (``fastcli``) and the Typer app (``cli``) both call these, so the two
can only differ in how they read the command line.

Nothing here imports typer, click or jinja2 (tests/unit/test_fastcli.py checks it).
"""

from __future__ import annotations

import contextlib

from .errors import ConfigError, GuestError, QemuInitError
from .inventory import runs
from .output import echo, emit_json, none_registered, report, table, warn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator, List, Optional, Sequence, Tuple

    from .inventory import Inventory


@contextlib.contextmanager
def _guest(inventory: Inventory, name: str, despite_errors: bool = False) -> Iterator[Tuple[object, object]]:
    """(GuestControl, runtime.control) of a registered guest; runtime errors name the guest,
    as the init scripts' helper does. ``despite_errors``: a guest whose files went bad since it
    was registered is still seen and stopped, from what its name and pid file tell (the problems
    are said on stderr first)."""
    from .runtime import control
    try:
        entry, guest = inventory.guest(name)
        gc = inventory.control(entry, guest)
    except ConfigError as exc:
        if not despite_errors:
            raise
        entry = inventory.registry.get(name)  # an unreadable registry: nothing to fall back on
        report(exc.problems)
        gc = inventory.bare_control(entry.name)
        warn(f"qemu-init: {gc.name}: its files have errors; using its pid file and control socket")
    try:
        yield gc, control
    except GuestError as exc:  # named once: the guest's service may have named it already
        said = str(exc)
        raise GuestError(said if said.startswith(f"{gc.name}: ") else f"{gc.name}: {said}", exc.exit_code) from None


def _progress(name: str):  # type: ignore[no-untyped-def]
    return lambda step: warn(f"{name}: {step.plain()}")


def _start(inventory: Inventory, gc, control, bridges: Sequence[str] = ()) -> None:  # type: ignore[no-untyped-def]
    """Start a guest through its installed service (owner), as qemud does at boot."""
    from . import owner
    if runs(gc):
        control.start(gc)  # says it already runs, as its script would
        return
    owner.start_guest(inventory.paths, gc.name, lambda: control.start(gc), echo, bridges=bridges, warn=warn)


def _stop(inventory: Inventory, gc, control, timeout: Optional[float] = None,  # type: ignore[no-untyped-def]
          force: bool = False, save: bool = False) -> None:
    """Stop a guest through its installed service (owner). With --timeout or --force, which its
    service has no way to pass on, the helper stops it here; its service then records that.
    By hand a guest shuts down, whatever its ONSHUTDOWN says, unless ``save``. Where that is not
    what its service's stop does anyway (ONSHUTDOWN), it is asked of that stop by a request
    file (runtime/onstop.py), written and withdrawn under the guest's lock, as start and stop
    hold it: so it never races another stop's request, and only our own is withdrawn."""
    from .runtime import onstop
    from .runtime.lock import locked
    wanted = "save" if save else "shutdown"
    if save and force:
        raise QemuInitError(f"{gc.name}: --save and --force do not go together: a forced stop saves nothing")
    if force or not gc.statefile or _does_unasked(inventory, gc, wanted):
        _stop_guest(inventory, gc, control, timeout, force)  # (a forced stop never saves)
        return
    wait = gc.stopdelay + control.LOCK_SLACK
    with locked(gc.lock, wait):  # a user who may not take it is told so, as by any stop
        try:
            asked = onstop.request(gc.statefile, wanted)
        except OSError as e:
            raise GuestError(f"{e.filename or gc.statefile}: {e.strerror}: cannot ask its stop to"
                             f" {'save' if save else 'shut it down'}") from None
    try:
        _stop_guest(inventory, gc, control, timeout, force)
    finally:
        try:
            with locked(gc.lock, wait):
                onstop.withdraw(gc.statefile, asked)
        except GuestError as e:  # the stop's own outcome, not this, is what the caller hears
            warn(f"qemu-init: {gc.name}: the request {gc.statefile + onstop.ONSTOP} is left for its next stop: {e}")


def _does_unasked(inventory: Inventory, gc, wanted: str) -> bool:  # type: ignore[no-untyped-def]
    """Whether the guest's stop does ``wanted`` (save, shutdown) without a request: its files'
    ONSHUTDOWN says so, and so does its installed script's (as install recorded it: the files
    may have changed since; the service's stop runs the script)."""
    from .runtime import onstop
    if onstop.mode(gc.onshutdown) != wanted:
        return False
    return onstop.mode(str(inventory.recorded_stop(gc.name).get("onshutdown", gc.onshutdown))) == wanted


def _stop_guest(inventory: Inventory, gc, control, timeout: Optional[float],  # type: ignore[no-untyped-def]
                force: bool) -> None:
    from . import owner
    direct = lambda: control.stop(gc, timeout=timeout, force=force, progress=_progress(gc.name))  # noqa: E731
    if timeout is None and not force:
        owner.stop_guest(inventory.paths, gc.name, direct, lambda: runs(gc), echo, warn=warn)
        return
    direct()
    owner.stop(inventory.paths, owner.detect_init(), gc.name)  # nothing left to stop: just the record


def start(inventory: Inventory, name: str, discard_state: bool = False) -> int:
    with _guest(inventory, name) as (gc, control):
        if discard_state and not runs(gc):
            from .runtime import savestate
            if savestate.discard(gc.statefile):
                control.log(gc, f"saved state {gc.statefile} discarded (--discard-state)")
                echo(f"{gc.name}: saved state discarded")
        _start(inventory, gc, control, inventory.guest(name)[1].bridges)
    return 0


def stop(inventory: Inventory, name: str, timeout: Optional[float] = None, force: bool = False,
         save: bool = False) -> int:
    with _guest(inventory, name, despite_errors=True) as (gc, control):
        _stop(inventory, gc, control, timeout, force, save)
    return 0


def restart(inventory: Inventory, name: str) -> int:
    with _guest(inventory, name) as (gc, control):
        _stop(inventory, gc, control)
        _start(inventory, gc, control, inventory.guest(name)[1].bridges)
    return 0


def status(inventory: Inventory, name: str, as_json: bool = False) -> int:
    """LSB's exit code: 0 running, 1 dead, 3 stopped, 4 unknown."""
    try:
        if as_json:
            from . import state
            guest = state.guest_state(inventory, inventory.registry.get(name),
                                      {n.lower() for n in inventory.registry.autostart()})
            emit_json(guest)
            codes = {**{v: k for k, v in state.STATES.items()}, state.SAVED: 3}
            return codes.get(str(guest["state"]), 0)
        with _guest(inventory, name, despite_errors=True) as (gc, control):
            from .runtime.status import line as status_line
            st = control.status(gc, agent=True)  # a record, its line made here
            code, line = st.code, status_line(gc.name, st)
    except ConfigError as exc:
        report(exc.problems)
        return 4  # LSB: status unknown
    except QemuInitError as exc:
        warn(f"qemu-init: {exc}")
        return 4
    echo(line)
    return code


def run_state(inventory: Inventory, name: str, action: str) -> int:
    """pause, resume or reset."""
    with _guest(inventory, name) as (gc, control):
        return control.run_state(gc, action)


def console(inventory: Inventory, name: str, tail: Optional[int] = None) -> int:
    """The serial console session, or (``tail``: a count, 0 for all) the end of its log."""
    with _guest(inventory, name, despite_errors=True) as (gc, control):
        from .runtime import console as guest_console
        if not (gc.console_log if tail is not None else gc.console):
            raise GuestError("has no console: CONSOLE=no, or its cfg-file sets -serial")
        if tail is not None:
            return guest_console.tail(gc.console_log, max(tail, 0), lock=gc.lock)
        return guest_console.attach(gc.name, gc.console, gc.console_log, lock=gc.lock)


def monitor(inventory: Inventory, name: str, command: Sequence[str] = ()) -> int:
    with _guest(inventory, name) as (gc, control):
        from .runtime.monitor import monitor as session
        return session(gc, " ".join(command) if command else None)


def list_guests(inventory: Inventory, as_json: bool = False) -> int:
    from . import state
    guests = state.states(inventory)
    if as_json:
        emit_json(guests)
        return 0
    rows = [[str(g["number"]), g["name"], "yes" if g["autostart"] else "no",
             str(g["state"]) + (" (files have errors)" if g["problem"] else ""), g["folder"]] for g in guests]
    if rows:
        table(rows, ["NR", "NAME", "AUTOSTART", "STATE", "FOLDER"])
    else:
        none_registered(inventory.paths.etcdir)
    return 0


def qemud_start(inventory: Inventory) -> int:
    from . import hostsvc
    return hostsvc.start(inventory)


def qemud_stop(inventory: Inventory) -> int:
    from . import hostsvc
    return hostsvc.stop(inventory)


def qemud_status(inventory: Inventory, as_json: bool = False) -> int:
    """Exit 0 while every autostart guest runs, else 3."""
    from . import state
    guests: List[dict] = state.states(inventory)
    if as_json:
        emit_json(guests)
    elif guests:
        table([[g["name"], g["state"], str(g["pid"] or "-"), "yes" if g["autostart"] else "no",
                "files have errors: qemu-init check" if g["problem"] else g["description"]] for g in guests],
              ["NAME", "STATE", "PID", "AUTOSTART", "DESCRIPTION"], cut=True)
    else:
        none_registered(inventory.paths.etcdir)
    # LSB: the service is "running" (0) while every autostart guest runs, else "not running" (3).
    return 0 if all(g["pid"] for g in guests if g["autostart"]) else 3
