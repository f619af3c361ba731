"""The stop state machine, driven by a fake process and a fake QMP server (fakeqmp.py).

Timings are scaled down (resend 0.2 s, …), and most tests run the machine on a Clock whose
sleeps take no time (stop.run takes ``clock`` and ``sleep``): a wait of seconds costs nothing,
yet the machine sees its deadlines pass exactly. What a real peer takes (a socket timeout) still
counts on that clock. Three tests keep the real clock and real sleeps (REAL).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import types

import pytest

from fakeqmp import BAD_PEERS, CLOSE, FakeQMP, event, reply, sock_path  # noqa: F401  (sock_path: fixture)
from qemu_init.errors import GuestError, QMPConnectError
from qemu_init.runtime import control, stop
from qemu_init.runtime.qmp import QMP
from qemu_init.runtime.status import line
from qemu_init.runtime.stop import GONE, KILL, POWERDOWN, QUIT, TERM

FAST = stop.Timing(resend=0.2, quit_wait=0.3, term_wait=0.3, kill_wait=0.3, qmp_timeout=0.2, poll=0.01)
NEVER = 10**9


class Clock:
    """The monotonic clock plus every sleep so far, and a sleep that only adds to it: the
    machine's waits pass at once, time really spent (a peer's timeout) counts too."""

    def __init__(self):
        self.slept = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.slept

    def sleep(self, seconds: float) -> None:
        self.slept += max(0.0, seconds)


class RealClock:
    """The machine's defaults: time.monotonic and time.sleep."""

    def __call__(self) -> float:
        return time.monotonic()

    sleep = staticmethod(time.sleep)


REAL = RealClock()


class FakeGuest:
    """What the machine sees of a QEMU process, and how that QEMU answers QMP. Its exits happen
    on ``clock`` (``exit_delay`` after the signal or command that causes them)."""

    def __init__(self, ignore_powerdown=NEVER, obeys_quit=True, obeys=(signal.SIGTERM, signal.SIGKILL),
                 exit_delay=0.0, clock=None):
        self.ignore_powerdown = ignore_powerdown
        self.obeys_quit = obeys_quit
        self.obeys = obeys
        self.exit_delay = exit_delay
        self.clock = clock or Clock()
        self.powerdowns = 0
        self.signals = []
        self.exit_at = None  # on self.clock

    def alive(self):
        return self.exit_at is None or self.clock() < self.exit_at

    def _exit(self, after=None):
        if self.exit_at is None:
            self.exit_at = self.clock() + (self.exit_delay if after is None else after)

    def signal(self, sig):
        assert self.alive(), "signalled a process that was gone"
        self.signals.append(sig)
        if sig in self.obeys:
            self._exit()
        return True

    def handler(self, server, message):
        command = message["execute"]
        if command == "system_powerdown":
            self.powerdowns += 1
            answer = [reply(message), event("POWERDOWN")]
            if self.powerdowns > self.ignore_powerdown:
                self._exit()
            return answer
        if command == "quit" and self.obeys_quit:
            self._exit()
            return [event("SHUTDOWN", guest=False, reason="host-qmp-quit"), reply(message)]
        return [reply(message)]


def run(path, guest, grace=1.0, force=False, timing=FAST):
    """The machine against ``guest``'s QMP at ``path``, on the guest's clock."""
    steps = []
    with QMP(path) as conn:
        stop.run(guest.alive, guest.signal, lambda c, t: conn.execute(c, timeout=t), grace,
                 force, timing, steps.append, clock=guest.clock, sleep=guest.clock.sleep)
    return steps


def machine(guest, qmp, grace, timing=FAST, report=None):
    """The machine with a QMP sender of the test's own (no socket), on the guest's clock."""
    steps = []
    stop.run(guest.alive, guest.signal, qmp, grace, timing=timing, report=report or steps.append,
             clock=guest.clock, sleep=guest.clock.sleep)
    return steps


def states(steps):
    return [s.state for s in steps]


def test_graceful_guest_stops_at_the_first_press(sock_path):
    guest = FakeGuest(ignore_powerdown=0, clock=REAL)  # on the real clock
    with FakeQMP(sock_path, guest.handler) as server:
        steps = run(sock_path, guest, grace=5)
    assert states(steps) == [POWERDOWN, GONE]
    assert steps[-1].elapsed < 0.5
    assert server.commands().count("system_powerdown") == 1
    assert guest.signals == []


