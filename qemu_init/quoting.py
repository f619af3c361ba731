"""The quoting filters: the only way a value reaches a generated script or unit.

``sh`` for POSIX sh words, ``unit`` for systemd ``Exec*=`` words, ``unittext`` for other unit
settings, ``comment`` for ``#`` lines; ``shjoin``/``unitjoin`` for word lists and
``shlines``/``unitlines`` for a command printed one option with its value a line (the helper
calls, runtime/helperargs.lines). render.py hands them to every template.
"""

from __future__ import annotations

import shlex
from typing import Any, Iterable


def sh(value: Any) -> str:
    """One POSIX sh word that stands for exactly ``value``."""
    return shlex.quote(str(value))


def shjoin(words: Iterable[Any]) -> str:
    return " ".join(sh(w) for w in words)


def shlines(lines: Iterable[Iterable[Any]], tabs: int = 1) -> str:
    """A command as lines of words (a helper call: runtime/helperargs.lines), each line's words
    quoted and joined, the lines continued with a backslash and indented by ``tabs`` tabs."""
    return (" \\\n" + "\t" * tabs).join(shjoin(words) for words in lines)


# systemd ends a unit line at \n, \r and NUL; other non-printable characters (C0, DEL, C1 such as
# U+0085, U+2028/2029) are escaped as well, so no value can ever start a line of its own.
_UNIT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _c_escape(char: str) -> str:
    """A non-printable character as a C escape that systemd's unquoting gives back (``\\xNN``
    only below 0x80: above, systemd would take it for a raw byte, not a code point)."""
    code = ord(char)
    if char in _UNIT_ESCAPES:
        return _UNIT_ESCAPES[char]
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def unit(value: Any) -> str:
    """One word of a systemd ``Exec*=`` line: ``$``/``%`` doubled, quoted when needed, every
    non-printable character C-escaped inside the quotes."""
    text = str(value).replace("%", "%%").replace("$", "$$")
    if text and text.isprintable() and not any(c in text for c in " \"';\\"):
        return text
    return '"' + "".join(_unit_quoted(c) for c in text) + '"'


def _unit_quoted(char: str) -> str:
    if not char.isprintable():
        return _c_escape(char)
    return "\\" + char if char in "\\\"" else char


def unitjoin(words: Iterable[Any]) -> str:
    return " ".join(unit(w) for w in words)


def unitlines(lines: Iterable[Iterable[Any]], tabs: int = 1) -> str:
    """shlines for a systemd Exec*= line."""
    return (" \\\n" + "\t" * tabs).join(unitjoin(words) for words in lines)


def unittext(value: Any) -> str:
    """A unit setting's whole value (Description=, PIDFile=): one line, ``%`` doubled, no
    trailing backslash (it would continue the line). Whitespace runs (line breaks included)
    become one space; any other non-printable character is written as its C escape, as text:
    these settings are not unescaped, but a NUL or a lone control character must not reach the file."""
    text = " ".join(str(value).replace("%", "%%").split())
    return "".join(c if c.isprintable() else _c_escape(c) for c in text).rstrip("\\ ")


def comment(value: Any) -> str:
    """Text safe inside a ``#`` comment line (no line breaks can end the comment, and no trailing
    backslash can continue it in a systemd unit; no NUL or other control character, at which
    systemd would end the line)."""
    text = " ".join(str(value).split())
    return "".join(c if c.isprintable() else _c_escape(c) for c in text).rstrip("\\ ")
