"""``qemu-init-helper``: the lean command the generated init scripts call.

    qemu-init-helper start NAME --pidfile P --qmp S --lock K --log L --runas U [--hmp M]
        [--stopdelay N] [--rcfile F[=SHA256]] [--source PATH=SHA256]... [--precmd CMD]
        [--postcmd CMD] [--tap IF=BRIDGE]... [--vnc ADDR:N] [--monitor ADDR:PORT]
        [--statefile STATE] [--savetime N] -- QEMU_ARGV...
    qemu-init-helper stop NAME --pidfile P --qmp S --lock K --log L --runas U [--hmp M]
        --stopdelay N [--tap IF]... [--statefile STATE] [--onshutdown save|shutdown]
        [--savetime N] [--timeout S] [--force] [-q|--quiet]
    qemu-init-helper status NAME --pidfile P --qmp S --runas U [--lock K] [--hmp M] [--vnc ADDR:N]
        [--monitor ADDR:PORT] [--statefile STATE]   (exit: LSB)
    qemu-init-helper pause|resume|reset NAME --qmp S [--log L]
    qemu-init-helper monitor NAME --qmp S [COMMAND...]
    qemu-init-helper console NAME --console C [--console-log CL] [--lock K] [--tail [N]]
(start and stop also take [--console C] [--console-log CL] [--agent A]: the serial console's
socket and log, the guest agent's socket; status takes --console-log)

The options are defined once, in helperargs.py (the scripts' words come from there too).
Everything arrives on the command line: the helper never reads guest configuration, so what the
admin reads in the script is exactly what runs. ``--debug`` (anywhere before ``--``) shows the
traceback of an internal error. Standard library only, heavy modules imported late: this runs at
every boot, shutdown and status.
"""

from __future__ import annotations

import os
import sys

from ..errors import QemuInitError
from . import helperargs

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import List, Optional, Sequence

_ACTIONS = {  # name: help
    "start": "start the guest unless it runs",
    "stop": "stop the guest: power button, then quit, SIGTERM, SIGKILL",
    "status": "one line of status; the exit code is LSB's",
    "pause": "pause the guest's CPUs (QMP stop)",
    "resume": "resume a paused guest (QMP cont)",
    "reset": "reset the guest at once, as its reset button (QMP system_reset)",
    "monitor": "a human monitor command, or a session without one",
    "console": "attach to the guest's serial console (Ctrl-] detaches), or print its log",
}


def _columns() -> int:
    """shutil.get_terminal_size().columns, without importing shutil (see _formatter)."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


def _formatter(prog: str):  # type: ignore[no-untyped-def]
    """argparse's own formatter, as wide as it would make itself. argparse makes one for every
    option it is given, and left to itself imports shutil (with bz2, lzma, threading: ~2 ms) to
    measure the terminal, even when no help is ever printed."""
    import argparse
    return argparse.HelpFormatter(prog, width=_columns() - 2)


def _parser(chosen: Optional[str] = None):  # type: ignore[no-untyped-def]
    """The command line parser. Given the action the command line names, only that action's
    subparser is built: each one costs argparse a parser and a formatter per option, and the other
    actions' are never used. Without a known action, every action without its options: enough for
    the overview (--help) and "invalid choice"."""
    import argparse
    parser = argparse.ArgumentParser(
        prog="qemu-init-helper", description="Start, stop and query one QEMU guest (called by "
        "the init scripts qemu-init generates).", epilog="--debug: show the traceback of an "
        "internal error. QEMU's command line follows '--' (start only).", formatter_class=_formatter)
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    for name, help in _ACTIONS.items():
        if chosen in _ACTIONS and name != chosen:
            continue
        p = actions.add_parser(name, help=help, description=help, formatter_class=_formatter)
        if chosen == name:
            p.add_argument("name", metavar="NAME", help="the guest (QEMU -name)")
            helperargs.add_options(name, p)
            if name == "monitor":
                p.add_argument("command", nargs="*", metavar="COMMAND", help="e.g. info status")
            if name == "console":
                p.add_argument("--tail", nargs="?", type=int, const=20, metavar="N",
                               help="print the last N lines of the log (default 20; 0: all) instead")
    return parser


def _run(args, rest: List[str]) -> int:  # type: ignore[no-untyped-def]
    from . import control

    gc = control.GuestControl(**helperargs.values_of(args.action, args), argv=tuple(rest))
    if args.action == "monitor":
        from .monitor import monitor
        words = list(args.command) + rest
        return monitor(gc, " ".join(words) if words else None)
    if args.action in ("pause", "resume", "reset"):
        return control.run_state(gc, args.action)
    if args.action == "console":
        from . import console
        if args.tail is not None:
            if not gc.console_log:
                raise QemuInitError("--tail needs --console-log")
            return console.tail(gc.console_log, max(args.tail, 0), lock=gc.lock)
        return console.attach(gc.name, gc.console, gc.console_log, lock=gc.lock)
    if args.action == "status":
        from .status import line
        st = control.status(gc)  # never the guest agent: init scripts' status is quick and calm
        print(line(gc.name, st))
        return st.code
    if args.action == "start":
        return control.start(gc)

    def progress(step) -> None:  # type: ignore[no-untyped-def]
        print(f"{gc.name}: {step.plain()}", flush=True)

    return control.stop(gc, timeout=args.timeout, force=args.force,
                        progress=None if args.quiet else progress)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: List[str] = []
    if "--" in argv:  # QEMU's argv goes through untouched, options and all
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1:]
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = helperargs.fast(argv)  # the scripts' start, stop and status: without argparse
    if args is None:
        parser = _parser(argv[0] if argv else None)  # the scripts name the action first
        # known_args: "monitor NAME --qmp S info status" puts the command words after an option,
        # which plain parse_args refuses
        args, extra = parser.parse_known_args(argv)
        if extra and args.action != "monitor":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        rest = extra + rest
    if rest and args.action not in ("start", "monitor"):
        print(f"qemu-init-helper {args.action}: unexpected arguments after '--'", file=sys.stderr)
        return 2
    name = args.name
    try:
        return _run(args, rest)
    except QemuInitError as e:
        message = " ".join(str(e).split("\n"))
        print(f"qemu-init: {name}: {message}", file=sys.stderr)
        return int(getattr(e, "exit_code", 1))
    except OSError as e:  # the host refused something (permissions, a missing folder)
        import errno
        where = f"{e.filename}: " if e.filename else ""
        print(f"qemu-init: {name}: {where}{e.strerror or e}", file=sys.stderr)
        return 4 if e.errno in (errno.EACCES, errno.EPERM) else 1
    except KeyboardInterrupt:
        print(f"qemu-init: {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line, unless asked for the traceback
        if debug:
            import traceback
            traceback.print_exc()
        else:
            print(f"qemu-init: {name}: internal error: {type(e).__name__}: {e} "
                  "(run with --debug for a traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
