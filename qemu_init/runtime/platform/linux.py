"""Linux: processes through ``/proc``, pidfds (5.3), taps through ``/dev/net/tun`` and ``ip``."""

from __future__ import annotations

import os

from ...errors import GuestError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
EXACT_ARGV = True  # process()'s argv is the words QEMU was given (/proc/PID/cmdline)
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple


# -- processes ---------------------------------------------------------------------------------

def _read(pid: int, entry: str) -> Optional[bytes]:
    if not os.path.isdir("/proc/self"):
        raise FileNotFoundError(2, "no /proc to tell running processes by", "/proc")
    try:
        with open(f"/proc/{pid}/{entry}", "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None


def running(pid: int) -> bool:
    stat = _read(pid, "stat")
    if stat is None:
        return False
    # "pid (comm) S ...": comm may contain spaces and parentheses, the state follows the last ")".
    state = stat.rpartition(b")")[2].split()[:1]
    return state not in ([b"Z"], [b"X"], [])


def process(pid: int) -> Optional[Tuple[List[str], List[int]]]:
    if not running(pid):
        return None
    raw, status = _read(pid, "cmdline"), _read(pid, "status")
    if raw is None or status is None:
        return None  # it ended in between
    argv = [os.fsdecode(a) for a in raw.split(b"\0")[:-1]] if raw else []
    for line in status.splitlines():
        if line.startswith(b"Uid:"):  # real, effective, saved, file-system
            return argv, [int(u) for u in line.split()[1:]]
    return None


def pidfd(pid: int) -> Optional[int]:
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None


# -- taps --------------------------------------------------------------------------------------

def _ip_batch(commands: Sequence[str]) -> str:
    """Run ``ip -batch -``; returns what it said on failure, "" on success."""
    import subprocess
    try:
        done = subprocess.run(["ip", "-batch", "-"], input="\n".join(commands) + "\n", text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    except OSError as e:
        return f"ip: {e.strerror}"
    return "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["ip failed"])[-1]


def tap_exists(tap: str) -> bool:
    return "/" not in tap and os.path.exists(f"/sys/class/net/{tap}")


_TUNSETIFF = 0x400454CA
_IFF_TAP, _IFF_NO_PI, _IFF_VNET_HDR = 0x0002, 0x1000, 0x4000


def _open_tap(tap: str) -> int:
    """A new tap ``tap``, open: it lives as long as a descriptor of it does."""
    import fcntl
    import struct
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        # struct ifreq: the name, then the flags (virtio-net's offloads want the vnet header)
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", tap.encode(), _IFF_TAP | _IFF_NO_PI | _IFF_VNET_HDR))
    except OSError:
        os.close(fd)
        raise
    return fd


def open_taps(taps: Sequence[Tuple[str, str]], first_fd: int) -> Dict[int, int]:
    """Each (tap, bridge): the tap made, with its bridge's MTU (a smaller one would lower the
    bridge's for every guest), attached and up. Returns {descriptor number for QEMU: open fd},
    numbered from ``first_fd``; all or none. The kernel deletes each tap with its last holder."""
    fds: Dict[int, int] = {}
    commands = []
    try:
        for index, (tap, bridge) in enumerate(taps):
            if not os.path.isdir(f"/sys/class/net/{bridge}/bridge"):
                raise GuestError(f"bridge {bridge} does not exist; start the service qemu-bridge-{bridge} first")
            with open(f"/sys/class/net/{bridge}/mtu") as f:
                mtu = f.read().strip()
            try:
                fds[first_fd + index] = _open_tap(tap)
            except OSError as e:
                raise GuestError(f"cannot create tap {tap}: {e.strerror}") from None
            commands.append(f"link set dev {tap} mtu {mtu} master {bridge} up")
        failed = _ip_batch(commands) if commands else ""
        if failed:
            raise GuestError(f"cannot attach {', '.join(t for t, _ in taps)} to their bridges: {failed}")
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds


def delete_taps(taps: Sequence[str]) -> Sequence[str]:
    """Delete those of ``taps`` still there (made persistent by hand, or by an older qemu-init);
    returns the ones deleted."""
    left = [tap for tap in taps if tap_exists(tap)]
    if left:
        _ip_batch([f"link delete dev {tap}" for tap in left])
    return [tap for tap in left if not tap_exists(tap)]
