"""The helper's command line, defined once: every option of every verb, in one table.

From this table come the helper's parser (helper.py), the words each generated script passes
(qemu_init/helpercalls.py builds them from a guest's plan; the templates only print them, one
option with its value a line), control.GuestControl's fields, and the reading back of a
recorded stop command (Inventory.bare_control). Adding a helper option is one row here (and
the code that uses its value).

A row: the option (and its short form, after a space), the GuestControl field it sets (None: an option of the invocation only,
never in a script), the verbs that take it (``verb`` optional, ``verb!`` required), the kind of
value (``text``, ``seconds``, ``source``: PATH=SHA256, ``rcfile``: PATH[=SHA256], ``tap``:
IF[=BRIDGE], ``flag``), whether it repeats, its default, metavariable and help, and ``source``:
where the generator finds its value (``plan.X`` or ``guest.X``; None: not in scripts).

Standard library only, and nothing imported that a run does not need: this is read at every
helper run.
"""

from __future__ import annotations

from collections import namedtuple

from . import defaults

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

Option = namedtuple("Option", "flag field verbs kind repeat default metavar help source")

VERBS = ("start", "stop", "status", "pause", "resume", "reset", "monitor", "console")

OPTIONS = [
    Option("--pidfile", "pidfile", ("start!", "stop!", "status!"), "text", False, "", "P",
           "the pid file", "plan.pidfile"),
    Option("--qmp", "qmp", tuple(v + "!" for v in VERBS if v != "console"), "text", False, "", "S",
           "QEMU's control (QMP) socket", "plan.qmp"),
    Option("--lock", "lock", ("start!", "stop!", "status", "console"), "text", False, "", "K",
           "the lock file start and stop hold (status and console: trim the console log under it,"
           " if it is free)", "plan.lock"),
    Option("--log", "log", ("start!", "stop!", "pause", "resume", "reset"), "text", False, "", "L",
           "the guest log", "plan.log"),
    Option("--runas", "runas", ("start!", "stop!", "status!"), "text", False, "", "U",
           "the user QEMU runs as (a pid is the guest's only if it runs as U or root)", "plan.runas"),
    Option("--hmp", "hmp", ("start", "stop", "status"), "text", False, "", "M",
           "the human monitor's unix socket", "plan.hmp"),
    Option("--stopdelay", "stopdelay", ("start", "stop!"), "seconds", False, defaults.STOPDELAY, "N",
           "the guest's STOPDELAY: seconds it may take to power down (start: bounds the wait for a"
           " running stop)", "plan.stopdelay"),
    Option("--rcfile", "rcfile", ("start",), "rcfile", False, "", "F[=SHA256]",
           "the rc-file, whose ownership gates PRECMD/POSTCMD (and, with its SHA256, a source)",
           "guest.rcfile.path"),
    Option("--source", "sources", ("start",), "source", True, (), "PATH=SHA256",
           "a file the script was made from; warn if it changed", "guest.sources"),
    Option("--precmd", "precmd", ("start",), "text", False, "", "CMD",
           "run with /bin/sh -c before QEMU", "guest.precmd"),
    Option("--postcmd", "postcmd", ("start",), "text", False, "", "CMD",
           "run with /bin/sh -c once QEMU runs", "guest.postcmd"),
    Option("--tap", "taps", ("start", "stop"), "tap", True, (), "IF[=BRIDGE]",
           "a tap to make on BRIDGE for QEMU (start), to delete once it is gone", "plan.taps"),
    Option("--vnc", "vnc", ("start", "status"), "text", False, "", "ADDR:N",
           "the VNC display, for the status line", "plan.vnc_address"),
    Option("--monitor", "monitor", ("start", "status"), "text", False, "", "ADDR:PORT",
           "the human monitor's TCP address, for the status line", "plan.monitor_address"),
    Option("--statefile", "statefile", ("start", "stop", "status"), "text", False, "", "STATE",
           "the guest's saved state (runtime/savestate.py): restored by start, written by a saving stop",
           "plan.statefile"),
    Option("--onshutdown", "onshutdown", ("stop",), "text", False, "shutdown", "MODE",
           "save: save the guest's state to STATE instead of shutting it down (ONSHUTDOWN)",
           "plan.onshutdown"),
    Option("--savetime", "savetime", ("start", "stop"), "seconds", False, 0.0, "N",
           "seconds a save may take before it is given up for the power button (start: a restore,"
           " RAM over SAVESPEED as well)", "plan.savetime"),
    # the serial console's socket and log, the guest agent's socket (runtime/console.py, agent.py):
    # start makes them, stop asks the agent and removes them; the log is kept within its cap
    # under --lock (console.py), by status and console only when it is free
    Option("--console", "console", ("start", "stop", "console!"), "text", False, "", "C",
           "the serial console's unix socket", "plan.console"),
    Option("--console-log", "console_log", ("start", "stop", "status", "console"), "text", False, "", "CL",
           "the serial console's log, kept within its cap", "plan.console_log"),
    Option("--agent", "agent", ("start", "stop"), "text", False, "", "A",
           "the guest agent's unix socket (AGENT=yes): stop asks it first", "plan.agent"),
    Option("--timeout", "timeout", ("stop",), "seconds", False, None, "S",
           "wait S seconds instead of STOPDELAY", None),
    Option("--force", "force", ("stop",), "flag", False, False, None, "skip the power button", None),
    Option("--quiet -q", "quiet", ("stop",), "flag", False, False, None, "no progress lines", None),
]



