"""The stop state machine: POWERDOWN (resent) -> QUIT -> TERM -> KILL -> GONE.

Only logic lives here. The process (``alive()``, ``signal(sig)``) and the QMP command sender are
passed in, so unit tests drive every corner with fakes and the real ones stay in proc/control.
All waiting runs on ``time.monotonic()`` deadlines; every QMP step has a short deadline of its own,
so a control socket that accepts but never answers only delays the machine, never stops it.
"""

from __future__ import annotations

import signal
import time
from collections import namedtuple

from ..errors import GuestError, QMPConnectError, QMPError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import Callable, List, Optional

POWERDOWN, QUIT, TERM, KILL, GONE = "POWERDOWN", "QUIT", "TERM", "KILL", "GONE"
WAIT = "WAIT"  # not a state: a progress report while the guest may still power itself off


# Timing and Transition are namedtuples, not dataclasses: importing ``dataclasses`` (it loads
# ``inspect``) cost every helper run ~7 ms (see control.py).
_TIMING = {  # seconds
    "resend": 2.5,       # guests ignore the power button while booting: press it again
    "quit_wait": 3.0,    # QEMU needs a moment to flush disks and exit after `quit`
    "term_wait": 3.0,
    "kill_wait": 2.0,
    "qmp_timeout": 1.0,  # per QMP attempt, connect included (a healthy QEMU takes ~1 ms)
    "poll": 0.1,         # the longest sleep between two looks at the process
    "progress": 5.0,     # a WAIT report this often while waiting for the guest to power off
}


class Timing(namedtuple("Timing", _TIMING, defaults=_TIMING.values())):
    """How long each step of the machine waits (the fields and defaults of _TIMING)."""

    __slots__ = ()

    @property
    def forced(self) -> float:
        """The longest a stop takes after its grace period (QUIT, TERM, KILL): what init
        systems' stop timeouts must allow for beyond STOPDELAY."""
        return self.qmp_timeout + self.quit_wait + self.term_wait + self.kill_wait + self.poll


