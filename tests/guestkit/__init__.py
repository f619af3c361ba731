"""Shared fixtures' machinery for tests that boot real QEMU guests (standard library only).

The test guest is a Debian cloud kernel with a busybox initramfs built by ``build-guest.sh``
next to this file; its ``/init`` is driven by the kernel command line and reports on the serial
console with ``QI-*`` lines:

==========================  =====================================================================
kernel parameter            effect (serial console line)
==========================  =====================================================================
(always)                    ``QI-ARGS <kernel command line>``, then ``QI-BOOTED <hostname>``
                            once the power button is watched
``qi.name=NAME``            sets the hostname
``qi.ip=ADDR/PREFIX``       loads virtio-net, configures eth0: ``QI-NET-UP ADDR/PREFIX``
                            (or ``QI-NET-FAIL``)
``qi.ping=IP1,IP2``         pings each for up to ~20 s: ``QI-PING-OK IP`` / ``QI-PING-FAIL IP``
``qi.echo=WORD``            ``QI-ECHO WORD``
``qi.agent=1``              loads virtio_console, runs Debian's real ``qemu-ga`` on the port
                            ``org.qemu.guest_agent.0``: ``QI-AGENT-UP`` (or ``QI-AGENT-FAIL``);
                            its ``guest-shutdown`` runs ``/sbin/shutdown``, which prints
                            ``QI-AGENT-SHUTDOWN -h -P +0 …`` and powers off
``qi.agent=stopped``        the same, but qemu-ga is stopped (SIGSTOP) at once: a hung agent
``qi.shell=1``              after ``QI-READY``, a shell (prompt ``qi# ``) on the console
(always, last)              ``QI-READY``; a power button press then gives ``QI-POWEROFF`` and
                            an ACPI power-off (it is obeyed from ``QI-BOOTED`` on)
==========================  =====================================================================

Guests run under software emulation (TCG): KVM exists on the CI machines but hangs Linux guests.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Union

__all__ = [
    "QEMU",
    "TestGuest",
    "build_test_guest",
    "cache_dir",
    "qemu_guest_args",
    "wait_for_line",
    "qmp",
    "process_alive",
    "wait_gone",
    "processes",
    "qemu_processes",
    "kill_processes",
    "kill_qemu",
    "subreaper",
    "reap_qemu",
    "run",
    "short_tempdir",
    "GUEST_USER",
    "console_file",
    "Netns",
]

QEMU = "qemu-system-x86_64"
# The user the guests' QEMUs run as by default (SYSUSR's default; .ci/install-deps creates it, as
# an administrator does once): files such a QEMU writes (its console) must be that user's.
GUEST_USER = "qemud"
BUILD_SCRIPT = Path(__file__).with_name("build-guest.sh")
DEFAULT_CACHE = "/var/cache/qemu-init-tests"

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class TestGuest:
    """The kernel and initramfs of the test guest."""

    __test__ = False  # not a pytest test class, despite the name

    kernel: Path
    initrd: Path


def cache_dir() -> Path:
    """Where build-guest.sh keeps its builds (``$QEMU_INIT_TEST_CACHE`` or the default)."""
    return Path(os.environ.get("QEMU_INIT_TEST_CACHE") or DEFAULT_CACHE)


def _script_hash() -> str:
    # build-guest.sh names its builds after the first 12 hex digits of its own sha256, so an
    # edit to the script (and so to the guest's /init) never reuses a stale build.
    return hashlib.sha256(BUILD_SCRIPT.read_bytes()).hexdigest()[:12]


def _complete(build: Path) -> Optional[TestGuest]:
    guest = TestGuest(kernel=build / "vmlinuz", initrd=build / "initrd.img")
    return guest if guest.kernel.is_file() and guest.initrd.is_file() else None


def build_test_guest() -> TestGuest:
    """Return the test guest, building it first when the cache holds none for this script.

    The fast path only looks at the cache (no apt): a newer Debian kernel is picked up once the
    cache is emptied or build-guest.sh changes.
    """
    builds = sorted(
        cache_dir().glob(f"guest-*-{_script_hash()}"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for build in builds:
        guest = _complete(build)
        if guest:
            return guest
    proc = subprocess.run(
        ["sh", str(BUILD_SCRIPT), str(cache_dir())],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed ({proc.returncode}):\n{proc.stderr}")
    guest = _complete(Path(proc.stdout.strip().splitlines()[-1]))
    if guest is None:
        raise RuntimeError(f"{BUILD_SCRIPT} printed {proc.stdout!r} but left no guest there")
    return guest


def qemu_guest_args(
    name: str,
    serial_log: PathLike,
    kernel_cmdline_extra: str = "",
    *,
    guest: Optional[TestGuest] = None,
    memory: str = "256M",
) -> list[str]:
    """QEMU options (without the binary) that boot the test guest headless.

    The serial console goes to ``serial_log``; the guest's hostname is ``name``, which is also
    QEMU's ``-name``. Add ``-qmp``, ``-daemonize``, ``-pidfile``, NICs and so on after these.
    ``-nic none``: no NIC unless one is given (QEMU would otherwise add a user-mode one), as
    qemu-init's own command line says for a guest without a bridge.
    ``panic=-1`` with ``-no-reboot`` turns a guest panic into QEMU exiting.
    """
    guest = guest or build_test_guest()
    append = f"console=ttyS0 panic=-1 qi.name={name}"
    if kernel_cmdline_extra:
        append += f" {kernel_cmdline_extra}"
    return [
        "-name", name,
        "-accel", "tcg",
        "-m", memory,
        "-nic", "none",
        "-no-user-config",
        "-display", "none",
        "-no-reboot",
        "-kernel", str(guest.kernel),
        "-initrd", str(guest.initrd),
        "-append", append,
        "-serial", f"file:{serial_log}",
    ]  # fmt: skip


def wait_for_line(path: PathLike, text: str, timeout: float = 30.0) -> str:
    """Poll the serial log ``path`` until a line contains ``text``; return that line.

    Raises TimeoutError, with the end of the log, when no such line appears in time.
    """
    path = Path(path)
    deadline = time.monotonic() + timeout
    while True:
        try:
            content = path.read_text(errors="replace")
        except FileNotFoundError:
            content = ""
        for line in content.splitlines():
            if text in line:
                return line.strip()
        if time.monotonic() >= deadline:
            tail = "\n".join(content.splitlines()[-25:])
            raise TimeoutError(f"no line with {text!r} in {path} after {timeout} s; its end:\n{tail}")
        time.sleep(0.05)


def qmp(sock_path: PathLike, *commands: str, timeout: float = 10.0) -> list:
    """Run QMP commands (names, no arguments) on the unix socket ``sock_path``, after the
    capabilities handshake; return their results (each reply's "return").

    Each reply is awaited before the next command and before closing: QEMU drops a command
    whose connection closes before it was dispatched. Events (such as POWERDOWN) are skipped.
    """
    results = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        stream = sock.makefile("rwb")
        greeting = json.loads(stream.readline())
        assert "QMP" in greeting, greeting
        for command in ("qmp_capabilities", *commands):
            stream.write(json.dumps({"execute": command}).encode() + b"\n")
            stream.flush()
            while True:
                reply = json.loads(stream.readline())
                if "event" in reply:  # asynchronous, e.g. POWERDOWN: not the answer
                    continue
                assert "return" in reply, f"{command}: {reply}"
                results.append(reply["return"])
                break
    return results[1:]


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as gone.

    A daemonized QEMU is reparented to PID 1, which on some machines reaps its children only
    after a second or more: the process has exited long before /proc/PID disappears.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """Wait until ``pid`` is no longer alive (see process_alive); False on timeout."""
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def _output_names(entry: Path) -> bytes:
    """Where a process's stdout and stderr go: a QEMU the helper started writes to its guest's
    log, and its command line may name no file of the test at all (sockets come as descriptors)."""
    names = []
    for fd in ("1", "2"):
        try:
            names.append(os.fsencode(os.readlink(entry / "fd" / fd)))
        except OSError:
            pass
    return b" ".join(names)


def processes(marker: str, *, qemu_only: bool = False) -> List[int]:
    """Pids of live processes (this one excepted) whose command line contains ``marker``, or
    whose output goes to a file whose path does; with ``qemu_only``, QEMUs only."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if qemu_only and not os.path.basename(argv[0]).startswith(b"qemu-system"):
            continue
        named = marker.encode() in b" ".join(argv) or marker.encode() in _output_names(entry)
        if named and process_alive(int(entry.name)):
            pids.append(int(entry.name))
    return sorted(pids)


def qemu_processes(marker: str) -> List[int]:
    """Pids of live QEMU processes whose command line contains ``marker``."""
    return processes(marker, qemu_only=True)


def _kill_until_none(find: Callable[[], List[int]], what: str, timeout: float) -> List[int]:
    """SIGKILL what ``find()`` lists and wait until it is gone, again until it lists nothing
    (one may fork while the first ones are being killed). Returns every pid signalled; raises
    RuntimeError if processes are still there after ``timeout``."""
    deadline = time.monotonic() + timeout
    signalled: List[int] = []
    while True:
        pids = find()
        if not pids:
            return signalled
        if time.monotonic() >= deadline:
            raise RuntimeError(f"processes {pids} ({what}) survived SIGKILL")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        signalled += [pid for pid in pids if pid not in signalled]
        for pid in pids:
            wait_gone(pid, max(0.0, deadline - time.monotonic()))


def kill_processes(marker: str, *, qemu_only: bool = False, timeout: float = 10.0) -> List[int]:
    """SIGKILL every process (with ``qemu_only``, every QEMU) whose command line contains
    ``marker``, until none is left: helpers and hooks too, and what they start meanwhile.

    Returns the pids that were signalled. Raises RuntimeError if one survives ``timeout``.
    """
    return _kill_until_none(lambda: processes(marker, qemu_only=qemu_only), marker, timeout)


def kill_qemu(marker: str, timeout: float = 10.0) -> List[int]:
    """SIGKILL every QEMU whose command line contains ``marker``; wait until they are gone.

    Returns the pids that were signalled. Raises RuntimeError if one survives ``timeout``.
    """
    return kill_processes(marker, qemu_only=True, timeout=timeout)


PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def subreaper() -> Iterator[bool]:
    """While the block runs, this process adopts its orphaned descendants
    (PR_SET_CHILD_SUBREAPER), such as the QEMUs that daemonize; afterwards the exited QEMUs
    are reaped (reap_qemu). Yields whether the kernel agreed.

    The init of some machines and containers reaps lazily, and `pgrep qemu` would list the
    zombies of killed QEMUs for a while after the tests.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    adopted = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    try:
        yield adopted
    finally:
        if adopted:
            prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
            reap_qemu()


def reap_qemu() -> None:
    """Reap the exited QEMUs this process adopted (see subreaper), and nothing else: other
    children are not ours to wait for."""
    for entry in os.listdir("/proc"):
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, ValueError):
            continue
        comm = text[text.find("(") + 1:text.rfind(")")]
        state, ppid = text[text.rfind(")") + 2:].split()[:2]
        if state == "Z" and int(ppid) == os.getpid() and comm.startswith("qemu"):
            try:
                os.waitpid(int(entry), os.WNOHANG)
            except ChildProcessError:
                pass


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run that captures text output, with a 120 s timeout unless given; never raises
    on a non-zero exit."""
    kwargs.setdefault("timeout", 120)
    return subprocess.run(list(argv), capture_output=True, text=True, **kwargs)


def short_tempdir(prefix: str = "qi-") -> Path:
    """A new empty directory such as /tmp/qi-k3j9x_a1.

    Always under /tmp, whatever TMPDIR says: a unix socket path holds at most 107 bytes, and a
    sandbox root holds sockets a few directories deep.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)  # root's, writable by nobody else (trusted); QEMU running as GUEST_USER looks inside
    return path


def console_file(path: PathLike, user: str = GUEST_USER) -> Path:
    """An empty file for a guest's serial console (``-serial file:PATH``), which QEMU opens as
    ``user``, the user it runs as."""
    import pwd
    entry = pwd.getpwnam(user)
    Path(path).write_bytes(b"")
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return Path(path)


class Netns:
    """A throw-away network namespace ``qi-test-<random>`` (needs root).

    ``with Netns() as ns:`` creates it with loopback up; ``ns.run([...])`` runs a command inside;
    on exit every process inside is killed and the namespace deleted. The host's own network is
    never touched: build bridges and taps inside with ``ns.run(["ip", ...])``.
    """

    def __init__(self, name: Optional[str] = None) -> None:
        self.name = name or f"qi-test-{secrets.token_hex(4)}"
        self._created = False

    def __enter__(self) -> "Netns":
        self.create()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create(self) -> None:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self._created = True
        self.run(["ip", "link", "set", "lo", "up"])

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` wrapped to run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, command: Sequence[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """subprocess.run inside the namespace; raises on failure with check=True (default)."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("text", True)
        proc = subprocess.run(self.argv(command), **kwargs)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"in {self.name}: {' '.join(command)} failed ({proc.returncode}): {proc.stderr or ''}"
            )
        return proc

    def popen(self, command: Sequence[str], **kwargs) -> subprocess.Popen:
        """subprocess.Popen inside the namespace."""
        return subprocess.Popen(self.argv(command), **kwargs)

    def pids(self) -> list[int]:
        """Live processes inside the namespace."""
        proc = subprocess.run(
            ["ip", "netns", "pids", self.name], stdout=subprocess.PIPE, text=True, check=False
        )
        return [int(word) for word in proc.stdout.split() if process_alive(int(word))]

    def close(self, timeout: float = 10.0) -> None:
        """Kill every process inside, then delete the namespace. Safe to call twice."""
        if not self._created:
            return
        _kill_until_none(self.pids, f"in {self.name}", timeout)
        subprocess.run(["ip", "netns", "delete", self.name], check=True)
        self._created = False