def test_power_button_is_pressed_again_while_the_guest_boots(sock_path):
    guest = FakeGuest(ignore_powerdown=3)
    with FakeQMP(sock_path, guest.handler):
        steps = run(sock_path, guest, grace=5)
    assert states(steps) == [POWERDOWN, GONE]
    assert guest.powerdowns == 4 and steps[-1].why == "powered down (4 presses)"
    assert 3 * FAST.resend - 0.05 < steps[-1].elapsed < 3 * FAST.resend + 0.5
    assert guest.signals == []


def test_a_press_made_just_before_counts_and_is_not_repeated_at_once(sock_path):
    # qemud stop presses every guest's button itself, then runs the machine with pressed=True
    guest = FakeGuest(ignore_powerdown=0)  # missed qemud's press (not sent here), obeys the next
    steps = []
    with FakeQMP(sock_path, guest.handler) as server:
        with QMP(sock_path) as conn:
            stop.run(guest.alive, guest.signal, lambda c, t: conn.execute(c, timeout=t), 5, False, FAST,
                     steps.append, pressed=True)
    assert states(steps) == [POWERDOWN, GONE] and steps[0].why.startswith("pressed the power button")
    assert server.commands().count("system_powerdown") == 1  # the machine's own: the resend
    assert FAST.resend - 0.05 < steps[-1].elapsed and steps[-1].why == "powered down (2 presses)"


def test_stubborn_guest_gets_quit_when_the_grace_ends(sock_path):
    guest = FakeGuest()
    with FakeQMP(sock_path, guest.handler) as server:
        steps = run(sock_path, guest, grace=1.0)
    assert states(steps) == [POWERDOWN, QUIT, GONE]
    assert 1.0 <= steps[1].elapsed < 1.2
    assert "still running after 1 s" in str(steps[1]) and "at 1.0 s" in str(steps[1])
    assert guest.powerdowns >= 4  # resent all along
    assert server.commands()[-1] == "quit"
    assert guest.signals == []


def test_force_skips_the_power_button(sock_path):
    guest = FakeGuest()
    with FakeQMP(sock_path, guest.handler) as server:
        steps = run(sock_path, guest, grace=30, force=True)
    assert states(steps) == [QUIT, GONE]
    assert "system_powerdown" not in server.commands()
    assert steps[-1].elapsed < 0.5


def test_quit_ignored_then_sigterm(sock_path):
    guest = FakeGuest(obeys_quit=False)
    with FakeQMP(sock_path, guest.handler):
        steps = run(sock_path, guest, grace=0.5)
    assert states(steps) == [POWERDOWN, QUIT, TERM, GONE]
    assert guest.signals == [signal.SIGTERM]


def test_sigterm_ignored_then_sigkill(sock_path):
    guest = FakeGuest(obeys_quit=False, obeys=(signal.SIGKILL,))
    with FakeQMP(sock_path, guest.handler):
        steps = run(sock_path, guest, grace=0.3)
    assert states(steps) == [POWERDOWN, QUIT, TERM, KILL, GONE]
    assert guest.signals == [signal.SIGTERM, signal.SIGKILL]


def test_a_process_that_survives_sigkill_is_an_error(sock_path):
    guest = FakeGuest(obeys_quit=False, obeys=())
    steps = []
    with FakeQMP(sock_path, guest.handler), QMP(sock_path) as conn:
        with pytest.raises(GuestError, match="after SIGKILL"):
            stop.run(guest.alive, guest.signal, lambda c, t: conn.execute(c, timeout=t), 0.3,
                     False, FAST, steps.append, clock=guest.clock, sleep=guest.clock.sleep)
    assert states(steps) == [POWERDOWN, QUIT, TERM, KILL]
    assert steps[-1].elapsed == pytest.approx(0.3 + FAST.quit_wait + FAST.term_wait, abs=0.1)


def test_socket_that_accepts_but_never_answers_does_not_hang(sock_path):
    guest = FakeGuest(clock=REAL)  # on the real clock: every press really times out
    with FakeQMP(sock_path, guest.handler, greeting=None):
        started = time.monotonic()
        steps = run(sock_path, guest, grace=1.0)
        took = time.monotonic() - started
    assert states(steps) == [POWERDOWN, QUIT, TERM, GONE]
    assert "timed out" in steps[2].why
    assert guest.signals == [signal.SIGTERM]
    assert took < 1.0 + FAST.qmp_timeout + 0.6 + 0.5


