"""The registry of guests (SPEC §4): ETCDIR/registered, ETCDIR/autostart and permanent numbers.

``registered`` holds one ``NUMBER NAME FOLDER`` line per guest. A guest's number is handed out
once, at registration, from a counter that only grows, so monitor port, VNC display and tap
names never change when another guest comes or goes. Every change happens under an exclusive
``flock`` and lands by atomic rename, so concurrent ``register`` calls lose nothing and a reader
never sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

from .errors import RegistryError
from .files import write_atomic
from .paths import Paths
from .trust import read_file

_HEADER = "# Registered qemu-init guests: NUMBER NAME FOLDER. Managed by `qemu-init register`.\n"
_AUTOSTART_HEADER = "# Guests the host service starts at boot, in this order. `qemu-init autostart`.\n"


@dataclass(frozen=True)
class Entry:
    number: int
    name: str
    folder: str

    @property
    def rcfile(self) -> str:
        return os.path.join(self.folder, f"{self.name.lower()}-qemud.rc")


def _lines(path: str) -> List[str]:
    try:
        text = read_file(path).decode("utf-8")  # only a file root may trust (trust.py)
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


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
        result = []
        for number, line in enumerate(_lines(self.paths.registered), 1):
            fields = line.split(" ", 2)
            if len(fields) != 3 or not fields[0].isascii() or not fields[0].isdigit():
                raise RegistryError(f"{self.paths.registered}:{number}: not NUMBER NAME FOLDER: {line!r}")
            result.append(Entry(int(fields[0]), fields[1], fields[2]))
        return result

    def find(self, name: str) -> Optional[Entry]:
        return next((e for e in self.entries() if e.name.lower() == name.lower()), None)

    def get(self, name: str) -> Entry:
        entry = self.find(name)
        if entry is None:
            raise RegistryError(f"{name}: not a registered guest (see `qemu-init list`)")
        return entry

    def autostart(self) -> List[str]:
        return _lines(self.paths.autostart)

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
                if "\n" in folder:
                    raise RegistryError(f"{folder!r}: a folder name with a line break cannot be registered")
                known = by_name.get(name.lower())
                if known is None:
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
            self._write([e for e in entries if e is not entry])
            self._write_autostart([n for n in self.autostart() if n.lower() != name.lower()])
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
        lines = _lines(self.paths.number_file)
        return int(lines[0]) if lines and lines[0].isascii() and lines[0].isdigit() else 1

    def _write(self, entries: List[Entry]) -> None:
        body = "".join(f"{e.number} {e.name} {e.folder}\n" for e in entries)
        write_atomic(self.paths.registered, _HEADER + body)

    def _write_autostart(self, names: List[str]) -> None:
        write_atomic(self.paths.autostart, _AUTOSTART_HEADER + "".join(n + "\n" for n in names))
