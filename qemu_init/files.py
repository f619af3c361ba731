"""Writing files whole or not at all: what the registry, `new` and `install` all need."""

from __future__ import annotations

import contextlib
import os


def write_atomic(path: str, text: str, mode: int = 0o644, root_owned: bool = False,
                 sync_folder: bool = True) -> None:
    """Replace ``path`` with ``text`` atomically: a temporary file beside it is written, given
    its mode (and root as owner when asked and we are root), synced, then renamed over it, so
    an interrupted write leaves the old file whole and a reader never sees half a file.
    ``sync_folder=False`` leaves syncing the folder (which makes the rename durable) to the
    caller, who writes many files into it: see sync_folder()."""
    import tempfile  # here, not above: the everyday commands read the registry, never write it
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if root_owned and os.geteuid() == 0:
                os.fchown(handle.fileno(), 0, 0)
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_folder:
        sync_folder_of(path)


def sync_folder_of(path: str) -> None:
    """Make the renames into ``path``'s folder durable."""
    dirfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)
