"""start / stop / status / pause / resume / reset / monitor of one guest: what the generated init scripts run.

Everything comes from the command line (a GuestControl); no configuration file is read here.
start and stop hold a per-guest ``flock`` so that they never race (ten concurrent starts make one
QEMU). status and monitor never wait for it: they must answer while a stop is waiting (status
trims the console log only holding it, when it is free at once: runtime/lock.py try_locked).
Modules needed only by some actions (subprocess, hashlib, syslog, even the QMP client) are
imported where used: ``status`` of a stopped guest then costs little more than the interpreter.
"""

from __future__ import annotations

import os
import time
from collections import namedtuple

from ..errors import GuestError, QMPConnectError, QMPError
from . import helperargs, hooks, onstop, proc, savestate
from .guestlog import log, makedirs, nofollow_error, open_log, warn
from .lock import locked
from .monitor import MONITOR_TIMEOUT
from .status import status  # noqa: F401  (the record of status: control.status as start and stop)

# typing.TYPE_CHECKING without importing typing: ``typing`` and ``dataclasses`` (which loads
# ``inspect``) took ~10 ms of every helper run; without them a ``status`` costs ~14 ms beyond the
# bare interpreter. So the runtime's typing names exist for type checkers only (annotations are
# postponed), and its records are namedtuples (errors.Problem a plain class).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, Callable, Optional, Tuple

    from .stop import Timing, Transition

LAUNCH_TIMEOUT = 120.0  # QEMU preallocating a large RAM or opening slow storage takes a while
LOCK_SLACK = 60.0       # a start waits for a running stop: its STOPDELAY plus this

# Every option a script passes the helper is a field (helperargs.py: "taps" are (tap, bridge),
# bridge empty where only deleting the tap matters; "sources" (path, sha256) the script was made
# from), and QEMU's command line.
_GUEST_CONTROL = {**helperargs.control_fields(), "argv": ()}


