"""What a start checks and runs before and after QEMU: the files the script was generated from
(a warning when they changed), and PRECMD/POSTCMD, which run as root only from a trusted rc-file.

``gc`` is anything with ``name``, ``rcfile`` and ``sources`` (a control.GuestControl).
"""

from __future__ import annotations

from ..errors import GuestError
from .guestlog import warn


def check_sources(gc) -> None:  # type: ignore[no-untyped-def]
    """A warning for each file the script was made from that changed (or cannot be read)."""
    import hashlib
    from .. import trust
    for path, digest in gc.sources:
        try:  # never through a FIFO (a hang holding the lock) or /dev/zero (no end)
            actual = hashlib.sha256(trust.read_file(path)).hexdigest()
        except trust.TrustError as e:
            warn(gc, f"{e} (the script was generated from it)")
            continue
        except OSError as e:
            warn(gc, f"{path}: {e.strerror} (the script was generated from it)")
            continue
        if actual != digest.lower():
            warn(gc, f"{path}: changed since the script was generated; regenerate")


def check_rcfile(gc) -> None:  # type: ignore[no-untyped-def]
    """PRECMD/POSTCMD run as root: only if nobody but root (or us) can have written them, i.e.
    the rc-file may be trusted by the whole trust rule (qemu_init/trust.py): a regular file
    owned by root/us, writable by nobody else, in folders that are too all the way up to /.
    Checked now, at start: a folder swapped since the script was generated counts."""
    from .. import trust
    if not gc.rcfile:
        raise GuestError("PRECMD/POSTCMD given without --rcfile: refusing to run them")
    try:
        trust.read_file(gc.rcfile)
    except trust.TrustError as e:
        raise GuestError(f"{e}: refusing to run PRECMD/POSTCMD")
    except OSError as e:
        raise GuestError(f"{e.filename or gc.rcfile}: {e.strerror}: refusing to run PRECMD/POSTCMD")


def run(command: str) -> int:
    """A hook, with /bin/sh -c and no stdin; its exit code."""
    import subprocess
    return subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, check=False).returncode
