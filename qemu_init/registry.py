"""The registry of guests (SPEC §4): ETCDIR/registered, ETCDIR/autostart and permanent numbers.

``registered`` holds one ``NUMBER NAME FOLDER`` line per guest. A guest's number is handed out
once, at registration, from a counter that only grows, so monitor port, VNC display and tap
names never change when another guest comes or goes. Every change happens under an exclusive
``flock`` and lands by atomic rename, so concurrent ``register`` calls lose nothing and a reader
never sees half a file.

The files are root's, but hand-edited ones are read as text that may be anything: invalid UTF-8,
NUL bytes, garbage lines, a number out of range. Each such file is one ``file:line:`` Problem
(a ConfigError) for every command that reads it, never an internal error; a bad ``registered``
stops every command, since no guest's number can be trusted then.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from .records import record as dataclass  # @record: dataclasses' decorator without its import cost (records.py)
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: ~4 ms of every command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from . import values
from .errors import ConfigError, Problem, RegistryError
from .files import write_atomic
from .paths import Paths
from .trust import read_file

_HEADER = "# Registered qemu-init guests: NUMBER NAME FOLDER. Managed by `qemu-init register`.\n"
_AUTOSTART_HEADER = "# Guests the host service starts at boot, in this order. `qemu-init autostart`.\n"
NUMBER_MAX = 999999  # tap names are qiNUMBERnINDEX: at most 15 characters (IFNAMSIZ)


@dataclass(frozen=True)
class Entry:
    number: int
    name: str
    folder: str

    @property
    def rcfile(self) -> str:
        return os.path.join(self.folder, f"{self.name.lower()}-qemud.rc")


def _lines(path: str) -> List[Tuple[int, str]]:
    """The (line number, text) of each line that is neither blank nor a comment."""
    try:
        data = read_file(path)  # only a file root may trust (trust.py)
    except FileNotFoundError:
        return []
    return _text_lines(path, data)


def _text_lines(path: str, data: bytes) -> List[Tuple[int, str]]:
    """``data`` as the (line number, text) of its meaningful lines; a file that is not text is
    one Problem at the first line that shows it."""
    result = []
    for number, raw in enumerate(data.split(b"\n"), 1):
        if b"\0" in raw:
            raise _bad(path, number, "a NUL byte: not a text file")
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise _bad(path, number, "not UTF-8 text") from None
        if line and not line.startswith("#"):
            result.append((number, line))
    return result


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes of a file name (surrogate escapes)
        return False
    return True


def _bad(path: str, line: int, message: str) -> ConfigError:
    return ConfigError([Problem(path, line, None, message)])


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _number(text: str, top: int = NUMBER_MAX) -> Optional[int]:
    """A guest number (1 to ``top``, plain ASCII digits), or None."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(top)):
        return None
    return int(text) if 1 <= int(text) <= top else None


def _entries(path: str, lines: List[Tuple[int, str]]) -> List[Entry]:
    """The lines of ``registered`` as entries; the first bad line is the error."""
    result: List[Entry] = []
    numbers: Dict[int, Tuple[int, str]] = {}
    names: Dict[str, int] = {}
    for line, text in lines:
        fields = text.split(None, 2)
        if len(fields) != 3 or not fields[0].isascii() or not fields[0].isdigit():
            raise _bad(path, line, f"not NUMBER NAME FOLDER: {_shown(text)}")
        number, name, folder = _number(fields[0]), fields[1], fields[2]
        if number is None:
            raise _bad(path, line, f"guest number {_shown(fields[0])}: numbers run from 1 to {NUMBER_MAX}")
        try:
            values.name(name)
        except ValueError as exc:
            raise _bad(path, line, f"not a guest name: {exc}") from None
        if not os.path.isabs(folder):
            raise _bad(path, line, f"{name}: the folder is not an absolute path: {_shown(folder)}")
        if number in numbers:
            raise _bad(path, line, f"{name}: number {number} is also {numbers[number][1]}'s (line {numbers[number][0]})")
        if name.lower() in names:
            raise _bad(path, line, f"{name}: registered again (first on line {names[name.lower()]};"
                                   " names are compared in lower case)")
        numbers[number], names[name.lower()] = (line, name), line
        result.append(Entry(number, name, folder))
    return result


