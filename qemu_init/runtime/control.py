"""start / stop / status / monitor of one guest: what the generated init scripts run.

Everything comes from the command line (a GuestControl); no configuration file is read here.
start and stop hold a per-guest ``flock`` so that they never race (ten concurrent starts make one
QEMU). status and monitor take no lock: they only read, and must answer while a stop is waiting.
Modules needed only by some actions (subprocess, hashlib, syslog, even the QMP client) are
imported where used: ``status`` of a stopped guest then costs little more than the interpreter.
"""

from __future__ import annotations

import errno
import os
import select
import sys
import time
from collections import namedtuple
from contextlib import contextmanager

from ..errors import GuestError, QMPConnectError, QMPError
from . import proc

# typing.TYPE_CHECKING without importing typing: ``typing`` and ``dataclasses`` (which loads
# ``inspect``) took ~10 ms of every helper run; without them a ``status`` costs ~14 ms beyond the
# bare interpreter. So the runtime's typing names exist for type checkers only (annotations are
# postponed), and its records are namedtuples (errors.Problem a plain class).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from typing import BinaryIO, Callable, Iterator, Optional, Sequence, TextIO, Tuple

    from .stop import Timing, Transition

LAUNCH_TIMEOUT = 120.0  # QEMU preallocating a large RAM or opening slow storage takes a while
LOCK_SLACK = 60.0       # a start waits for a running stop: its STOPDELAY plus this
STATUS_QMP_TIMEOUT = 2.0
MONITOR_TIMEOUT = 30.0
_STATES = {"running": "running", "paused": "paused", "shutdown": "shutting down",
           "suspended": "suspended", "guest-panicked": "crashed (guest-panicked)"}

_GUEST_CONTROL = {  # field: default; the name comes first and has none
    "pidfile": "",
    "qmp": "",
    "lock": "",
    "log": "",
    "stopdelay": 40.0,
    "taps": (),
    "precmd": "",
    "postcmd": "",
    "rcfile": "",    # its ownership gates PRECMD/POSTCMD
    "sources": (),   # (path, sha256) the script was generated from
    "argv": (),
    "daemon": None,  # None: whether argv has -daemonize
    "vnc": "",
    "monitor": "",
}


