"""What the command line prints, and how its errors end a run: shared by the fast path
(``fastcli``) and the Typer app (``cli``), so both say the same words with the same exit codes.

Standard library only, and light: it is on the path of every everyday command.
"""

from __future__ import annotations

import os
import sys

from .errors import ConfigError, QemuInitError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see runtime/control.py)
if TYPE_CHECKING:
    from typing import Callable, List, Sequence

    from .errors import Problem

WIDTH = 100  # tables fit this many columns; details are in `status NAME` and `show NAME`
JSON_HELP = "Print JSON (schema: qemu-init(8), JSON OUTPUT)."


def echo(line: str = "", err: bool = False) -> None:
    """One line on stdout (or stderr), flushed: what click.echo did, without importing click."""
    stream = sys.stderr if err else sys.stdout
    stream.write(f"{line}\n")
    stream.flush()


def warn(line: str) -> None:
    echo(line, err=True)


def table(rows: List[List[str]], headers: List[str], cut: bool = False) -> None:
    """Columns two spaces apart. ``cut``: the last column (free text) ends at WIDTH with '…'."""
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    for row in [headers] + rows:
        line = "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
        echo(line[:WIDTH - 1] + "…" if cut and len(line) > WIDTH else line)


def emit_json(value: object) -> None:
    """--json: the schemas are in man/qemu-init.8 (JSON OUTPUT); keys are only ever added."""
    import json
    echo(json.dumps(value, indent=2))


def report(problems: Sequence[Problem], err: bool = True) -> None:
    for problem in problems:
        echo(str(problem), err=err)


def none_registered(etcdir: str) -> None:
    """No guest: and which configuration folder was looked at, and whether it exists."""
    where = etcdir if os.path.isdir(etcdir) else f"{etcdir} (no such folder)"
    echo(f"no guests registered in {where}; qemu-init new NAME, then qemu-init register PATH")


def guarded(run: Callable[[], int], debug: bool) -> int:
    """Run a command; every user error becomes its one line and exit code, as SPEC §8 says.
    Anything else is a bug: one line too (exit 70), unless ``debug`` asks for the traceback."""
    try:
        return run()
    except ConfigError as exc:
        report(exc.problems)
        return exc.exit_code
    except QemuInitError as exc:
        echo(f"qemu-init: {exc}", err=True)
        return exc.exit_code
    except OSError as exc:  # the host said no (permissions, a missing or read-only folder)
        where = f"{exc.filename}: " if exc.filename else ""
        echo(f"qemu-init: {where}{exc.strerror or exc}", err=True)
        return 1
    except KeyboardInterrupt:
        echo("qemu-init: interrupted", err=True)
        return 130
    except Exception as exc:  # a bug: one line, unless asked for more
        if debug:
            raise
        echo(f"qemu-init: internal error: {exc.__class__.__name__}: {exc} (run with --debug for a traceback)",
             err=True)
        return 70  # EX_SOFTWARE
