"""Save a guest's state at its stop, restore it at its next start (ONSHUTDOWN=save).

QEMU's seccomp sandbox forbids spawning, so no ``exec:`` migration, and QEMU (running as RUNAS)
may not open root's files: the helper opens the state file itself and hands QEMU the open file
over QMP, as libvirt does (``getfd`` with SCM_RIGHTS, then ``migrate``/``migrate-incoming`` with
``fd:NAME``). The files, all root's in a folder of root's (VARDIR/state, 0711: others may look a
name up, so that their status says "saved" where VARDIR lets them through — the installed
VARDIR is 0750, root's alone — but not list it):

- ``NAME.state`` (0600): QEMU's migration stream, the guest's RAM and devices;
- ``NAME.state.meta`` (0644): what it was saved with (the digest of the QEMU command line, when,
  how big, whether it ran or was paused), so that a start with another command line (RAM,
  devices changed) refuses it, and a guest paused when saved is restored paused;
- ``NAME.state.part`` while it is written (renamed into place once complete and synced);
- ``NAME.state.onstop``: what `qemu-init stop NAME [--save]` asks of the next stop ("save" or
  "shutdown") where that is not the guest's ONSHUTDOWN (runtime/onstop.py).

A save that fails, or does not finish within its budget (5 s plus RAM over the host's SAVESPEED,
``--savetime``), is undone (``migrate_cancel``, ``cont``) and the stop goes on with the power
button. A restore has the same budget (the start's ``--savetime``; the init systems' start
timeouts add it) and deletes the state once the guest runs again: it is never restored twice.
"""

from __future__ import annotations

import os
import time

from ..errors import GuestError, QMPConnectError, QMPError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Sequence

SAVE_SLACK = 5        # seconds a save takes beyond writing the RAM: QMP, device state, sync
QMP_TIMEOUT = 5.0     # per QMP command of a save or restore
POLL = 0.05           # between two looks at query-migrate
CANCEL_WAIT = 3.0     # for a cancelled save to be undone before the guest is resumed
QUIT_WAIT = 5.0       # for QEMU to exit after `quit` once its state is saved
FDNAME = "qi-state"   # the name QEMU knows the state file's descriptor by
NO_LIMIT = 1 << 40    # max-bandwidth for a save: QEMU's default (128 MiB/s) is for networks
META, PART, ONSTOP = ".meta", ".part", ".onstop"
SAVE = "SAVE"         # the stop's progress reports of a save (a stop machine Transition's state)
MODES = ("shutdown", "save")


