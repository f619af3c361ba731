"""The helper calls a guest's script makes, as words: built from the option table
(runtime/helperargs.py) and the guest's plan, so the four init systems' scripts, the runtime's
GuestControl and ``qemu-init start/stop`` all pass the same thing. Templates only print them.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: ~4 ms of every command
if TYPE_CHECKING:
    from typing import Any, Dict, List

from .cmdline import Plan
from .model import Guest, Source
from .runtime import helperargs

# The verbs a script calls the helper with (and "powerdown": `monitor … system_powerdown`).
SCRIPT_VERBS = ("start", "stop", "status", "pause", "resume", "reset", "monitor")


def _value(source: str, guest: Guest, plan: Plan) -> Any:
    """The value an option's ``source`` ("plan.taps", "guest.rcfile.path") names."""
    where, *attributes = source.split(".")
    value: Any = {"plan": plan, "guest": guest}[where]
    for attribute in attributes:
        value = getattr(value, attribute)
    if isinstance(value, tuple) and value and isinstance(value[0], Source):
        value = tuple((s.path, s.sha256) for s in value)
    return value


def values(guest: Guest, plan: Plan) -> Dict[str, Any]:
    """Every GuestControl field of this guest but its QEMU argv: what its script passes."""
    found: Dict[str, Any] = {"name": guest.name}
    for option in helperargs.OPTIONS:
        if option.source is not None:
            found[option.field] = _value(option.source, guest, plan)
    return found


def control(guest: Guest, plan: Plan):  # type: ignore[no-untyped-def]
    """The runtime's GuestControl of this guest: the same as its script gives the helper."""
    from .runtime.control import GuestControl
    return GuestControl(**values(guest, plan), argv=plan.argv)


def calls(guest: Guest, plan: Plan) -> Dict[str, List[List[str]]]:
    """verb -> the helper's words for it, as lines (the verb and the name, then one option with
    its value a line; start ends with "--" and QEMU's command line, one option a line)."""
    given = values(guest, plan)
    found = {verb: helperargs.lines(verb, given, plan.argv if verb == "start" else ())
             for verb in SCRIPT_VERBS}
    found["powerdown"] = found["monitor"] + [["system_powerdown"]]  # the power button, at once
    return found
