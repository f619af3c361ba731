"""Readers: file text to located entries, no meaning attached and nothing ever expanded.

``read_assignments`` serves the rc-file and the host settings (KEY=VALUE); ``read_cfg`` the
cfg-file (device shorthands and raw QEMU options). Both return every problem they find.
"""

from __future__ import annotations

import re
import shlex
from .records import record as dataclass  # @record: dataclasses' decorator without its import cost (records.py)
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: ~4 ms of every command
if TYPE_CHECKING:
    from typing import List, Tuple, Union

from .errors import Problem

_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)")
_SHORTHAND = re.compile(r"(DSK|CDR|NIC)([0-9]+)\s*=(.*)")


@dataclass(frozen=True)
class Entry:
    """``KEY=value`` found at ``line`` of ``path``."""

    path: str
    line: int
    key: str
    value: str


@dataclass(frozen=True)
class Shorthand:
    """A numbered device shorthand of the cfg-file, e.g. ``DSK1=/srv/a.img``."""

    path: str
    line: int
    kind: str  # DSK, CDR, NIC
    index: int
    value: str


@dataclass(frozen=True)
class RawOptions:
    """QEMU options of one cfg-file line, split like a shell splits words, never expanded."""

    path: str
    line: int
    words: Tuple[str, ...]


# Control characters (tab aside) and Unicode line breaks: systemd and some terminals end a line
# at them, so a value holding one could start a line of its own in a generated unit.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def decode(path: str, data: bytes) -> Tuple[List[str], List[Problem]]:
    """UTF-8 lines of ``data``; a line with bytes that are not UTF-8, or with control characters,
    is reported and skipped."""
    lines, problems = [], []
    for number, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            problems.append(Problem(path, number, None, f"not UTF-8 text (byte {raw[exc.start]:#04x})"))
            line = ""
        bad = _CONTROL.search(line)
        if bad:
            problems.append(Problem(path, number, None, f"control character U+{ord(bad.group()):04X} in the line"))
            line = ""
        lines.append(line)
    if lines and lines[-1] == "":
        lines.pop()
    return lines, problems


def unquote(raw: str) -> str:
    """The value of ``KEY=raw``, nothing expanded.

    '…' or "…" quote literally. The first closing quote ends the value when only a `` # comment``
    (or nothing) follows it; otherwise the quote that ends the line does, so a value may hold
    quotes of its own. Unquoted, a `` #`` starts a comment.
    """
    raw = raw.strip()
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        if end < 0:
            raise ValueError(f"unterminated quote {quote}")
        rest = raw[end + 1:].strip()
        if not rest or rest.startswith("#"):
            return raw[1:end]
        if raw.endswith(quote):
            return raw[1:-1]
        raise ValueError(f"text after the closing quote: {rest!r}")
    if raw.startswith("#"):
        return ""
    match = re.search(r"\s#", raw)
    return raw[:match.start()].rstrip() if match else raw


def strip_comment(line: str) -> str:
    """``line`` without its comment: a ``#`` outside quotes at the start of a word, as in sh
    (``disk#2.img`` keeps its ``#``, which shlex's own comment handling would not)."""
    quote, i = "", 0
    while i < len(line):
        char = line[i]
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"':
                i += 1
        elif char in "'\"":
            quote = char
        elif char == "\\":
            i += 1
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
        i += 1
    return line


def read_assignments(path: str, data: bytes) -> Tuple[List[Entry], List[Problem]]:
    lines, problems = decode(path, data)
    entries = []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _ASSIGN.fullmatch(stripped)
        if not match:
            problems.append(Problem(path, number, None, f"not KEY=VALUE: {stripped[:60]!r}"))
            continue
        key = match.group(1)
        try:
            entries.append(Entry(path, number, key, unquote(match.group(2))))
        except ValueError as exc:
            problems.append(Problem(path, number, key, str(exc)))
    return entries, problems


def read_cfg(path: str, data: bytes) -> Tuple[List[Union[Shorthand, RawOptions]], List[Problem]]:
    lines, problems = decode(path, data)
    items: List[Union[Shorthand, RawOptions]] = []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _SHORTHAND.fullmatch(stripped)
        try:
            if match:
                kind, index, value = match.group(1), int(match.group(2)), unquote(match.group(3))
                items.append(Shorthand(path, number, kind, index, value))
            else:
                # shlex splits like sh but never expands $VAR, `…` or globs.
                words = tuple(shlex.split(strip_comment(stripped), comments=False, posix=True))
                if words:
                    items.append(RawOptions(path, number, words))
        except ValueError as exc:
            key = f"{match.group(1)}{match.group(2)}" if match else None
            message = str(exc)
            if message == "No closing quotation":
                message = "unterminated quote"
            problems.append(Problem(path, number, key, message))
    return items, problems