def test_no_control_socket_does_not_wait_out_the_grace(sock_path):
    guest = FakeGuest()
    steps = run(sock_path, guest, grace=30)  # nothing listens on sock_path
    assert states(steps) == [POWERDOWN, QUIT, TERM, GONE]
    assert "control socket unavailable" in steps[1].why
    assert steps[-1].elapsed < 1.0


class ClosesAfterPress:
    """QMP of a QEMU whose guest obeys the first press: QEMU then closes its socket (every
    later connection is refused) and exits ``exit_after`` seconds later (never: None)."""

    def __init__(self, guest, exit_after):
        self.guest, self.exit_after, self.sent = guest, exit_after, []

    def __call__(self, command, timeout):
        self.sent.append(command)
        if len(self.sent) > 1:
            raise QMPConnectError("qmp: Connection refused")
        if self.exit_after is not None:
            self.guest._exit(after=self.exit_after)


def test_refused_connection_after_a_press_waits_for_qemu_to_exit():
    guest = FakeGuest()
    qmp = ClosesAfterPress(guest, exit_after=0.6)  # well after the refused second press at 0.2 s
    steps = machine(guest, qmp, 5.0)
    assert states(steps) == [POWERDOWN, GONE]
    assert steps[-1].why == "powered down (1 press)" and 0.6 <= steps[-1].elapsed < 0.7
    assert qmp.sent[:2] == ["system_powerdown"] * 2 and guest.signals == []


def test_refused_connection_after_a_press_still_forces_at_the_deadline():
    guest = FakeGuest()
    qmp = ClosesAfterPress(guest, exit_after=None)
    steps = machine(guest, qmp, 1.0)
    assert states(steps) == [POWERDOWN, QUIT, TERM, GONE]
    assert steps[1].why == "still running after 1 s" and steps[1].elapsed >= 1.0  # the whole grace
    assert "Connection refused" in steps[2].why and guest.signals == [signal.SIGTERM]


def test_refused_socket_of_a_qemu_on_its_way_out_is_not_called_forced():
    # Someone else pressed the button (a guest's own unit and qemud stop at the same host
    # shutdown): QEMU has closed its socket and exits; this stop only watches it go.
    guest = FakeGuest()
    guest._exit(after=0.3)

    def refused(command, timeout):
        raise QMPConnectError("qmp: Connection refused")

    steps = machine(guest, refused, 30.0)
    assert states(steps) == [POWERDOWN, GONE] and guest.signals == []
    assert "on its way out" in steps[-1].why and not steps[-1].forced


def test_qemu_hanging_up_on_quit_is_not_an_error(sock_path):
    guest = FakeGuest(exit_delay=0.05)

    def handler(server, message):
        if message["execute"] == "quit":
            guest._exit()
            return CLOSE  # QEMU may exit before its reply to quit is out
        return guest.handler(server, message)

    with FakeQMP(sock_path, handler):
        steps = run(sock_path, guest, force=True)
    assert states(steps) == [QUIT, GONE]
    assert guest.signals == []


def test_split_replies_and_interleaved_events(sock_path):
    guest = FakeGuest(ignore_powerdown=1)
    with FakeQMP(sock_path, guest.handler, chunk=3, chunk_delay=0.001):
        steps = run(sock_path, guest, grace=5, timing=stop.Timing(resend=0.2, qmp_timeout=1.0, poll=0.01))
    assert states(steps) == [POWERDOWN, GONE]
    assert guest.powerdowns == 2


@pytest.mark.parametrize("peer", sorted(BAD_PEERS))
def test_any_qmp_trouble_ends_in_signals(sock_path, peer):
    """A peer that is no QEMU (or a broken one) counts as no answer: the machine escalates."""
    guest = FakeGuest()
    with FakeQMP(sock_path, lambda server, message: BAD_PEERS[peer](message)):
        started = time.monotonic()
        steps = run(sock_path, guest, grace=0.5)
        took = time.monotonic() - started
    assert states(steps) == [POWERDOWN, QUIT, TERM, GONE]
    assert steps[2].why.startswith("QMP quit failed (")
    assert guest.signals == [signal.SIGTERM]
    assert took <= 0.5 + FAST.forced + 0.5  # the grace, the forced steps' budget, slack for a busy host


