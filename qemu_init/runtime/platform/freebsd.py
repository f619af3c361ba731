"""FreeBSD: processes through ``ps`` (no procfs by default), taps through ``ifconfig``.

Only ``ps`` and ``ifconfig`` of the base system are used, found on PATH as rc(8) sets it. A tap
there outlives its QEMU (unlike Linux's), so the helper deletes it after every stop, and one a
crashed guest left behind before making it anew.
"""

from __future__ import annotations

import errno
import os
import re

from ...errors import GuestError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple

PS = "ps"
IFCONFIG = "ifconfig"
DEVDIR = "/dev"  # where `ifconfig tap create` makes the tap's device (tests point it elsewhere)
TIMEOUT = 10.0   # seconds for one ps or ifconfig: a hung one must not hang a shutdown


def _run(argv: Sequence[str]) -> Tuple[int, str, str]:
    """(exit code, stdout, stderr); OSError when the command cannot be run or hangs."""
    import subprocess
    try:
        done = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        raise OSError(errno.ETIMEDOUT, f"no answer within {TIMEOUT:g} s", argv[0]) from None
    return done.returncode, os.fsdecode(done.stdout), os.fsdecode(done.stderr)


# -- processes ---------------------------------------------------------------------------------

# One line, no header: state, effective, real and saved uid, then the command line. ps(1) joins
# the arguments with spaces, so argv comes back split at spaces: enough to find ``-name NAME``
# (guest names hold no spaces), and nobody but the guest's user and root passes the uid test. (A
# saved state is bound to the command line the start recorded, savestate.record_launch: not this.)
_PS_FIELDS = ("state=", "uid=", "ruid=", "svuid=", "args=")
EXACT_ARGV = False  # process()'s argv is split at spaces, not the words QEMU was given


def process(pid: int) -> Optional[Tuple[List[str], List[int]]]:
    argv = [PS, "-ww"] + [w for field in _PS_FIELDS for w in ("-o", field)] + ["-p", str(pid)]
    code, out, err = _run(argv)
    lines = out.strip().splitlines()
    if code == 1 and not lines and not err.strip():
        return None  # ps's answer for a pid that does not exist
    if code != 0:
        raise OSError(errno.EIO, "failed: " + (err.strip().splitlines() or [f"exit {code}"])[-1], PS)
    fields = lines[0].split(None, 4) if lines else []
    if len(fields) < 4 or not all(f.isdigit() for f in fields[1:4]):
        raise OSError(errno.EIO, f"unexpected answer: {out.strip()[:80]!r}", PS)
    if fields[0].startswith("Z"):
        return None  # a zombie: gone for our purposes
    return (fields[4].split() if len(fields) > 4 else []), [int(u) for u in fields[1:4]]


def pidfd(pid: int) -> Optional[int]:
    """None: without pidfds, identity is checked again before every signal (proc.GuestProcess)."""
    return None


# -- taps --------------------------------------------------------------------------------------

def _ifconfig(*args: str) -> Tuple[int, str, str]:
    try:
        return _run([IFCONFIG, *args])
    except OSError as e:
        return 127, "", f"{IFCONFIG}: {e.strerror}"


def _said(err: str, code: int) -> str:
    return (err.strip().splitlines() or [f"{IFCONFIG} exit {code}"])[-1]


def tap_exists(tap: str) -> bool:
    return "/" not in tap and _ifconfig(tap)[0] == 0


def _bridge_mtu(bridge: str) -> str:
    code, out, _ = _ifconfig(bridge)
    if code != 0 or not re.search(r"^\s*groups:.*\bbridge\b", out, re.M):
        service = "qemu_bridge_" + re.sub(r"[^A-Za-z0-9_]", "_", bridge)
        raise GuestError(f"bridge {bridge} does not exist; start the service {service} first")
    found = re.search(r"\bmtu (\d+)", out)
    return found.group(1) if found else "1500"


def open_taps(taps: Sequence[Tuple[str, str]], first_fd: int) -> Dict[int, int]:
    """Each (tap, bridge): a tap cloned (``ifconfig tap create``), its device opened, renamed to
    ``tap``, given the bridge's MTU, up and a member of the bridge. Returns {descriptor number
    for QEMU: open fd}, numbered from ``first_fd``; all or none."""
    fds: Dict[int, int] = {}
    made: List[str] = []
    try:
        for index, (tap, bridge) in enumerate(taps):
            mtu = _bridge_mtu(bridge)
            if tap_exists(tap):  # left by a guest that died: nobody else holds our tap names
                _ifconfig(tap, "destroy")
            code, out, err = _ifconfig("tap", "create")
            clone = out.strip()
            if code != 0 or not re.fullmatch(r"tap\d+", clone):
                raise GuestError(f"cannot create tap {tap}: {_said(err, code)}")
            made.append(clone)
            try:
                fds[first_fd + index] = os.open(f"{DEVDIR}/{clone}", os.O_RDWR | os.O_CLOEXEC)
            except OSError as e:
                raise GuestError(f"cannot open {DEVDIR}/{clone} for tap {tap}: {e.strerror}") from None
            for step in ((clone, "name", tap), (tap, "mtu", mtu, "up"), (bridge, "addm", tap)):
                code, _, err = _ifconfig(*step)
                if code != 0:
                    raise GuestError(f"cannot attach {tap} to bridge {bridge}: {_said(err, code)}")
                made[-1] = tap
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        for name in made:
            _ifconfig(name, "destroy")
        raise
    return fds


def delete_taps(taps: Sequence[str]) -> Sequence[str]:
    """Delete those of ``taps`` still there; returns the ones deleted."""
    return [tap for tap in taps if tap_exists(tap) and _ifconfig(tap, "destroy")[0] == 0]
