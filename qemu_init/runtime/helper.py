"""``qemu-init-helper``: the lean command the generated init scripts call.

    qemu-init-helper start NAME --pidfile P --qmp S --lock K --log L --runas U [--hmp M]
        [--stopdelay N] [--rcfile F] [--source PATH=SHA256]... [--precmd CMD] [--postcmd CMD]
        [--tap IF=BRIDGE]... [--vnc TEXT] [--monitor TEXT] [--statefile STATE] -- QEMU_ARGV...
    qemu-init-helper stop NAME --pidfile P --qmp S --lock K --log L --runas U [--hmp M]
        --stopdelay N [--timeout S] [--force] [--tap IF]... [--quiet]
        [--statefile STATE [--onshutdown save] [--savetime N]]
    qemu-init-helper status NAME --pidfile P --qmp S --runas U [--vnc TEXT] [--monitor TEXT]
        [--statefile STATE]
        (exit: LSB)
    qemu-init-helper pause|resume|reset NAME --qmp S [--log L]
    qemu-init-helper monitor NAME --qmp S [COMMAND...]

Everything arrives on the command line: the helper never reads guest configuration, so what the
admin reads in the script is exactly what runs. ``--debug`` (anywhere before ``--``) shows the
traceback of an internal error. Standard library only, heavy modules imported late: this runs at
every boot, shutdown and status.
"""

from __future__ import annotations

import os
import sys

from ..errors import QemuInitError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import List, Optional, Sequence

_METAVARS = {"pidfile": "P", "qmp": "S", "lock": "K", "log": "L", "runas": "U"}
_ACTIONS = {  # name: (help, the paths it requires)
    "start": ("start the guest unless it runs", ("pidfile", "qmp", "lock", "log", "runas")),
    "stop": ("stop the guest: power button, then quit, SIGTERM, SIGKILL",
             ("pidfile", "qmp", "lock", "log", "runas")),
    "status": ("one line of status; the exit code is LSB's", ("pidfile", "qmp", "runas")),
    "pause": ("pause the guest's CPUs (QMP stop)", ("qmp",)),
    "resume": ("resume a paused guest (QMP cont)", ("qmp",)),
    "reset": ("reset the guest at once, as its reset button (QMP system_reset)", ("qmp",)),
    "monitor": ("a human monitor command, or a session without one", ("qmp",)),
}


def _seconds(text: str) -> float:
    import argparse
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def _source(text: str) -> tuple:
    import argparse
    path, sep, digest = text.rpartition("=")
    if not sep or not path or len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
        raise argparse.ArgumentTypeError(f"expected PATH=SHA256, got {text!r}")
    return path, digest.lower()


def _options(action: str, p) -> None:  # type: ignore[no-untyped-def]
    """The options of ``action`` beyond NAME and the paths it requires."""
    if action == "start":
        p.add_argument("--stopdelay", type=_seconds, default=40.0, metavar="N",
                       help="the guest's STOPDELAY (bounds the wait for a running stop)")
        p.add_argument("--rcfile", default="", metavar="F", help="rc-file whose ownership gates PRECMD/POSTCMD")
        p.add_argument("--source", type=_source, action="append", default=[], metavar="PATH=SHA256",
                       help="a file the script was made from; warn if it changed")
        p.add_argument("--precmd", default="", metavar="CMD", help="run with /bin/sh -c before QEMU")
        p.add_argument("--postcmd", default="", metavar="CMD", help="run with /bin/sh -c once QEMU runs")
    if action == "stop":
        p.add_argument("--stopdelay", type=_seconds, required=True, metavar="N",
                       help="seconds the guest may take to power down")
        p.add_argument("--timeout", type=_seconds, metavar="S", help="wait S seconds instead of STOPDELAY")
        p.add_argument("--force", action="store_true", help="skip the power button")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    if action in ("pause", "resume", "reset"):
        p.add_argument("--log", default="", metavar="L", help="the guest log, to note it in")
    if action == "monitor":
        p.add_argument("command", nargs="*", metavar="COMMAND", help="e.g. info status")
    if action in ("start", "stop"):
        p.add_argument("--tap", action="append", default=[], metavar="IF=BRIDGE",
                       help="tap to make on BRIDGE for QEMU (start), to delete once it is gone")
        p.add_argument("--hmp", default="", metavar="M", help="the human monitor's unix socket")
    if action in ("start", "stop", "status"):
        p.add_argument("--statefile", default="", metavar="STATE",
                       help="the guest's saved state: restored by start, written by a saving stop")
    if action == "stop":
        p.add_argument("--onshutdown", choices=("shutdown", "save"), default="shutdown",
                       help="save: save the guest's state instead of shutting it down (--statefile)")
        p.add_argument("--savetime", type=_seconds, default=0.0, metavar="N",
                       help="seconds a save may take before it falls back to shutting down")
    if action in ("start", "status"):
        p.add_argument("--vnc", default="", metavar="TEXT", help="for the status line")
        p.add_argument("--monitor", default="", metavar="TEXT", help="for the status line")


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
    for name, (help, paths) in _ACTIONS.items():
        if chosen in _ACTIONS and name != chosen:
            continue
        p = actions.add_parser(name, help=help, description=help, formatter_class=_formatter)
        if chosen == name:
            p.add_argument("name", metavar="NAME", help="the guest (QEMU -name)")
            for option in paths:
                p.add_argument(f"--{option}", required=True, metavar=_METAVARS[option])
            _options(name, p)
    return parser


def _run(args, rest: List[str]) -> int:  # type: ignore[no-untyped-def]
    from . import control

    if args.action == "monitor":
        from .monitor import monitor
        gc = control.GuestControl(name=args.name, qmp=args.qmp)
        words = list(args.command) + rest
        return monitor(gc, " ".join(words) if words else None)
    if args.action in ("pause", "resume", "reset"):
        return control.run_state(control.GuestControl(name=args.name, qmp=args.qmp, log=args.log),
                                 args.action)

    gc = control.GuestControl(
        name=args.name, pidfile=args.pidfile, qmp=args.qmp,
        lock=getattr(args, "lock", ""), log=getattr(args, "log", ""),
        stopdelay=getattr(args, "stopdelay", 40.0), runas=args.runas, hmp=getattr(args, "hmp", ""),
        taps=tuple(getattr(args, "tap", ())), precmd=getattr(args, "precmd", ""),
        postcmd=getattr(args, "postcmd", ""), rcfile=getattr(args, "rcfile", ""),
        sources=tuple(getattr(args, "source", ())), argv=tuple(rest),
        vnc=getattr(args, "vnc", ""), monitor=getattr(args, "monitor", ""),
        statefile=getattr(args, "statefile", ""), onshutdown=getattr(args, "onshutdown", "shutdown"),
        savetime=getattr(args, "savetime", 0.0))
    if args.action == "status":
        code, line = control.status(gc)
        print(line)
        return code
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
