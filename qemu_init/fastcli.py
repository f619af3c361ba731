"""The ``qemu-init`` command: the everyday commands without Typer.

Importing Typer and Click costs ~60–120 ms (more with the Typers that pull in rich), which the
commands run at every boot, shutdown and status would pay before doing anything. So this
module reads the command lines of those commands itself — only the well-formed ones, exactly as
the Typer app would read them — and runs them from ``guestcmds``, which the Typer app runs too.
Anything else goes to the Typer app (``cli.run``): every other command, ``--help``, ``--version``,
shell completion, and every command line that is not plainly right (a missing or extra
argument, an unknown or repeated option, a bad --timeout, ``--root`` naming no folder), so help,
completion and every usage error come from one place and read the same.

The table below is all there is to extend: a command added to the Typer app and not here still
works (through Typer); an option added there and not here does too — its command lines go to
Typer. tests/unit/test_fastcli.py checks that the table agrees with the Typer app, that both give
the same output and exit code, and that this path imports neither typer, click nor jinja2.
"""

from __future__ import annotations

import math
import os
import sys
from collections import namedtuple

from . import guestcmds
from .output import guarded
from .paths import ROOT_ENV

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional, Sequence, Tuple

FLAG, VALUE = "flag", "value"


class Command(namedtuple("Command", "names options rest run")):
    """``names``: how many NAME arguments (0 or 1); ``options``: {--option: FLAG or VALUE};
    ``rest``: whether more words may follow (monitor's COMMAND...); ``run(inventory, args,
    options)``: the exit code."""

    __slots__ = ()


def _seconds(text: str) -> Optional[float]:
    """--timeout S as the Typer app takes it (0 or more, finite), or None: let Typer say why not."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value and math.isfinite(value) else None


def _run_state(action: str) -> Command:
    return Command(1, {}, False, lambda inv, a, o: guestcmds.run_state(inv, a[0], action))


# Command path -> Command. Options' values arrive parsed (see _OPTION_VALUE).
COMMANDS: Dict[Tuple[str, ...], Command] = {
    ("list",): Command(0, {"--json": FLAG}, False, lambda inv, a, o: guestcmds.list_guests(inv, o["--json"])),
    ("status",): Command(1, {"--json": FLAG}, False, lambda inv, a, o: guestcmds.status(inv, a[0], o["--json"])),
    ("start",): Command(1, {"--discard-state": FLAG}, False,
                        lambda inv, a, o: guestcmds.start(inv, a[0], o["--discard-state"])),
    ("stop",): Command(1, {"--timeout": VALUE, "--force": FLAG, "--save": FLAG}, False,
                       lambda inv, a, o: guestcmds.stop(inv, a[0], o["--timeout"], o["--force"], o["--save"])),
    ("restart",): Command(1, {}, False, lambda inv, a, o: guestcmds.restart(inv, a[0])),
    ("pause",): _run_state("pause"),
    ("resume",): _run_state("resume"),
    ("reset",): _run_state("reset"),
    ("monitor",): Command(1, {}, True, lambda inv, a, o: guestcmds.monitor(inv, a[0], a[1:])),
    ("qemud", "start"): Command(0, {}, False, lambda inv, a, o: guestcmds.qemud_start(inv)),
    ("qemud", "stop"): Command(0, {}, False, lambda inv, a, o: guestcmds.qemud_stop(inv)),
    ("qemud", "status"): Command(0, {"--json": FLAG}, False,
                                 lambda inv, a, o: guestcmds.qemud_status(inv, o["--json"])),
}
_OPTION_VALUE: Dict[str, Callable[[str], object]] = {"--timeout": _seconds}

# Shell completion (Click's and Typer's) is asked for through the environment.
_COMPLETION_ENV = ("_QEMU_INIT_COMPLETE", "_TYPER_COMPLETE")

Parsed = namedtuple("Parsed", "root debug command args options")


def parse(argv: Sequence[str]) -> Optional[Parsed]:
    """A command line this path runs, or None: Typer's to read (and to explain)."""
    words = list(argv)
    root: Optional[str] = None
    debug = False
    while words and words[0].startswith("-"):  # the main options, before the command
        word = words.pop(0)
        if word == "--debug":
            debug = True
        elif word == "--root" and words and root is None:
            root = words.pop(0)
        elif word.startswith("--root=") and root is None:
            root = word[len("--root="):]
        else:
            return None  # --help, --version, completion options, anything unknown
    path = tuple(words[:2]) if words[:1] == ["qemud"] else tuple(words[:1])
    command = COMMANDS.get(path)
    if command is None:
        return None
    args: List[str] = []
    options: Dict[str, object] = {name: (False if kind == FLAG else None) for name, kind in command.options.items()}
    seen = set()
    rest = words[len(path):]
    while rest:
        word = rest.pop(0)
        if word.startswith("-") and word != "-":
            name, eq, value = word.partition("=")
            kind = command.options.get(name)
            if kind is None or name in seen or (kind == FLAG and eq):
                return None  # unknown, repeated or malformed: Typer's usage error
            seen.add(name)
            if kind == FLAG:
                options[name] = True
                continue
            if not eq:
                if not rest:
                    return None
                value = rest.pop(0)
            parsed = _OPTION_VALUE.get(name, str)(value)
            if parsed is None:
                return None
            options[name] = parsed
        else:
            args.append(word)
    if len(args) < command.names or (len(args) > command.names and not command.rest):
        return None
    if root is None:
        root = os.environ.get(ROOT_ENV) or None  # as Click reads envvar=: empty is unset
    if root and not os.path.isdir(root):
        return None  # Typer says "no such folder" as a usage error
    return Parsed(root, debug, path, args, options)


def main(argv: Optional[Sequence[str]] = None) -> None:
    sys.exit(run(sys.argv[1:] if argv is None else argv))


def run(argv: Sequence[str]) -> int:
    parsed = None if any(k in os.environ for k in _COMPLETION_ENV) else parse(argv)
    if parsed is None:
        from . import cli
        return cli.run(list(argv))

    def command() -> int:
        from .inventory import Inventory
        from .paths import host_paths
        return COMMANDS[parsed.command].run(Inventory(host_paths(parsed.root)), parsed.args, parsed.options)

    return guarded(command, parsed.debug)