def test_a_bug_while_talking_qmp_still_ends_in_signals():
    """Defence in depth: whatever the QMP sender raises, the guest is forced off, not left running."""
    guest = FakeGuest()

    def broken(command, timeout):
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")

    steps = machine(guest, broken, 0.3)
    assert states(steps) == [POWERDOWN, QUIT, TERM, GONE]
    assert "RecursionError: maximum recursion depth" in steps[2].why and guest.signals == [signal.SIGTERM]


def test_nothing_is_signalled_once_the_guest_is_gone(sock_path):
    guest = FakeGuest()
    guest._exit()
    steps = run(sock_path, guest)
    assert states(steps) == [POWERDOWN, GONE]
    assert guest.signals == []


# -- control.stop / status end to end with a fake QEMU process ---------------------------------

@pytest.fixture
def folder():
    path = tempfile.mkdtemp(prefix="qi-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _sleeper(argv0, *args):
    """A harmless sleeper whose /proc cmdline reads ``argv0 -c … args``."""
    return subprocess.Popen([argv0, "-c", "import time; time.sleep(60)", *args], executable=sys.executable)


def _gc(folder, name="fake1"):
    return control.GuestControl(name=name, pidfile=f"{folder}/g.pid", qmp=f"{folder}/g.qmp",
                                lock=f"{folder}/g.lock", log=f"{folder}/g.log", stopdelay=5,
                                taps=("qi-no-such-tap",))


def test_control_stop_of_a_fake_qemu(folder):
    gc = _gc(folder)
    fake = _sleeper("qemu-system-x86_64", "-name", "fake1,debug-threads=on")
    try:
        with open(gc.pidfile, "w") as f:
            f.write(f"{fake.pid}\n")

        def handler(server, message):
            if message["execute"] == "system_powerdown" and server.commands().count("system_powerdown") == 2:
                fake.kill()  # the guest obeys the second press
            if message["execute"] == "query-status":
                return [reply(message, {"status": "paused", "running": False})]
            return [reply(message)]

        with FakeQMP(gc.qmp, handler) as server:
            st = control.status(gc)
            assert (st.code, st.state, st.pid) == (0, "paused", fake.pid)
            assert line(gc.name, st) == f"fake1: paused (pid {fake.pid})"
            steps = []
            assert control.stop(gc, progress=steps.append,
                                timing=stop.Timing(resend=0.2, poll=0.01)) == 0
        # paused: resumed first (a WAIT report), or the guest could not see the button
        assert states(steps) == [stop.WAIT, POWERDOWN, GONE]
        assert "cont" in server.commands()
        assert not os.path.exists(gc.pidfile) and not os.path.exists(gc.qmp)
        with open(gc.log) as f:
            text = f.read()
        assert "stop: POWERDOWN at 0.0 s" in text and "stop: GONE at" in text
        assert control.status(gc).code == 3
    finally:
        fake.kill()
        fake.wait()


@pytest.mark.parametrize("argv0, args", [
    ("sleep-ish", ("-name", "fake1")),          # not a QEMU
    ("qemu-system-x86_64", ("-name", "other")),  # a QEMU, but another guest
    ("qemu-system-x86_64", ("-name", "fake1,,x")),  # escaped comma: the name is "fake1,x"
])
def test_control_never_signals_a_process_that_is_not_this_guest(folder, argv0, args):
    gc = _gc(folder)
    other = _sleeper(argv0, *args)
    try:
        with open(gc.pidfile, "w") as f:
            f.write(f"{other.pid}\n")
        st = control.status(gc)
        assert (st.code, st.state, st.pid) == (1, "stale", other.pid) and "stale pid file" in line(gc.name, st)
        assert control.stop(gc, timing=FAST) == 0
        time.sleep(0.1)
        assert other.poll() is None, "an unrelated process was signalled"
        assert not os.path.exists(gc.pidfile)  # the stale pid file is cleaned up
    finally:
        other.kill()
        other.wait()


def test_control_status_codes(folder):
    gc = _gc(folder)
    assert control.status(gc) == (3, "not running", None, "", "", "")
    assert line(gc.name, control.status(gc)) == "fake1: not running"
    with open(gc.pidfile, "w") as f:
        f.write("junk\n")
    assert control.status(gc).code == 1
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(gc.pidfile, "w") as f:
        f.write(f"{dead.pid}\n")
    st = control.status(gc)
    assert (st.code, st.state, st.pid) == (1, "dead", dead.pid) and "dead, but pid file" in line(gc.name, st)


def test_launch_wait_ends_when_qemu_exits_and_gives_up_at_the_timeout(folder):
    """wait_ready: QEMU's exit code as soon as it exits; a GuestError once the start took too long."""
    from qemu_init.runtime import launch
    path = f"{folder}/g.qmp"
    listening = launch.listen_unix(path)  # as the helper hands it over: nobody accepts yet
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        quick = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(0.05); sys.exit(3)"])
        started = time.monotonic()
        assert launch.wait_ready(quick, path, 30) == 3 and quick.returncode == 3  # reaped
        assert time.monotonic() - started < 5
        slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            started = time.monotonic()
            with pytest.raises(GuestError, match="did not finish starting within 0.2 s"):
                launch.wait_ready(slow, path, 0.2)
            assert 0.2 <= time.monotonic() - started < 2
        finally:
            slow.kill()
            slow.wait()
    finally:
        listening.close()


def test_log_goes_to_the_file_and_to_syslog_where_there_is_one(folder, monkeypatch):
    sent = []
    fake = types.SimpleNamespace(LOG_PID=1, LOG_DAEMON=24, LOG_INFO=6, LOG_ERR=3,
                                 openlog=lambda *args: None,
                                 syslog=lambda priority, message: sent.append((priority, message)))
    monkeypatch.setitem(sys.modules, "syslog", fake)
    exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: p == "/dev/log" or exists(p))
    gc = control.GuestControl(name="fake1", log=f"{folder}/sub/g.log")
    control.log(gc, "hello")
    control.log(gc, "oops", error=True)
    assert sent == [(6, "fake1: hello"), (3, "fake1: oops")]
    with open(gc.log) as f:
        assert [line.split(" ", 1)[1] for line in f] == ["fake1: hello\n", "fake1: oops\n"]
    assert os.stat(gc.log).st_mode & 0o777 == 0o640


