"""What the runtime asks of the operating system, one small module per system.

- ``linux``: processes through ``/proc``, pidfds, taps through ``/dev/net/tun`` and ``ip``;
- ``freebsd``: processes through ``ps`` (FreeBSD mounts no procfs by default), taps through
  ``ifconfig`` and ``/dev/tapN``.

Each module offers the same few functions:

- ``process(pid)``: ``(argv, uids)`` of a live process (uids: real, effective, saved, …);
  None when there is no such process or it is a zombie; OSError when that cannot be told
  (no ``/proc``, no ``ps``): the caller then reports LSB 4 and touches nothing;
- ``pidfd(pid)``: a descriptor pinning the process, or None where the system has none;
- ``EXACT_ARGV``: whether ``process()``'s argv holds the process's words as they were given;
- ``open_taps(taps, first_fd)``, ``tap_exists(tap)``, ``delete_taps(taps)`` (see launch.py).

The system is the one we run on (``sys.platform``); ``QEMU_INIT_PLATFORM=linux|freebsd``
overrides it, which is how the tests drive the FreeBSD module on Linux, with stand-ins for
FreeBSD's commands. Any other system gets the Linux module, whose missing ``/proc`` makes every
guest "unknown": never "dead".
"""

from __future__ import annotations

import os
import sys

from ...errors import GuestError

SYSTEMS = ("linux", "freebsd")
VARIABLE = "QEMU_INIT_PLATFORM"


def name() -> str:
    """``linux`` or ``freebsd``: the system the runtime acts on."""
    forced = os.environ.get(VARIABLE)
    if forced:
        if forced not in SYSTEMS:
            raise GuestError(f"{VARIABLE}={forced!r}: not one of {', '.join(SYSTEMS)}", 4)
        return forced
    return "freebsd" if sys.platform.startswith("freebsd") else "linux"


def current():  # type: ignore[no-untyped-def]
    """The module for this system (imported on first use: status of a stopped guest needs none)."""
    if name() == "freebsd":
        from . import freebsd
        return freebsd
    from . import linux
    return linux
