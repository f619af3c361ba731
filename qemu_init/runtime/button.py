"""The power button, as a stop presses it: a paused guest (``pause``) cannot see it, so it is
resumed first. ``press`` is qemud stop's first press of every guest (hostsvc); ``resume`` is
what a stop does before its own first press (control.stop). ``gc``: anything with ``qmp``
(a control.GuestControl)."""

from __future__ import annotations

from ..errors import QMPError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

    from .stop import Transition


def _resume(q) -> bool:  # type: ignore[no-untyped-def]
    """Resume the guest on QMP connection ``q`` if it is paused; whether it was."""
    result = q.execute("query-status")
    if isinstance(result, dict) and result.get("status") == "paused":
        q.execute("cont")
        return True
    return False


def resume(gc, report: Callable[[Transition], None]) -> None:  # type: ignore[no-untyped-def]
    """Resume a paused guest before a stop presses its button: without this, every stop of a
    paused guest would wait out STOPDELAY and then force it off. Any failure here is left to
    the stop machine, which copes with every kind of QMP trouble."""
    from . import stop as stopmachine
    from .qmp import QMP
    try:
        with QMP(gc.qmp, 1.0) as q:
            if not _resume(q):
                return
    except QMPError:
        return
    report(stopmachine.Transition(stopmachine.WAIT, 0.0, "it was paused: resumed it"))


def press(gc, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    """Press the power button once, a paused guest resumed first, all on one QMP connection;
    whether the press got through. ``qemud stop`` presses every guest's button this way, then
    runs each stop with ``pressed=True``, which does not connect again before the machine's
    first resend (control.stop says why)."""
    from .qmp import QMP
    try:
        with QMP(gc.qmp, timeout) as q:
            _resume(q)
            q.execute("system_powerdown")
        return True
    except QMPError:
        return False