def _victim(folder, mode=0o600):
    """A file a symlink planted in the run folder points at; (path, its text)."""
    path = f"{folder}/victim"
    with open(path, "w") as f:
        f.write("precious\n")
    os.chmod(path, mode)
    return path


def test_log_is_never_written_through_a_symlink(folder, capsys):
    gc = _gc(folder)
    victim = _victim(folder)
    os.symlink(victim, gc.log)
    control.log(gc, "one")
    control.log(gc, "two")
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [f"qemu-init: fake1: warning: {gc.log}: is a symbolic link; refusing to follow it"]
    with pytest.raises(GuestError, match="is a symbolic link"):  # the log QEMU's output goes to
        control._qemu_output(gc)
    gc = gc._replace(argv=("qemu-system-x86_64",), precmd=f"touch {folder}/ran", rcfile=victim)
    with pytest.raises(GuestError, match=f"^{gc.log}: is a symbolic link; refusing to follow it$"):
        control.start(gc)  # refused before PRECMD and QEMU
    assert not os.path.exists(f"{folder}/ran")
    with open(victim) as f:
        assert f.read() == "precious\n"


def test_pid_file_is_written_whole_and_never_through_a_symlink(folder):
    gc = _gc(folder)
    victim = _victim(folder)
    os.symlink(victim, gc.pidfile)
    control._write_pidfile(gc, 4242)  # a new file renamed over the link: the victim is untouched
    assert not os.path.islink(gc.pidfile) and os.stat(gc.pidfile).st_mode & 0o777 == 0o644
    with open(gc.pidfile) as f:
        assert f.read() == "4242\n"
    with open(victim) as f:
        assert f.read() == "precious\n"
    assert not [n for n in os.listdir(os.path.dirname(gc.pidfile)) if n.endswith(".tmp")]


def test_forced_steps_fit_what_the_init_scripts_allow_for():
    from qemu_init.checks import FORCED_STEPS  # systemd's TimeoutStopSec = STOPDELAY + this + margin
    assert stop.Timing().forced <= FORCED_STEPS