class GuestControl(namedtuple("GuestControl", ["name", *_GUEST_CONTROL],
                              defaults=_GUEST_CONTROL.values())):
    """Everything the helper knows about one guest, straight from the init script (immutable)."""

    __slots__ = ()

    def __new__(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
        gc = super().__new__(cls, *args, **kwargs)
        return gc._replace(taps=tuple(_tap_pair(t) for t in gc.taps), sources=tuple(gc.sources),
                           argv=tuple(gc.argv))

    @property
    def uids(self) -> Tuple[int, ...]:
        """Who the guest's QEMU may run as: its user, or root (who can do anything anyway)."""
        uid = proc.uid_of(self.runas) if self.runas else None
        return (0,) if uid is None else tuple({0, uid})


def _tap_pair(tap) -> Tuple[str, str]:  # type: ignore[no-untyped-def]
    if isinstance(tap, str):
        name, _, bridge = tap.partition("=")
        return name, bridge
    return tuple(tap)  # type: ignore[return-value]


# -- small pieces ----------------------------------------------------------------------------

def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _delete_taps(gc: GuestControl) -> None:
    """The guest's taps: made by the start, left when QEMU ended (they outlive it by design)."""
    if not gc.taps:
        return
    from .launch import delete_taps
    for tap in delete_taps([tap for tap, _ in gc.taps]):
        log(gc, f"deleted tap {tap}")


def _cleanup(gc: GuestControl) -> None:
    if gc.pidfile:  # what the start recorded for a save goes with the pid file (not worth a word)
        _unlink(savestate.launch_record(gc.pidfile))
    removed = [p for p in (gc.pidfile, gc.qmp, gc.hmp, gc.console, gc.agent) if p and _unlink(p)]
    if removed:
        log(gc, "removed " + ", ".join(removed))
    _delete_taps(gc)


def _probe(gc: GuestControl) -> Tuple[str, Optional[int]]:
    """What the pid file says; GuestError (LSB 4) when that cannot be told: then nothing may be
    started, cleaned up or signalled."""
    try:
        return proc.probe(gc.pidfile, gc.name, gc.uids)
    except OSError as e:
        raise GuestError(f"cannot tell whether it runs: {e.filename or gc.pidfile}: {e.strerror}", 4)


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


def _error_lines(gc: GuestControl, text: str, limit: int = 2) -> str:
    """QEMU's own error lines ("qemu-system-x86_64: -drive …: Could not open …"), without the
    chatter around them (missing optional UI modules, warnings)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    prefix = os.path.basename(gc.argv[0]) + ": "
    errors = [line for line in lines if line.startswith(prefix) and ": warning: " not in line]
    return "; ".join((errors or lines)[:limit]) or "no message"


def _qemu_output(gc: GuestControl) -> Tuple[BinaryIO, int]:
    """Where QEMU's stdout and stderr go, and the offset its messages will start at: the guest
    log, appended to (not a pipe: QEMU keeps writing there while it runs, and a pipe nobody
    drains would block it); without a log, an anonymous file."""
    if gc.log:
        try:
            fd = open_log(gc, os.O_RDWR)
        except OSError as e:
            raise GuestError(nofollow_error(gc.log, e))
        out = os.fdopen(fd, "a+b")
    else:
        import tempfile
        out = tempfile.TemporaryFile()
    return out, out.seek(0, os.SEEK_END)


def _messages(out: BinaryIO, offset: int) -> str:
    out.seek(offset)
    return out.read(65536).decode(errors="replace")


def _vnc_taken(gc: GuestControl, text: str) -> Optional[str]:
    """The start error when QEMU could not listen on its VNC display: another program holds the
    port (a local user can take it first); QEMU's own words say only "Address already in use"."""
    if "-vnc " not in text or "in use" not in text:
        return None
    from .status import vnc_text
    argv = list(gc.argv)
    display = argv[argv.index("-vnc") + 1].partition(",")[0] if "-vnc" in argv[:-1] else ""
    return f"VNC display {vnc_text(display)} is taken by another program; not started"


def _write_pidfile(gc: GuestControl, pid: int) -> None:
    """The pid file, root's and 0644 (status works for every user), written whole: a temporary
    file beside it renamed over it, so no planted link or FIFO is ever opened."""
    tmp = f"{gc.pidfile}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, f"{pid}\n".encode())
    finally:
        os.close(fd)
    os.replace(tmp, gc.pidfile)


def _launch(gc: GuestControl, restore: Optional[Callable[[], None]] = None) -> int:
    """Start QEMU as launch.py describes; returns its pid once it answers on QMP (and, with
    ``restore``, once that fed it its saved state)."""
    from . import launch
    identity = launch.Identity(gc.runas or "root")
    sockets = [launch.listen_unix(gc.qmp)]
    fds = {launch.QMP_FD: sockets[0].fileno()}
    files = []  # descriptors of ours to close once QEMU holds them
    try:
        for path, number in ((gc.hmp, launch.HMP_FD), (gc.console, launch.CONSOLE_FD),
                             (gc.agent, launch.AGENT_FD)):
            if path:
                sockets.append(launch.listen_unix(path))
                fds[number] = sockets[-1].fileno()
        if gc.console and gc.console_log:
            from .console import open_log
            files.append(open_log(gc.console_log))
            fds[launch.CONSOLE_LOG_FD] = files[-1]
        taps = launch.open_taps(gc.taps)
        try:
            out, offset = _qemu_output(gc)
            with out:
                qemu = launch.spawn(gc.argv, {**fds, **taps}, identity, out)
                _write_pidfile(gc, qemu.pid)
                if gc.statefile:  # what a save of it binds the state to
                    savestate.record_launch(gc, qemu.pid)
                try:
                    code = launch.wait_ready(qemu, gc.qmp, LAUNCH_TIMEOUT)
                    if code is None and restore is not None:
                        try:
                            restore()
                        except GuestError as e:
                            qemu.kill()
                            qemu.wait()
                            raise GuestError(f"{e} (QEMU: {_error_lines(gc, _messages(out, offset))})") from None
                except GuestError:
                    qemu.kill()
                    qemu.wait()
                    raise
                text = _messages(out, offset) if code is not None else ""
        finally:
            for fd in taps.values():
                os.close(fd)  # QEMU holds them now: the taps go when it does
    except BaseException:
        _cleanup(gc)
        raise
    finally:
        for sock in sockets:
            sock.close()  # QEMU holds them now; ours would keep a dead guest's open
        for fd in files:
            os.close(fd)
    if code is None:
        qemu.returncode = 0  # it runs on, detached: no "still running" warning from Popen
        return qemu.pid
    _cleanup(gc)
    raise GuestError(_vnc_taken(gc, text) or f"QEMU failed (exit {code}): {_error_lines(gc, text)}")


def start(gc: GuestControl) -> int:
    """Start the guest unless it runs; returns 0 or raises GuestError."""
    if not gc.argv:
        raise GuestError("no QEMU command line given")
    makedirs(gc.pidfile, gc.qmp, gc.lock, gc.log)
    with locked(gc.lock, gc.stopdelay + LOCK_SLACK):
        kind, pid = _probe(gc)
        if kind == proc.GUEST:
            print(f"{gc.name} is already running (pid {pid})")
            return 0
        if gc.log and os.path.islink(gc.log):
            # refused before PRECMD runs; _open_log's O_NOFOLLOW still guards against a race
            raise GuestError(f"{gc.log}: is a symbolic link; refusing to follow it")
        if _qmp_answers(gc):
            # The pid file is gone or wrong, but a QEMU serves this guest's control socket:
            # cleaning up would cut a live guest off its socket and taps, and a second QEMU
            # would fight it for its disks.
            raise GuestError(f"a QEMU answers on {gc.qmp}, but {gc.pidfile} does not name it;"
                             " not starting a second one (stop it with `monitor … quit`, or kill it)")
        _cleanup(gc)  # what a guest that ended left: pid file, sockets, taps
        hooks.check_sources(gc)
        try:
            state = savestate.pending(gc)  # a state saved for another command line: refused here
        except GuestError as e:
            log(gc, f"start failed: {e}", error=True)
            raise
        if gc.precmd or gc.postcmd:
            hooks.check_rcfile(gc)  # before PRECMD: refuse either hook before anything happened
        if gc.precmd:
            code = hooks.run(gc.precmd)
            if code != 0:
                log(gc, f"PRECMD failed (exit {code}); not started", error=True)
                raise GuestError(f"PRECMD failed (exit {code}); not started")
        took = []
        try:
            if state is None:
                pid = _launch(gc)
            else:
                log(gc, f"restoring its {savestate.describe(state)}")
                # What is left of the start's whole budget, which systemd's TimeoutStartSec allows
                # too (services.start_timeout): LAUNCH_TIMEOUT and the save's own (RAM over
                # SAVESPEED). A restore at boot reads a cold disk, often beside other guests', and
                # a restore given up leaves the guest down: it may take what the launch did not.
                deadline = time.monotonic() + LAUNCH_TIMEOUT + gc.savetime
                pid = _launch(gc._replace(argv=gc.argv + savestate.INCOMING),
                              lambda: took.append(savestate.restore(gc, state, max(1.0, deadline - time.monotonic()))))
        except GuestError as e:
            log(gc, f"start failed: {e}", error=True)
            raise
        log(gc, f"{took[0]} (pid {pid}); the state is deleted"
            if took else f"started (pid {pid})")
        if gc.postcmd:
            # the guest runs: a failing POSTCMD is reported, but does not make the start fail
            # (systemd would then kill the guest it just started)
            code = hooks.run(gc.postcmd)
            if code != 0:
                log(gc, f"POSTCMD failed (exit {code})", error=True)
                warn(gc, f"POSTCMD failed (exit {code})")
    return 0


# -- stop --------------------------------------------------------------------------------------

def stop(gc: GuestControl, timeout: Optional[float] = None, force: bool = False,
         progress: Optional[Callable[[Transition], None]] = None,
         timing: Optional[Timing] = None, pressed: bool = False) -> int:
    """Stop the guest: power button (resent) for STOPDELAY (or ``timeout``), then QMP quit,
    SIGTERM, SIGKILL. ``progress`` receives each Transition (str() gives a line). ``pressed``:
    the caller pressed the power button just now (qemud stop: every guest's first, then the
    waits). Returns 0 once the guest is gone (or was not running); raises GuestError otherwise."""
    from . import button
    from . import stop as stopmachine
    from .qmp import QMP
    grace = gc.stopdelay if timeout is None else timeout
    with locked(gc.lock, grace + LOCK_SLACK):
        kind, pid = _probe(gc)
        gone = kind != proc.GUEST
        if not gone:
            try:
                process = proc.GuestProcess(pid, gc.name, gc.uids)  # type: ignore[arg-type]
            except ProcessLookupError:  # it ended in between
                gone = True
        if gone:
            # It obeyed the caller's press before this stop could look, and left its pid file
            # (nobody else's stop cleaned up after it, which would have logged its own steps):
            # the guest log says how it went.
            if pressed and kind != proc.ABSENT:
                for step in (stopmachine.Transition(stopmachine.POWERDOWN, 0.0, "pressed the power button"),
                             stopmachine.Transition(stopmachine.GONE, 0.0, "powered down (1 press)")):
                    log(gc, f"stop: {step}")
                    if progress is not None:
                        progress(step)
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

        if onstop.stop_mode(gc.statefile, gc.onshutdown) == "save" and not force:
            def said(line: str, elapsed: float) -> None:
                report(stopmachine.Transition(savestate.SAVE, elapsed, line))
            # saved: QEMU quits; should it linger, it is forced off (its state and disks are safe)
            force = savestate.save(gc, savestate.bound_to(gc, pid), process.alive, process.sleep, said)
            if force and not process.alive():
                process.close()
                _cleanup(gc)
                return 0
        asked = ""
        if not force:
            # what a slow control socket (or guest agent) took here counts against the grace
            # period: a stop stays within STOPDELAY and the forced steps (the init systems'
            # stop timeouts), whether the agent answers, is absent or hangs
            began = time.monotonic()
            # After qemud's press (``pressed``), no QMP connection before the machine's first
            # resend: the guest is powering off right then, and an is-it-paused query would only
            # meet its QEMU on the way out (connection reset) or, when QEMU is slow to answer,
            # spend up to a second of the grace. That press resumed a paused guest (button.press).
            if not pressed:
                button.resume(gc, report)
            if gc.agent:  # AGENT=yes: the guest agent first (runtime/agent.py), within the grace
                from . import agent
                asked = agent.ask_to_shut_down(gc.agent, report, grace - (time.monotonic() - began))
            grace = max(0.0, grace - round(time.monotonic() - began, 1))
        try:
            # process.sleep returns as soon as QEMU exits: a stop never waits out a poll interval
            stopmachine.run(process.alive, process.signal, qmp, grace, force,
                            timing or stopmachine.Timing(), report, sleep=process.sleep,
                            pressed=pressed and not force, asked=asked)
        except GuestError as e:
            log(gc, f"stop failed: {e}", error=True)
            raise
        finally:
            process.close()
        _cleanup(gc)
        if gc.console_log:
            from .console import trim_log
            trim_log(gc.console_log)
    return 0


# -- pause / resume / reset ------------------------------------------------------------------

# action: (QMP command, what the guest is afterwards). No lock, as status and monitor: one
# short QMP command, which must get through while a stop waits for the guest to power down.
_RUN_STATE = {"pause": ("stop", "paused"), "resume": ("cont", "running"),
              "reset": ("system_reset", "reset")}


def run_state(gc: GuestControl, action: str, timeout: float = MONITOR_TIMEOUT) -> int:
    """Pause (QMP ``stop``), resume (``cont``) or reset (``system_reset``: a hard reboot, as the
    reset button) the running guest; says so in one line and in the guest log."""
    from .qmp import QMP
    command, done = _RUN_STATE[action]
    try:
        with QMP(gc.qmp, timeout) as q:
            q.execute(command)
    except QMPConnectError as e:
        if os.path.exists(gc.qmp):
            raise GuestError(f"its control socket does not answer (is it running?): {e}", 1) from None
        raise GuestError("not running (no control socket)", 1) from None
    except QMPError as e:
        raise GuestError(f"{action} failed: {e}", 1) from None
    log(gc, done)
    print(f"{gc.name}: {done}")
    return 0