# Options a verb took once and takes no more (each with a value): scripts installed before keep
# passing them until the next `qemu-init install`, so the helper still reads them, and ignores
# them. status asked the guest agent until issue 16's review (--agent).
RETIRED = {"status": ("--agent",)}


def options(verb: str) -> List[Tuple[Option, bool]]:
    """(option, required) of every option ``verb`` takes, in table order."""
    found = []
    for option in OPTIONS:
        if verb in option.verbs or verb + "!" in option.verbs:
            found.append((option, verb + "!" in option.verbs))
    return found


def control_fields() -> Dict[str, Any]:
    """GuestControl's fields (but the name, first, and QEMU's argv, last) with their defaults,
    in table order: every option a script passes."""
    return {o.field: o.default for o in OPTIONS if o.source is not None}


def _seconds_text(value: float) -> str:
    return f"{value:g}"


def _value_words(option: Option, verb: str, values: Mapping[str, Any]) -> List[str]:
    """The values ``option`` is given for ``verb`` (one per occurrence); none when unset."""
    value = values.get(option.field, option.default)
    if option.kind == "rcfile":  # carries its digest: the rc-file is the first source
        digest = dict(values.get("sources", ())).get(value) if value else None
        return [f"{value}={digest}" if digest else value] if value else []
    if option.kind == "source":
        rcfile = values.get("rcfile", "")
        return [f"{path}={digest}" for path, digest in value if path != rcfile]
    if option.kind == "tap":  # the start makes each tap on its bridge; others name the tap
        return [f"{tap}={bridge}" if verb == "start" and bridge else tap for tap, bridge in value]
    if option.kind == "flag" or value in ("", None):
        return []
    return [_seconds_text(value) if option.kind == "seconds" else str(value)]


def lines(verb: str, values: Mapping[str, Any], argv: Sequence[str] = ()) -> List[List[str]]:
    """The helper's command line for ``verb`` as lines of words: the verb and the guest's name,
    then each option with its value (``--opt=VALUE`` as one word when VALUE starts with "-"),
    then for start "--" and QEMU's command line, the program and each option with its value."""
    out = [[verb, values["name"]]]
    for option, required in options(verb):
        if option.source is None:
            continue  # the invocation's own (--timeout, --force): never in a script
        for word in _value_words(option, verb, values):
            out.append([f"{option.flag}={word}"] if word.startswith("-") else [option.flag, word])
    if argv:
        out.append(["--"])
        out += argv_lines(argv)
    return out


def words(verb: str, values: Mapping[str, Any], argv: Sequence[str] = ()) -> List[str]:
    return [word for line in lines(verb, values, argv) for word in line]


def argv_lines(argv: Sequence[str]) -> List[List[str]]:
    """A command line as a person writes it: the program, then each option with its value."""
    out = [[argv[0]]]
    for word in argv[1:]:
        last = out[-1]
        if len(out) > 1 and len(last) == 1 and last[0].startswith("-") and not word.startswith("-"):
            last.append(word)
        else:
            out.append([word])
    return out


# -- parsing ---------------------------------------------------------------------------------

def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also rejects nan
        import argparse  # here: a good value does not pay for it (fast())
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def _digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def _source(text: str) -> Tuple[str, str]:
    path, sep, digest = text.rpartition("=")
    if not sep or not path or not _digest(digest):
        import argparse
        raise argparse.ArgumentTypeError(f"expected PATH=SHA256, got {text!r}")
    return path, digest.lower()


def _rcfile(text: str) -> Tuple[str, str]:
    """PATH=SHA256, or a bare PATH (scripts generated before the rc-file carried its digest)."""
    path, sep, digest = text.rpartition("=")
    return (path, digest.lower()) if sep and path and _digest(digest) else (text, "")


def _tap(text: str) -> Tuple[str, str]:
    name, _, bridge = text.partition("=")
    return name, bridge


_TYPES = {"text": str, "seconds": _seconds, "source": _source, "rcfile": _rcfile, "tap": _tap}