class Registry:
    def __init__(self, paths: Paths):
        self.paths = paths
        self._cache: Tuple[Optional[Tuple[int, int, int]], List[Entry]] = (None, [])

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        os.makedirs(self.paths.etcdir, exist_ok=True)
        fd = os.open(self.paths.registry_lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # Reading needs no lock: files are only ever replaced whole.
    def entries(self) -> List[Entry]:
        # Parsed once per version of the file (a new version is a new inode: atomic rename),
        # so callers may ask as often as they like.
        try:
            st = os.stat(self.paths.registered)
            version: Optional[Tuple[int, int, int]] = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            version = None
        if version is None or version != self._cache[0]:
            self._cache = (version, self._parse())
        return list(self._cache[1])

    def _parse(self) -> List[Entry]:
        return _entries(self.paths.registered, _lines(self.paths.registered))

    def find(self, name: str) -> Optional[Entry]:
        return next((e for e in self.entries() if e.name.lower() == name.lower()), None)

    def get(self, name: str) -> Entry:
        entry = self.find(name)
        if entry is None:
            raise RegistryError(f"{name}: not a registered guest (see `qemu-init list`)")
        return entry

    def autostart(self) -> List[str]:
        return [name for _, name in self._autostart_lines()]

    def _autostart_lines(self) -> List[Tuple[int, str]]:
        path = self.paths.autostart
        lines = _lines(path)
        for line, name in lines:
            try:
                values.name(name)
            except ValueError as exc:
                raise _bad(path, line, f"not a guest name: {exc}") from None
        return lines

    def problems(self) -> List[Problem]:
        """What `check` says of the three files: each one's first bad line, and the autostart
        lines that name no registered guest or one guest again."""
        found: List[Problem] = []

        def attempt(read: Callable[[], Any]) -> Any:
            try:
                return read()
            except ConfigError as exc:
                found.extend(exc.problems)
                return None

        entries = attempt(self.entries)
        attempt(self._next_number)
        listed = attempt(self._autostart_lines) or []
        names = None if entries is None else {e.name.lower() for e in entries}
        seen: Dict[str, int] = {}
        for line, name in listed:
            first = seen.setdefault(name.lower(), line)
            if first != line:
                found.append(Problem(self.paths.autostart, line, None, f"{name!r} is listed again (first on"
                                     f" line {first}; names are compared in lower case)"))
            elif names is not None and name.lower() not in names:
                found.append(Problem(self.paths.autostart, line, None, f"{name!r} is not a registered guest"))
        return found

    def add(self, name: str, folder: str) -> Entry:
        """Register ``name`` living in ``folder``; idempotent for the same guest and folder."""
        return self.add_all([(name, folder)])[0]

    def add_all(self, guests: List[Tuple[str, str]]) -> List[Entry]:
        """Register (name, folder) pairs under one lock with one write, however many they are."""
        with self.locked():
            entries = self.entries()
            by_name = {e.name.lower(): e for e in entries}
            number = max([self._next_number()] + [e.number + 1 for e in entries])
            result = []
            for name, folder in guests:
                folder = os.path.abspath(folder)
                if "\n" in folder or not folder.isprintable() or not _utf8(folder):
                    raise RegistryError(f"{folder!r}: a folder name with a line break, a control character"
                                        " or bytes that are not UTF-8 cannot be registered")
                known = by_name.get(name.lower())
                if known is None:
                    if number > NUMBER_MAX:
                        raise RegistryError(f"{name}: no guest numbers left (the last is {NUMBER_MAX})")
                    known = by_name[name.lower()] = Entry(number, name, folder)
                    entries.append(known)
                    number += 1
                elif known.folder != folder or known.name != name:
                    raise RegistryError(f"{name}: name already registered as {known.name} in {known.folder}")
                result.append(known)
            if len(entries) > len(self.entries()):
                self._write(entries)
                write_atomic(self.paths.number_file, f"{number}\n")
            return result

    def remove(self, name: str) -> Entry:
        with self.locked():
            entries = self.entries()
            entry = next((e for e in entries if e.name.lower() == name.lower()), None)
            if entry is None:
                raise RegistryError(f"{name}: not a registered guest")
            autostart = self.autostart()  # read before anything is written: a bad file stops it all
            self._write([e for e in entries if e is not entry])
            self._write_autostart([n for n in autostart if n.lower() != name.lower()])
            return entry

    def set_autostart(self, name: str, on: bool) -> None:
        with self.locked():
            entry = self.find(name)
            if entry is None:
                raise RegistryError(f"{name}: not a registered guest")
            current = self.autostart()
            listed = any(n.lower() == name.lower() for n in current)
            if on:  # keep the guest's place if it was already listed; else append
                names = current if listed else current + [entry.name]
            else:
                names = [n for n in current if n.lower() != name.lower()]
            self._write_autostart(names)

    def _next_number(self) -> int:
        path = self.paths.number_file
        lines = _lines(path)
        if not lines:
            return 1
        line, text = lines[0]
        number = _number(text, NUMBER_MAX + 1)  # the last number given out was NUMBER_MAX at most
        if number is None:
            raise _bad(path, line, f"not the next guest number (1 to {NUMBER_MAX + 1}): {_shown(text)}")
        if len(lines) > 1:
            raise _bad(path, lines[1][0], f"one number only, the next guest's: {_shown(lines[1][1])}")
        return number

    def _write(self, entries: List[Entry]) -> None:
        body = "".join(f"{e.number} {e.name} {e.folder}\n" for e in entries)
        write_atomic(self.paths.registered, _HEADER + body)

    def _write_autostart(self, names: List[str]) -> None:
        write_atomic(self.paths.autostart, _AUTOSTART_HEADER + "".join(n + "\n" for n in names))