class GuestControl(namedtuple("GuestControl", ["name", *_GUEST_CONTROL],
                              defaults=_GUEST_CONTROL.values())):
    """Everything the helper knows about one guest, straight from the init script (immutable)."""

    __slots__ = ()

    def __new__(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
        gc = super().__new__(cls, *args, **kwargs)
        return gc._replace(taps=tuple(gc.taps), sources=tuple(gc.sources), argv=tuple(gc.argv),
                           daemon=daemonizes(gc.argv) if gc.daemon is None else gc.daemon)


def daemonizes(argv: Sequence[str]) -> bool:
    """Whether this QEMU command line forks into the background by itself."""
    return "-daemonize" in argv or "--daemonize" in argv


# -- small pieces ----------------------------------------------------------------------------

def _warn(gc: GuestControl, message: str) -> None:
    print(f"qemu-init: {gc.name}: warning: {message}", file=sys.stderr)


def _makedirs(*paths: str) -> None:
    for path in paths:
        parent = os.path.dirname(os.path.abspath(path)) if path else ""
        if parent:
            os.makedirs(parent, mode=0o755, exist_ok=True)


# O_NOFOLLOW makes open() fail on a symlink: ELOOP on Linux, EMLINK on FreeBSD.
_SYMLINK_ERRNOS = (errno.ELOOP, errno.EMLINK)


def _nofollow_error(path: str, e: OSError) -> str:
    if e.errno in _SYMLINK_ERRNOS:
        return f"{path}: is a symbolic link; refusing to follow it"
    return f"{path}: {e.strerror}"


def _open_log(gc: GuestControl, flags: int) -> int:
    """The guest log, appended to. Never through a symlink: the run folder may be writable by
    others than root, and a planted link must not make root append to (or create) another file."""
    return os.open(gc.log, flags | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o640)


_unwritable_logs: set[str] = set()  # logs already warned about (a stop logs every step)


def log(gc: GuestControl, message: str, error: bool = False) -> None:
    """Append a timestamped line to the guest log, and to syslog where there is one."""
    if gc.log:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {gc.name}: {message}\n"
        try:
            _makedirs(gc.log)
            with open(_open_log(gc, os.O_WRONLY), "a") as f:
                f.write(line)
        except OSError as e:
            if gc.log not in _unwritable_logs:
                _unwritable_logs.add(gc.log)
                _warn(gc, _nofollow_error(gc.log, e))
    if os.path.exists("/dev/log"):
        import syslog
        syslog.openlog("qemu-init", syslog.LOG_PID, syslog.LOG_DAEMON)
        syslog.syslog(syslog.LOG_ERR if error else syslog.LOG_INFO, f"{gc.name}: {message}")


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _delete_taps(gc: GuestControl) -> None:
    """Taps left behind by a QEMU that could not run its downscript (SIGKILL)."""
    left = [tap for tap in gc.taps if "/" not in tap and os.path.exists(f"/sys/class/net/{tap}")]
    if not left:
        return
    import subprocess  # only now: most stops leave no tap behind, and this import costs ~4 ms
    for tap in left:
        try:
            subprocess.run(["ip", "link", "delete", tap], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        except OSError as e:
            _warn(gc, f"cannot delete tap {tap}: ip: {e.strerror}")
        else:
            log(gc, f"deleted tap {tap}")


def _cleanup(gc: GuestControl) -> None:
    removed = [p for p in (gc.pidfile, gc.qmp) if p and _unlink(p)]
    if removed:
        log(gc, "removed " + ", ".join(removed))
    _delete_taps(gc)


@contextmanager
def _locked(gc: GuestControl, wait: float) -> Iterator[None]:
    """Per-guest exclusive lock; the fd is close-on-exec so neither QEMU nor PRECMD inherits it."""
    import fcntl
    if not gc.lock:
        raise GuestError("no lock file given")
    _makedirs(gc.lock)
    try:
        fd = os.open(gc.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise GuestError(f"{gc.lock}: {e.strerror}", 4 if e.errno in (errno.EACCES, errno.EPERM) else 1)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise GuestError(f"{gc.lock}: still locked after {wait:g} s by another start or stop")
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _probe(gc: GuestControl) -> Tuple[str, Optional[int]]:
    try:
        return proc.probe(gc.pidfile, gc.name)
    except OSError as e:
        raise GuestError(f"{e.filename or gc.pidfile}: {e.strerror}", 4)


# -- status ------------------------------------------------------------------------------------

def status(gc: GuestControl) -> Tuple[int, str]:
    """(LSB status code, one human line)."""
    try:
        kind, pid = proc.probe(gc.pidfile, gc.name)
    except OSError as e:
        return 4, f"{gc.name}: unknown ({e.filename or gc.pidfile}: {e.strerror})"
    if kind == proc.ABSENT:
        return 3, f"{gc.name}: not running"
    if kind == proc.BADFILE:
        return 1, f"{gc.name}: dead, but pid file {gc.pidfile} exists (without a pid)"
    if kind == proc.DEAD:
        return 1, f"{gc.name}: dead, but pid file {gc.pidfile} exists (pid {pid})"
    if kind == proc.FOREIGN:
        return 1, f"{gc.name}: not running, stale pid file {gc.pidfile} (pid {pid} is not this guest)"
    from .qmp import QMP
    details = [f"pid {pid}"] + [f"{k} {v}" for k, v in (("vnc", gc.vnc), ("monitor", gc.monitor)) if v]
    try:
        with QMP(gc.qmp, STATUS_QMP_TIMEOUT) as q:
            result = q.execute("query-status")
        state = str(result.get("status", "unknown")) if isinstance(result, dict) else "unknown"
        state = _STATES.get(state, state)
    except QMPError:
        state = "running"
        details.append("QMP not answering")
    return 0, f"{gc.name}: {state} ({', '.join(details)})"


# -- start -------------------------------------------------------------------------------------

def _qmp_answers(gc: GuestControl) -> bool:
    """Whether some QEMU is alive behind the control socket (a stale socket refuses at once)."""
    if not gc.qmp or not os.path.exists(gc.qmp):
        return False
    from .qmp import QMP
    try:
        with QMP(gc.qmp, 1.0) as q:
            q.connect()
        return True
    except QMPError:
        return False


def _check_sources(gc: GuestControl) -> None:
    import hashlib
    for path, digest in gc.sources:
        try:
            with open(path, "rb") as f:
                actual = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            _warn(gc, f"{path}: {e.strerror} (the script was generated from it)")
            continue
        if actual != digest.lower():
            _warn(gc, f"{path}: changed since the script was generated; regenerate")


def _check_rcfile(gc: GuestControl) -> None:
    """PRECMD/POSTCMD run as root: only if nobody but root (or us) can have written them, i.e.
    the rc-file and its folder are owned by root/us and not writable by group or others (a
    sticky folder such as /tmp is fine: others cannot replace a file there)."""
    import stat
    if not gc.rcfile:
        raise GuestError("PRECMD/POSTCMD given without --rcfile: refusing to run them")
    owners = {0, os.geteuid()}
    rcfile = os.path.abspath(gc.rcfile)
    for path in (rcfile, os.path.dirname(rcfile)):
        try:
            st = os.stat(path)
        except OSError as e:
            raise GuestError(f"{path}: {e.strerror}: refusing to run PRECMD/POSTCMD")
        sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
        if st.st_uid not in owners or (st.st_mode & 0o022 and not sticky_dir):
            raise GuestError(
                f"{path}: refusing to run PRECMD/POSTCMD: owned by uid {st.st_uid}, mode "
                f"{stat.S_IMODE(st.st_mode):04o}; it must be owned by root and writable by no one else")


def _hook(command: str) -> int:
    import subprocess
    return subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, check=False).returncode


def _error_lines(gc: GuestControl, text: str, limit: int = 2) -> str:
    """QEMU's own error lines ("qemu-system-x86_64: -drive …: Could not open …"), without the
    chatter around them (missing optional UI modules, warnings).

    A failed tap script is the exception: QEMU only says "network script X failed with status
    256", while the script said why on a line of its own ("X: bridge br0 does not exist; start
    the service qemu-bridge-br0 first"). That line is the one the admin needs, so it is shown."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    prefix = os.path.basename(gc.argv[0]) + ": "
    errors = [line for line in lines if line.startswith(prefix) and ": warning: " not in line]
    scripts = [line.partition("network script ")[2].rpartition(" failed")[0] for line in errors]
    said = [line for line in lines if any(s and line.startswith(s + ": ") for s in scripts)]
    return "; ".join((said or errors or lines)[:limit]) or "no message"


def _qemu_output(gc: GuestControl) -> Tuple[BinaryIO, int]:
    """Where QEMU's stdout and stderr go, and the offset its messages will start at: the guest
    log, appended to (not a pipe: a daemonized QEMU started with -D keeps stderr open, and a pipe
    nobody drains would block it); without a log, an anonymous file."""
    if gc.log:
        try:
            fd = _open_log(gc, os.O_RDWR)
        except OSError as e:
            raise GuestError(_nofollow_error(gc.log, e))
        out = os.fdopen(fd, "a+b")
    else:
        import tempfile
        out = tempfile.TemporaryFile()
    return out, out.seek(0, os.SEEK_END)


def _messages(out: BinaryIO, offset: int) -> str:
    out.seek(offset)
    return out.read(65536).decode(errors="replace")


def _wait(child: subprocess.Popen, timeout: float) -> Optional[int]:
    """The child's exit code as soon as it exits; None if it still runs after ``timeout``.

    Popen.wait(timeout) polls, sleeping 1, 2, 4, … ms (doubling up to 50) between looks: a QEMU
    that daemonized after 34 ms was noticed at ~63 ms, on every start. A pidfd turns readable
    the moment the child exits; without pidfds (Linux < 5.3), Popen's own wait."""
    import subprocess
    try:
        fd = os.pidfd_open(child.pid)
    except (AttributeError, OSError):
        try:
            return child.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
    try:
        if not select.select([fd], [], [], timeout)[0]:
            return None
    finally:
        os.close(fd)
    return child.wait()


def _launch_daemon(gc: GuestControl) -> None:
    """QEMU -daemonize: the parent returns once the guest is set up, or fails with a message."""
    import subprocess
    out, offset = _qemu_output(gc)
    with out:
        try:
            qemu = subprocess.Popen(gc.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, umask=0o077)
        except OSError as e:
            raise GuestError(f"{gc.argv[0]}: {e.strerror}")
        code = _wait(qemu, LAUNCH_TIMEOUT)
        if code is None:
            qemu.kill()
            qemu.wait()
            raise GuestError(f"QEMU did not finish starting within {LAUNCH_TIMEOUT:g} s")
        text = _messages(out, offset)
    if code != 0:
        raise GuestError(f"QEMU failed (exit {code}): {_error_lines(gc, text)}")
    warnings = [line.strip() for line in text.splitlines() if "warning:" in line]
    if warnings:  # e.g. deprecated options: worth the admin's eye; other chatter only logged
        _warn(gc, "; ".join(warnings[:2]))


def _launch_foreground(gc: GuestControl) -> None:
    """QEMU without -daemonize: detach it ourselves (own session, stdio to the log) and wait
    until it answers on QMP (or, without QMP, has written its pid file)."""
    import subprocess
    from .qmp import QMP
    out, offset = _qemu_output(gc)
    with out:
        try:
            qemu = subprocess.Popen(gc.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, umask=0o077)
        except OSError as e:
            raise GuestError(f"{gc.argv[0]}: {e.strerror}")
        deadline = time.monotonic() + LAUNCH_TIMEOUT
        while qemu.poll() is None:
            if time.monotonic() > deadline:
                raise GuestError(f"QEMU did not finish starting within {LAUNCH_TIMEOUT:g} s")
            try:
                if proc.read_pidfile(gc.pidfile) == qemu.pid:
                    if gc.qmp:
                        with QMP(gc.qmp, 1.0) as q:
                            q.connect()  # the greeting comes once QEMU's main loop runs
                    return
            except (ValueError, QMPError):
                pass
            time.sleep(0.1)
        text = _messages(out, offset)
    raise GuestError(f"QEMU failed (exit {qemu.returncode}): {_error_lines(gc, text)}")


def _share_pidfile(gc: GuestControl) -> None:
    """QEMU makes its pid file 0600; 0644 lets unprivileged users run status. Through an fd
    opened with O_NOFOLLOW (O_NONBLOCK: a planted FIFO must not hang the start), never
    chmod(path): a symlink planted there must not make root change another file's mode."""
    import stat
    try:
        fd = os.open(gc.pidfile, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        _warn(gc, _nofollow_error(gc.pidfile, e) + " (its mode is left as it is)")
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.fchmod(fd, 0o644)
    except OSError:
        pass  # status then needs root; the guest runs all the same
    finally:
        os.close(fd)


def start(gc: GuestControl) -> int:
    """Start the guest unless it runs; returns 0 or raises GuestError."""
    if not gc.argv:
        raise GuestError("no QEMU command line given")
    if gc.daemon != daemonizes(gc.argv):  # waiting the wrong way would hang or misfire
        raise GuestError(f"daemon={gc.daemon} contradicts the QEMU command line")
    _makedirs(gc.pidfile, gc.qmp, gc.lock, gc.log)
    with _locked(gc, gc.stopdelay + LOCK_SLACK):
        kind, pid = _probe(gc)
        if kind == proc.GUEST:
            print(f"{gc.name} is already running (pid {pid})")
            return 0
        if gc.log and os.path.islink(gc.log):
            # refused before PRECMD runs; _open_log's O_NOFOLLOW still guards against a race
            raise GuestError(f"{gc.log}: is a symbolic link; refusing to follow it")
        if kind != proc.ABSENT or (gc.qmp and os.path.exists(gc.qmp)):
            if _qmp_answers(gc):
                # The pid file is gone or wrong, but a QEMU serves this guest's control socket:
                # cleaning up would cut a live guest off its socket and taps, and a second QEMU
                # would fight it for its disks.
                raise GuestError(f"a QEMU answers on {gc.qmp}, but {gc.pidfile} does not name it;"
                                 " not starting a second one (stop it with `monitor … quit`, or kill it)")
            _cleanup(gc)  # stale pid file and socket of a dead guest
        _check_sources(gc)
        if gc.precmd or gc.postcmd:
            _check_rcfile(gc)  # before PRECMD: refuse either hook before anything happened
        if gc.precmd:
            code = _hook(gc.precmd)
            if code != 0:
                log(gc, f"PRECMD failed (exit {code}); not started", error=True)
                raise GuestError(f"PRECMD failed (exit {code}); not started")
        try:
            (_launch_daemon if gc.daemon else _launch_foreground)(gc)
        except GuestError as e:
            log(gc, f"start failed: {e}", error=True)
            if _probe(gc)[0] != proc.GUEST:
                _cleanup(gc)  # a QEMU that failed late can leave its socket behind
            raise
        kind, pid = _probe(gc)
        if kind != proc.GUEST:
            message = f"QEMU started, but pid file {gc.pidfile} does not name a QEMU called {gc.name}"
            log(gc, message, error=True)
            raise GuestError(message)
        _share_pidfile(gc)
        log(gc, f"started (pid {pid})")
        if gc.postcmd:
            # the guest runs: a failing POSTCMD is reported, but does not make the start fail
            # (systemd would then kill the guest it just started)
            code = _hook(gc.postcmd)
            if code != 0:
                log(gc, f"POSTCMD failed (exit {code})", error=True)
                _warn(gc, f"POSTCMD failed (exit {code})")
    return 0


# -- stop --------------------------------------------------------------------------------------

def stop(gc: GuestControl, timeout: Optional[float] = None, force: bool = False,
         progress: Optional[Callable[[Transition], None]] = None,
         timing: Optional[Timing] = None) -> int:
    """Stop the guest: power button (resent) for STOPDELAY (or ``timeout``), then QMP quit,
    SIGTERM, SIGKILL. ``progress`` receives each Transition (str() gives a line). Returns 0
    once the guest is gone (or was not running); raises GuestError otherwise."""
    from . import stop as stopmachine
    from .qmp import QMP
    grace = gc.stopdelay if timeout is None else timeout
    with _locked(gc, grace + LOCK_SLACK):
        kind, pid = _probe(gc)
        if kind != proc.GUEST:
            _cleanup(gc)
            return 0
        try:
            process = proc.GuestProcess(pid, gc.name)  # type: ignore[arg-type]
        except ProcessLookupError:  # it ended in between
            _cleanup(gc)
            return 0

        def qmp(command: str, seconds: float) -> None:
            # a connection per command: QEMU serves one QMP client at a time, and status (or
            # the monitor) must get through during a long wait for the guest to power down
            if not gc.qmp:
                raise QMPConnectError("no QMP socket given")
            with QMP(gc.qmp) as conn:
                conn.execute(command, timeout=seconds)

        def report(step: Transition) -> None:
            log(gc, f"stop: {step}", error=step.state in (stopmachine.TERM, stopmachine.KILL))
            if progress is not None:
                progress(step)

        try:
            # process.sleep returns as soon as QEMU exits: a stop never waits out a poll interval
            stopmachine.run(process.alive, process.signal, qmp, grace, force,
                            timing or stopmachine.Timing(), report, sleep=process.sleep)
        except GuestError as e:
            log(gc, f"stop failed: {e}", error=True)
            raise
        finally:
            process.close()
        _cleanup(gc)
    return 0


# -- monitor -----------------------------------------------------------------------------------

def _hmp(gc: GuestControl, command: str, timeout: float) -> str:
    # a connection per command, as in stop: an interactive session must not lock out the
    # stop or status that run meanwhile
    from .qmp import QMP
    with QMP(gc.qmp, timeout) as q:
        text = q.human(command)
    return text.replace("\r\n", "\n")


def monitor(gc: GuestControl, command: Optional[str] = None, timeout: float = MONITOR_TIMEOUT,
            stdin: Optional[TextIO] = None, stdout: Optional[TextIO] = None) -> int:
    """One human monitor command (its answer printed), or an interactive session without one.

    In the session, ``exit`` or end of input leaves; everything else goes to QEMU, including
    ``quit``, which powers the guest off hard (asked for confirmation on a terminal)."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    if command is not None:
        try:
            text = _hmp(gc, command, timeout)
        except QMPConnectError as e:
            if os.path.exists(gc.qmp):
                raise GuestError(f"its control socket does not answer (is it running?): {e}", 1) from None
            raise GuestError("not running (no control socket)", 1) from None
        if text.startswith("unknown command:"):  # HMP's only way to say so: a line of text
            sys.stderr.write(f"qemu-init: {gc.name}: {text}")
            return 1
        stdout.write(text)
        return 0
    tty = stdin.isatty()
    if tty:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        stdout.write(f"{gc.name}: QEMU monitor. 'exit' or Ctrl-D leaves; "
                     "'quit' powers the guest off hard.\n")
    while True:
        if tty:
            try:
                line = input("(qemu) ")
            except EOFError:
                stdout.write("\n")
                return 0
        else:
            line = stdin.readline()
            if not line:
                return 0
        line = line.strip()
        if not line:
            continue
        if line == "exit":
            return 0
        quitting = line.split()[0] in ("quit", "q")
        if quitting and tty:
            answer = input(f"'quit' stops {gc.name} at once, like pulling the plug. Really? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                continue
        try:
            stdout.write(_hmp(gc, line, timeout))
            stdout.flush()
        except QMPConnectError as e:
            if quitting:
                return 0  # QEMU may close the connection before answering quit
            print(f"qemu-init: {gc.name}: {e}", file=sys.stderr)
            return 1
        except QMPError as e:
            print(f"qemu-init: {gc.name}: {e}", file=sys.stderr)
        if quitting:
            return 0