def add_options(verb: str, parser, formatter=None) -> None:  # type: ignore[no-untyped-def]
    """``verb``'s options, as the table says, on an argparse (sub)parser."""
    for option, required in options(verb):
        kwargs: Dict[str, Any] = {"dest": option.field, "help": option.help}
        if option.kind == "flag":
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=_TYPES[option.kind], metavar=option.metavar)
            if option.repeat:
                kwargs.update(action="append", default=[])
            elif required:
                kwargs["required"] = True
            else:
                kwargs["default"] = option.default
        parser.add_argument(*option.flag.split(), **kwargs)
    import argparse  # imported already: ``parser`` is one of its
    for flag in RETIRED.get(verb, ()):
        parser.add_argument(flag, dest="retired_" + flag.strip("-"), help=argparse.SUPPRESS)


def values_of(verb: str, args) -> Dict[str, Any]:  # type: ignore[no-untyped-def]
    """The GuestControl fields an argparse result of ``verb`` gives (the invocation's own
    options left out): the rc-file's digest joins the sources, first."""
    out = {"name": args.name}
    for option, _ in options(verb):
        if option.source is not None:  # not the invocation's own (--timeout, --force)
            out[option.field] = getattr(args, option.field)
    if "rcfile" in out:
        path, digest = out["rcfile"]
        out["rcfile"] = path
        out["sources"] = ([(path, digest)] if digest else []) + list(out.get("sources", ()))
    for field in ("sources", "taps"):
        if field in out:
            out[field] = tuple(out[field])
    return out


FAST_VERBS = ("start", "stop", "status")  # what init systems run at every boot, shutdown and status


class Parsed:
    """A command line ``fast()`` read: the attributes argparse would give (``action``, ``name``
    and each option's field)."""

    def __init__(self, **fields: Any):
        self.__dict__.update(fields)


def fast(argv: Sequence[str]) -> Optional[Parsed]:
    """The command line of a start, stop or status as the generated scripts write it — the
    verb, NAME, then each option once (``--option VALUE``, repeatable ones repeated, flags
    alone) — read from the table without argparse, whose import and parser cost every helper
    run ~10 ms (more than the rest of a status). None for anything else (other verbs, --help,
    ``--option=VALUE``, abbreviations, a value that starts with "-", an option given twice, a
    value of the wrong kind, a missing option, another word): argparse then reads it, and says
    what is wrong. tests/unit/test_helperargs.py checks the two agree."""
    if len(argv) < 2 or argv[0] not in FAST_VERBS or argv[1].startswith("-"):
        return None
    verb = argv[0]
    taken = {}
    for option, required in options(verb):
        for flag in option.flag.split():
            taken[flag] = (option, required)
    found: Dict[str, Any] = {}
    words = iter(argv[2:])
    retired = RETIRED.get(verb, ())
    for word in words:
        if word in retired:
            value = next(words, None)
            if value is None or value.startswith("-"):
                return None
            continue
        if word not in taken:
            return None
        option, _ = taken[word]
        if option.kind == "flag":
            value: Any = True
        else:
            text = next(words, None)
            if text is None or text.startswith("-"):
                return None
            try:
                value = _TYPES[option.kind](text)
            except Exception:  # noqa: BLE001  (argparse.ArgumentTypeError: argparse says it)
                return None
        if option.repeat:
            found.setdefault(option.field, []).append(value)
        elif option.field in found:
            return None
        else:
            found[option.field] = value
    fields: Dict[str, Any] = {"action": verb, "name": argv[1]}
    for option, required in options(verb):
        if option.field in found:
            fields[option.field] = found[option.field]
        elif required:
            return None
        else:
            # as argparse: a default that is text goes through the option's kind ("" -> ("", ""))
            default = option.default
            fields[option.field] = [] if option.repeat else (
                _TYPES[option.kind](default) if isinstance(default, str) and option.kind != "flag" else default)
    return Parsed(**fields)


def parse(words: Sequence[str]) -> Dict[str, Any]:
    """The GuestControl fields of a helper command line (``lines``/``words`` read back, as
    install records the stop of each guest); ValueError if it is not one."""
    if not words or words[0] not in VERBS or "--" in words:
        raise ValueError(f"not a helper command line: {list(words)[:2]}")
    import argparse

    class Parser(argparse.ArgumentParser):  # no exit, no usage on stderr: a ValueError
        def error(self, message: str):  # type: ignore[no-untyped-def]
            raise ValueError(message)

    parser = Parser(prog=f"qemu-init-helper {words[0]}", add_help=False)
    parser.add_argument("name")
    add_options(words[0], parser)
    return values_of(words[0], parser.parse_args(list(words[1:])))