class Transition(namedtuple("Transition", "state elapsed why")):
    """The machine entered ``state`` ``elapsed`` seconds after it started, because ``why``."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{self.state} at {self.elapsed:.1f} s: {self.why}"

    def plain(self) -> str:
        """The step in a user's words (progress lines), without the machine's state names."""
        if self.state == POWERDOWN:
            return f"{self.why} for the guest to power off"
        if self.state == QUIT:
            return f"forcing it off: {self.why}"
        if self.state in (TERM, KILL):
            return f"sending SIG{self.state}: {self.why}"
        if self.state == GONE and self.why.startswith("powered down"):
            return self.why.replace("powered down", f"powered down after {self.elapsed:.0f} s", 1)
        return self.why  # WAIT, and GONE after forcing ("forced off after 40 s: …")

    @property
    def forced(self) -> bool:
        """A GONE that needed force: QEMU was quit or signalled, the guest did not power off."""
        return self.state == GONE and not self.why.startswith("powered down")


def run(alive: Callable[[], bool], send_signal: Callable[[int], object],
        qmp: Callable[[str, float], object], grace: float, force: bool = False,
        timing: Timing = Timing(), report: Optional[Callable[[Transition], None]] = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep, pressed: bool = False,
        asked: str = "") -> List[Transition]:
    """Stop one guest; returns the transitions, the last one GONE.

    ``qmp(command, timeout)`` sends one QMP command and raises QMPError on any failure (any
    other exception it raises counts as a failure too: nothing a QMP peer does ends the machine).
    ``grace`` is how long the guest may take to power itself down (STOPDELAY or --timeout);
    ``force`` skips the power button. ``sleep(seconds)`` may return early: the real one
    (GuestProcess.sleep) does as soon as the process exits, so no stop waits out a poll interval.
    ``pressed``: the power button was pressed just now (``qemud stop`` presses every guest's
    first, then runs a machine per guest): the first press counts as done, the next comes after
    ``timing.resend``. ``asked``: the guest was already asked to shut down (by its guest agent;
    the words say so): the power button then follows only at the first resend, as a fallback,
    within the same grace. Raises GuestError if the process survives SIGKILL.
    """
    start = clock()
    path: List[Transition] = []

    def enter(state: str, why: str) -> None:
        step = Transition(state, clock() - start, why)
        path.append(step)
        if report is not None:
            report(step)

    def gone_within(seconds: float) -> bool:
        deadline = clock() + seconds
        while alive():
            left = deadline - clock()
            if left <= 0:
                return False
            sleep(min(timing.poll, left))
        return True

    def send(command: str, timeout: float) -> Optional[QMPError]:
        try:
            qmp(command, timeout)
        except QMPError as e:
            return e
        except Exception as e:  # noqa: BLE001
            # the QMP client turns every kind of bad peer into a QMPError; should anything else
            # still escape it (a bug), the guest must be forced off all the same, not left running
            return QMPError(f"{type(e).__name__}: {str(e):.150}")
        return None

    if force:
        why, forced = "forced", "forced off, as asked (--force)"
    else:
        if asked:
            enter(POWERDOWN, f"{asked} (the power button from {timing.resend:g} s on), waiting up to {grace:g} s")
        else:
            enter(POWERDOWN, f"{'pressed' if pressed else 'pressing'} the power button, waiting up to {grace:g} s")
        deadline, why = start + grace, f"still running after {grace:g} s"
        next_press = start + timing.resend if pressed or asked else clock()
        forced = f"forced off after {grace:g} s: did not react to the power button"
        presses = 1 if pressed else 0
        if asked:
            forced = f"forced off after {grace:g} s: did not react to its guest agent or the power button"
        next_report = start + timing.progress
        while alive():
            now = clock()
            if now >= deadline:
                break
            if now >= next_report and report is not None:
                report(Transition(WAIT, now - start,
                                  f"waiting for the guest to power off, {deadline - now:.0f} s left"))
                next_report += timing.progress
            if now >= next_press:
                # never past the deadline: a press must not eat into the forced steps
                error = send("system_powerdown", min(timing.qmp_timeout, deadline - now))
                if isinstance(error, QMPConnectError) and not presses and not asked:
                    # no listener and no press ever got through: nobody can ask this guest to
                    # power down, so waiting out the grace period would only delay the inevitable.
                    # Unless QEMU is on its way out already (someone else pressed the button):
                    # then it powered itself down, and calling that forced would be wrong.
                    if gone_within(min(timing.quit_wait, 0.5)):
                        enter(GONE, "powered down (its control socket had closed: it was on its way out)")
                        return path
                    why = f"control socket unavailable ({error})"
                    forced = f"forced off: nobody can press its power button: {why}"
                    break
                # after a press got through, a refused connection means QEMU is on its way out
                # (the guest powered off): keep waiting for it to exit, up to the deadline
                presses += error is None
                next_press = clock() + timing.resend
            sleep(max(0.0, min(timing.poll, deadline - clock(), next_press - clock(), next_report - clock())))
        if not alive():  # also when QEMU hung up on us because the guest was powering off
            pressed = f"{presses} press{'es' if presses != 1 else ''}"
            enter(GONE, f"powered down ({'through its guest agent, ' if asked else ''}{pressed})")
            return path

    enter(QUIT, why)
    error = send("quit", timing.qmp_timeout)
    # QEMU may exit before its reply to `quit` is read: a failed send still gets a short wait
    if gone_within(timing.quit_wait if error is None else min(timing.quit_wait, 0.5)):
        enter(GONE, forced)
        return path

    enter(TERM, f"QMP quit failed ({error})" if error else f"still running {timing.quit_wait:g} s after quit")
    send_signal(signal.SIGTERM)
    if gone_within(timing.term_wait):
        enter(GONE, f"{forced} (SIGTERM)")
        return path

    enter(KILL, f"still running {timing.term_wait:g} s after SIGTERM")
    send_signal(signal.SIGKILL)
    if gone_within(timing.kill_wait):
        enter(GONE, f"{forced} (SIGKILL)")
        return path
    raise GuestError(f"still running {timing.kill_wait:g} s after SIGKILL (stuck in the kernel?)")