def budget(ram_bytes: int, speed: int) -> int:
    """Seconds a save of ``ram_bytes`` of RAM may take, writing ``speed`` bytes a second."""
    return SAVE_SLACK + -(-ram_bytes // max(speed, 1))


def digest(argv: Sequence[str]) -> str:
    """What a state is bound to: QEMU's command line as the script gives it (without the
    ``-incoming`` the helper adds to restore), so a changed RAM or device refuses it."""
    import hashlib
    return hashlib.sha256("\0".join(argv).encode()).hexdigest()


class SaveFailed(Exception):
    """Why a save did not happen; the guest runs on (or is as paused as it was)."""


# -- the files ---------------------------------------------------------------------------------

def _open_owned(path: str, flags: int = os.O_RDONLY) -> int:
    """``path`` opened, never through a link, and only if it is a regular file of ours (or root's,
    for a status not run by root)."""
    import stat
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
        os.close(fd)
        raise OSError(0, "not a regular file of root's, writable by root alone", path)
    return fd


def meta(statefile: str) -> Optional[Dict[str, Any]]:
    """The record of a saved state, or None when there is none (or it is unreadable)."""
    if not statefile or not os.path.lexists(statefile):
        return None
    import json
    try:
        fd = _open_owned(statefile + META)
        with os.fdopen(fd, "rb") as f:
            record = json.loads(f.read(65536))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def saved(statefile: str) -> bool:
    """Whether a saved state waits to be restored (what status says "saved" for)."""
    return bool(statefile) and os.path.lexists(statefile)


def describe(statefile: str) -> str:
    """"state of 2026-12-01 23:04:05 +0000, 123 MiB, in PATH", for the status line and the log."""
    record = meta(statefile) or {}
    when = record.get("saved", "")
    size = record.get("bytes")
    parts = [f"state of {when}" if isinstance(when, str) and when else "state"]
    if isinstance(size, int):
        parts.append(f"{size / (1 << 20):.0f} MiB")
    return ", ".join(parts) + f", in {statefile}"


def discard(statefile: str) -> bool:
    """Remove a saved state and its record; whether there was one."""
    found = False
    for path in (statefile, statefile + META, statefile + PART):
        try:
            os.unlink(path)
            found = found or path == statefile
        except FileNotFoundError:
            pass
    return found


STATEDIR_MODE = 0o711  # a guest's RAM may hold secrets: nobody else lists or writes the folder


def _statedir(statefile: str) -> str:
    """The state folder, made STATEDIR_MODE if need be."""
    import stat
    folder = os.path.dirname(os.path.abspath(statefile))
    os.makedirs(folder, mode=STATEDIR_MODE, exist_ok=True)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise OSError(0, "not a folder of root's", folder)
    if stat.S_IMODE(st.st_mode) != STATEDIR_MODE:
        os.chmod(folder, STATEDIR_MODE)
    return folder


def _write_private(path: str, data: bytes, sync: bool = False, mode: int = 0o600) -> None:
    """``path`` written whole, root's and ``mode`` (0600: root's alone): a temporary file beside
    it renamed over it, so no planted link or FIFO is ever opened."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _write_meta(statefile: str, record: Dict[str, Any]) -> None:
    import json
    # 0644: a user's status reads it (when, how big) to say "saved", where VARDIR lets them
    # through (not the installed 0750 one); the state stays 0600
    _write_private(statefile + META, json.dumps(record, indent=1, sort_keys=True).encode() + b"\n", sync=True,
                   mode=0o644)


# -- what a start records for a later save -------------------------------------------------------
# A state is bound to the command line the script gave (digest). A stop is not given it, and the
# running QEMU's cannot always be read back word for word: FreeBSD's ps joins argv with spaces,
# so `-smbios "type=1,manufacturer=Acme Widgets"` reads as two words there. So the start records
# the digest of what it launched beside the pid file (root's, 0600: PID DIGEST), and a save of
# that pid binds the state to it; the running process is still proven the guest's by proc.py.

def launch_record(pidfile: str) -> str:
    return pidfile + ".argv"


def record_launch(gc, pid: int) -> None:  # type: ignore[no-untyped-def]
    """At start: the command line ``gc.argv`` (less the ``-incoming`` of a restore) QEMU ``pid``
    was launched with, for its save. Never fails the start of a QEMU that runs: without the
    record, a save binds the state to what the system tells (bound_to)."""
    argv = tuple(gc.argv)
    if argv[-len(INCOMING):] == INCOMING:
        argv = argv[:-len(INCOMING)]
    try:
        _write_private(launch_record(gc.pidfile), f"{pid} {digest(argv)}\n".encode())
    except OSError:
        pass


def bound_to(gc, pid: int) -> str:  # type: ignore[no-untyped-def]
    """The digest a save of QEMU ``pid`` binds the state to: the one its start recorded; for a
    guest started before starts recorded it, its command line as the system tells it where that
    is exact (Linux; FreeBSD's ps splits it at spaces, and a state bound to that would be refused
    at the next start, leaving the guest down); "" when neither can be told (no save then)."""
    try:
        fd = _open_owned(launch_record(gc.pidfile))
        try:
            words = os.read(fd, 256).decode(errors="replace").split()
        finally:
            os.close(fd)
        if len(words) == 2 and words[0] == str(pid):
            return words[1]
    except OSError:
        pass
    from . import platform, proc
    try:
        if not platform.current().EXACT_ARGV:
            return ""
        argv = tuple(proc.cmdline(pid) or ())
    except OSError:
        return ""
    if argv[-len(INCOMING):] == INCOMING:  # a guest restored before: the same command line
        argv = argv[:-len(INCOMING)]
    return digest(argv) if argv else ""


# -- what a stop does --------------------------------------------------------------------------

def _migration(q, what: str, deadline: float, clock: Callable[[], float],  # type: ignore[no-untyped-def]
               sleep: Callable[[float], None], budget_text: str) -> None:
    """Poll query-migrate until the migration completed; SaveFailed (GuestError when
    restoring) otherwise."""
    while True:
        info = q.execute("query-migrate", timeout=QMP_TIMEOUT)
        status = info.get("status") if isinstance(info, dict) else None
        if status == "completed":
            return
        if status in ("failed", "cancelled", "cancelling"):
            detail = info.get("error-desc") if isinstance(info, dict) else None
            raise SaveFailed(f"{what} {status}" + (f": {' '.join(str(detail).split())[:200]}" if detail else ""))
        if clock() >= deadline:
            raise SaveFailed(f"{what} not done within {budget_text}")
        sleep(POLL)


def save(gc, bound: str, alive: Callable[[], bool], sleep: Callable[[float], None],  # type: ignore[no-untyped-def]
         say: Callable[[str, float], None], clock: Callable[[], float] = time.monotonic,
         connect: Optional[Callable[[], Any]] = None) -> bool:
    """Save the running guest's state to ``gc.statefile`` and make QEMU quit. True once the
    state is complete on disk (QEMU asked to quit; the caller makes sure it is gone). False when
    it could not be saved: then everything is as it was (the guest runs, resumed) and the
    caller shuts it down instead. ``bound``: the digest of the command line QEMU was started
    with (bound_to), which the state is bound to. ``say(line, elapsed)`` reports each step."""
    began = clock()
    seconds = gc.savetime or SAVE_SLACK
    say(f"saving its state to {gc.statefile} (up to {seconds:g} s)", 0.0)
    try:
        if not bound:
            raise SaveFailed("cannot tell the command line QEMU runs")
        size = _save(gc, bound, began + seconds, f"{seconds:g} s", clock, sleep, connect)
    except SaveFailed as e:
        say(f"could not save its state: {e}; shutting it down instead", clock() - began)
        return False
    took = clock() - began
    say(f"saved its state to {gc.statefile} ({size / (1 << 20):.0f} MiB in {took:.1f} s)", took)
    deadline = clock() + QUIT_WAIT
    while alive() and clock() < deadline:
        sleep(0.1)
    return True


def _save(gc, bound: str, deadline: float, budget_text: str, clock, sleep, connect) -> int:  # type: ignore[no-untyped-def]
    from .qmp import QMP
    part = gc.statefile + PART
    try:
        folder = _statedir(gc.statefile)
        q = connect() if connect is not None else QMP(gc.qmp, QMP_TIMEOUT)
    except OSError as e:
        raise SaveFailed(f"{e.filename or gc.statefile}: {e.strerror}") from None
    fd = -1
    paused = migrating = renamed = False
    try:
        state = q.execute("query-status")
        was = state.get("status") if isinstance(state, dict) else None
        if was not in ("running", "paused"):
            raise SaveFailed(f"the guest is {was or 'in an unknown state'}")
        memory = q.execute("query-memory-size-summary")
        ram = memory.get("base-memory") if isinstance(memory, dict) else None
        vfs = os.statvfs(folder)
        free = vfs.f_bavail * vfs.f_frsize
        if isinstance(ram, int) and free < ram:  # the stream is at most about the RAM
            raise SaveFailed(f"{folder} has {free >> 20} MiB free, less than the guest's RAM ({ram >> 20} MiB)")
        try:
            os.unlink(part)
        except FileNotFoundError:
            pass
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        q.execute("stop")
        paused = was == "running"
        q.execute("migrate-set-parameters", {"max-bandwidth": NO_LIMIT})
        q.execute("getfd", {"fdname": FDNAME}, fds=[fd])
        q.execute("migrate", {"uri": f"fd:{FDNAME}"})
        migrating = True
        _migration(q, "the save", deadline, clock, sleep, budget_text)
        os.fsync(fd)
        size = os.fstat(fd).st_size
        _write_meta(gc.statefile, {"name": gc.name, "argv": bound, "bytes": size, "ram": ram, "was": was,
                                   "saved": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                                   "qemu": _version(getattr(q, "greeting", None))})
        os.replace(part, gc.statefile)
        renamed = True
        dirfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    except (SaveFailed, QMPError, OSError) as e:
        why = e if isinstance(e, SaveFailed) else SaveFailed(
            f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename else str(getattr(e, "strerror", None) or e))
        _undo(q, migrating, paused, clock, sleep)
        # The guest runs on: a state renamed into place before the failure must not be restored
        # later (its disks moved on). The state goes before its record, as it came after it: at
        # no moment a state without its record.
        for path in (part,) + ((gc.statefile,) if renamed else ()) + (gc.statefile + META,):
            try:
                os.unlink(path)
            except OSError:
                pass
        q.close()
        raise why from None
    finally:
        if fd >= 0:
            os.close(fd)
    try:
        q.execute("quit")
    except QMPError:
        pass  # QEMU may close the connection before it answers
    q.close()
    return size


def _undo(q, migrating: bool, paused: bool, clock, sleep) -> None:  # type: ignore[no-untyped-def]
    """After a failed save: the migration cancelled, the guest resumed if it was running."""
    try:
        if migrating:
            q.execute("migrate_cancel")
            deadline = clock() + CANCEL_WAIT
            while clock() < deadline:
                info = q.execute("query-migrate")
                if not isinstance(info, dict) or info.get("status") not in ("active", "cancelling", "setup",
                                                                             "device", "pre-switchover"):
                    break
                sleep(POLL)
        if paused:
            q.execute("cont")
    except QMPError:
        pass  # the stop that follows copes with a QEMU that no longer answers


def _version(greeting: Any) -> str:
    try:
        v = greeting["QMP"]["version"]["qemu"]
        return f"{v['major']}.{v['minor']}.{v['micro']}"
    except (KeyError, TypeError):
        return ""


# -- what a start does -------------------------------------------------------------------------

INCOMING = ("-incoming", "defer")


def pending(gc) -> Optional[str]:  # type: ignore[no-untyped-def]
    """The saved state this start restores, or None to boot afresh. GuestError when there is
    one that does not belong to this command line: it is kept, and the guest is not started."""
    if not saved(gc.statefile):
        return None
    record = meta(gc.statefile)
    fresh = f"`qemu-init start {gc.name} --discard-state` boots it afresh"
    if not record:
        raise GuestError(f"{gc.statefile}: a saved state without a readable record ({gc.statefile}{META});"
                         f" kept, not started: {fresh}")
    if record.get("argv") != digest(gc.argv):
        raise GuestError(f"the state saved {record.get('saved', '')} in {gc.statefile} was made with another"
                         f" QEMU command line (RAM or devices changed since); kept, not started: restore"
                         f" the old settings to resume it, or {fresh}")
    return gc.statefile


def restore(gc, statefile: str, timeout: float, clock: Callable[[], float] = time.monotonic,  # type: ignore[no-untyped-def]
            sleep: Callable[[float], None] = time.sleep) -> str:
    """Feed the saved state to the QEMU just started with ``-incoming defer``, resume the guest
    (unless it was paused when saved: it stays paused) and delete the state; returns what was
    done, for the log. GuestError if it fails (the state is kept)."""
    from .qmp import QMP
    began = clock()
    paused = (meta(statefile) or {}).get("was") == "paused"
    kept = f"{statefile} is kept: `qemu-init start {gc.name} --discard-state` boots it afresh"
    try:
        fd = _open_owned(statefile)
    except OSError as e:
        raise GuestError(f"cannot restore {statefile}: {e.strerror}") from None
    try:
        with QMP(gc.qmp, QMP_TIMEOUT) as q:
            q.execute("getfd", {"fdname": FDNAME}, fds=[fd])
            q.execute("migrate-incoming", {"uri": f"fd:{FDNAME}"})
            _migration(q, "the restore", began + timeout, clock, sleep, f"{timeout:g} s")
            if not paused:  # a save pauses every guest first: QEMU loads it paused
                q.execute("cont")
    except QMPConnectError:  # QEMU exits when a state does not load; its own words are in its log
        raise GuestError(f"could not restore the saved state: QEMU ended while loading it; {kept}") from None
    except (SaveFailed, QMPError) as e:
        raise GuestError(f"could not restore the saved state: {e}; {kept}") from None
    finally:
        os.close(fd)
    discard(statefile)
    done = "left it paused, as it was when saved" if paused else "resumed it"
    return f"restored its saved state in {clock() - began:.1f} s and {done}"