def test_a_press_never_runs_past_the_grace_period(sock_path):
    guest = FakeGuest(clock=REAL)  # on the real clock
    with FakeQMP(sock_path, guest.handler, greeting=None):  # every press times out
        # presses at 0 s (times out at 0.4 s) and 0.45 s: uncapped, the second would end at 0.85 s
        steps = run(sock_path, guest, grace=0.5, timing=stop.Timing(resend=0.05, qmp_timeout=0.4, quit_wait=0.2,
                                                                    term_wait=0.2, kill_wait=0.2, poll=0.01))
    assert steps[1].state == QUIT and 0.5 <= steps[1].elapsed < 0.6


def test_progress_in_plain_words_every_few_seconds_and_a_forced_stop_said_as_such(sock_path):
    """What a user reads while a stop waits (issue 14): a line every `progress` seconds with the
    time left, no state names, and a forced stop called forced."""
    guest = FakeGuest()
    reported = []
    timing = FAST._replace(progress=0.3)
    with FakeQMP(sock_path, guest.handler):
        with QMP(sock_path) as conn:
            path = stop.run(guest.alive, guest.signal, lambda c, t: conn.execute(c, timeout=t), 1.0,
                            False, timing, reported.append, clock=guest.clock, sleep=guest.clock.sleep)
    assert states(path) == [POWERDOWN, QUIT, GONE]  # the path has no progress reports
    lines = [step.plain() for step in reported]
    assert lines[0] == "pressing the power button, waiting up to 1 s for the guest to power off"
    waits = [s for s in reported if s.state == stop.WAIT]
    assert [w.plain() for w in waits] == ["waiting for the guest to power off, 1 s left",
                                          "waiting for the guest to power off, 0 s left",
                                          "waiting for the guest to power off, 0 s left"]
    assert lines[-2:] == ["forcing it off: still running after 1 s",
                          "forced off after 1 s: did not react to the power button"]
    assert reported[-1].forced and not any(w in " ".join(lines) for w in ("POWERDOWN", "QUIT", "GONE", " at "))


def test_a_clean_and_a_forced_stop_in_plain_words(sock_path):
    guest = FakeGuest(ignore_powerdown=0)
    with FakeQMP(sock_path, guest.handler):
        steps = run(sock_path, guest, grace=5)
    assert steps[-1].plain() == "powered down after 0 s (1 press)" and not steps[-1].forced
    guest = FakeGuest()
    with FakeQMP(sock_path, guest.handler):
        steps = run(sock_path, guest, force=True)
    assert steps[-1].plain() == "forced off, as asked (--force)" and steps[-1].forced
    guest = FakeGuest(obeys_quit=False)
    with FakeQMP(sock_path, guest.handler):
        steps = run(sock_path, guest, grace=0.2)
    assert steps[-2].plain().startswith("sending SIGTERM: still running ")
    assert steps[-1].plain() == "forced off after 0.2 s: did not react to the power button (SIGTERM)"


def test_a_guest_gone_before_its_stop_looked_is_logged_as_powered_down(tmp_path):
    # qemud pressed its button and it powered off at once: the stop finds nothing to stop, and
    # the guest log still tells the stop (test_boot reads the steps there)
    log, pidfile = tmp_path / "g1.log", tmp_path / "g1.pid"
    gc = control.GuestControl("g1", pidfile=str(pidfile), lock=str(tmp_path / "g1.lock"), log=str(log))
    ended = subprocess.Popen(["true"])
    ended.wait()
    pidfile.write_text(f"{ended.pid}\n")  # what a QEMU that powered off leaves (it cannot remove root's file)
    steps = []
    assert control.stop(gc, pressed=True, progress=steps.append) == 0
    assert [s.state for s in steps] == [POWERDOWN, GONE]
    logged = [line.split(": stop: ", 1)[1].split()[0] for line in log.read_text().splitlines() if ": stop: " in line]
    assert logged == ["POWERDOWN", "GONE"]
    assert not pidfile.exists()
    log.unlink()
    # no pid file: another stop (systemd's ExecStop) cleaned up and logged its own steps
    assert control.stop(gc, pressed=True) == 0 and not log.exists()
    assert control.stop(gc) == 0 and not log.exists()  # a stop of a guest not running says nothing
