"""What a guest is doing, as a record (``status``), and its one line for people (``line``),
formatted at the edge: the helper and ``qemu-init status`` print the line, ``list``/``--json``
(qemu_init/state.py) read the record's fields. Also how the status line and ``show`` describe a
guest's VNC display and human monitor: from the data the helper is given (``--vnc ADDR:N``,
``--monitor ADDR:PORT``, ``--hmp SOCKET``), so the command line carries no display text.

``gc`` is anything with ``name``, ``pidfile``, ``qmp``, ``uids``, ``vnc``, ``monitor`` and
``hmp`` (a control.GuestControl). status never waits for the guest's lock: it must answer while a
stop waits. It only reads, but for keeping the console log within its cap (and asking the guest
agent), which it does only holding that lock, taken if free at once (lock.try_locked).
"""

from __future__ import annotations

from collections import namedtuple

from ..errors import QMPError
from . import proc

STATUS_QMP_TIMEOUT = 2.0
STATUS_AGENT_TIMEOUT = 0.5  # status NAME asks an AGENT=yes guest's agent this long at most
# QEMU's run states in a user's words (query-status); others are shown as QEMU says them.
_STATES = {"running": "running", "paused": "paused", "shutdown": "shutting down",
           "suspended": "suspended", "guest-panicked": "crashed (guest-panicked)"}
# What each kind of pid file (proc.probe) means, with its LSB code; SAVED: not running, its
# saved state waiting for the next start (ONSHUTDOWN=save, savestate.py).
NOT_RUNNING, DEAD, STALE, UNKNOWN, SAVED = "not running", "dead", "stale", "unknown", "saved"


class Status(namedtuple("Status", "code state pid why vnc monitor")):
    """``code``: LSB's (0 running, 1 dead, 3 stopped, 4 unknown). ``state``: QEMU's run state in
    words when it runs ("running", "paused", "shutting down", …), else NOT_RUNNING, SAVED, DEAD,
    STALE or UNKNOWN. ``pid``: the guest's (or the stale one's), None without one. ``why``: what more
    there is to say ("QMP not answering", the error that left it unknown, the pid file's
    trouble). ``vnc``, ``monitor``: where to reach a running guest ("" when not)."""

    __slots__ = ()

    @property
    def running(self) -> bool:
        return self.code == 0


def status(gc, agent: bool = False) -> Status:  # type: ignore[no-untyped-def]
    """What the guest is doing, from its pid file, the process and (when it runs) QMP. ``agent``
    (``qemu-init status NAME``; never the scripts' status, nor tables of every guest): say in
    ``why`` whether the guest agent answers (up to STATUS_AGENT_TIMEOUT). That, and trimming a
    console log over its cap, only while holding the guest's lock, taken if it is free at once
    (lock.try_locked): never against a start or stop (the agent serves one client at a time, and
    a stop asking it to shut down must have it), never waiting; a start or stop that comes
    meanwhile waits for them (the agent's half second at most, and the copy of a log over its
    cap)."""
    st = _status(gc)
    console_log = getattr(gc, "console_log", "")
    ask = agent and st.running and getattr(gc, "agent", "")
    if console_log:
        from .console import over_cap
        console_log = console_log if over_cap(console_log) else ""
    if not (ask or console_log):
        return st
    from .lock import try_locked
    with try_locked(getattr(gc, "lock", "")) as held:
        if not held:  # a start or stop is under way: nothing more to say or do
            return st
        if console_log:
            from .console import trim_log
            trim_log(console_log)
        if ask:
            from .agent import answers
            said = "agent answers" if answers(gc.agent, STATUS_AGENT_TIMEOUT) else "agent not answering"
            st = st._replace(why=f"{st.why}, {said}" if st.why else said)
    return st


def _status(gc) -> Status:  # type: ignore[no-untyped-def]
    """The record, from reading alone."""
    try:
        kind, pid = proc.probe(gc.pidfile, gc.name, gc.uids)
    except OSError as e:
        return Status(4, UNKNOWN, None, f"{e.filename or gc.pidfile}: {e.strerror}", "", "")
    if kind == proc.ABSENT:
        statefile = getattr(gc, "statefile", "")
        if statefile:
            from . import savestate
            if savestate.saved(statefile):
                return Status(3, SAVED, None, savestate.describe(statefile), "", "")
        return Status(3, NOT_RUNNING, None, "", "", "")
    if kind == proc.BADFILE:
        return Status(1, DEAD, None, f"pid file {gc.pidfile} exists (without a pid)", "", "")
    if kind == proc.DEAD:
        return Status(1, DEAD, pid, f"pid file {gc.pidfile} exists (pid {pid})", "", "")
    if kind == proc.FOREIGN:
        return Status(1, STALE, pid, f"stale pid file {gc.pidfile} (pid {pid} is not this guest)", "", "")
    from .qmp import QMP
    why = ""
    try:
        with QMP(gc.qmp, STATUS_QMP_TIMEOUT) as q:
            result = q.execute("query-status")
        state = str(result.get("status", "unknown")) if isinstance(result, dict) else "unknown"
        state = _STATES.get(state, state)
    except QMPError:
        state, why = "running", "QMP not answering"
    return Status(0, state, pid, why, vnc_text(gc.vnc), monitor_text(gc.monitor, gc.hmp))


def line(name: str, st: Status) -> str:
    """The one line ``status`` prints: "web1: running (pid 42, vnc …, monitor …)"."""
    if st.code == 4:
        return f"{name}: unknown ({st.why})"
    if st.code == 3:
        return f"{name}: saved ({st.why})" if st.state == SAVED else f"{name}: not running"
    if st.state == STALE:
        return f"{name}: not running, {st.why}"
    if st.code == 1:
        return f"{name}: dead, but {st.why}"
    details = [f"pid {st.pid}"] + [f"{k} {v}" for k, v in (("vnc", st.vnc), ("monitor", st.monitor)) if v]
    return f"{name}: {st.state} ({', '.join(details + ([st.why] if st.why else []))})"


VNC_BASE_PORT = 5900  # display N is TCP port 5900+N


def vnc_text(vnc: str) -> str:
    """``127.0.0.1:5`` -> ``127.0.0.1:5 (port 5905)``; "" -> "" (no VNC). Text that is no
    ADDR:N (a script generated before the helper got data) is shown as it is."""
    address, sep, number = vnc.rpartition(":")
    if sep and address and number.isdigit() and " " not in vnc:
        return f"{vnc} (port {VNC_BASE_PORT + int(number)})"
    return vnc


def monitor_text(monitor: str, hmp: str = "") -> str:
    """``127.0.0.1:30320`` -> ``tcp 127.0.0.1:30320``; else the unix socket ``hmp``; "" if
    neither (no monitor, or "off"). Older scripts' text ("tcp …") is shown as it is."""
    if monitor:
        return monitor if " " in monitor else f"tcp {monitor}"
    return f"unix {hmp}" if hmp else ""
