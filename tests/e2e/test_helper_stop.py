"""`qemu-init-helper stop` as the init scripts run it, against a process that passes for the guest
and a control socket served by a hostile or broken peer (fakeqmp.BAD_PEERS): nested JSON, a 40 MB
line, garbage, invalid UTF-8, a slow drip, silence. Each stop must force the process off within its
bounds (STOPDELAY + the forced steps' budget), exit 0 and say nothing of a traceback.

The stand-in is a sleeping Python whose /proc cmdline reads ``qemu-system-x86_64 … -name NAME``
(argv[0] set as ``exec -a`` would): what the helper's identity check looks at. A real QEMU could
not be given these answers; the real-QEMU stop runs in tests/e2e/test_runtime_qemu.py. Here, not
among the unit tests: every case starts the real helper and waits out its STOPDELAY and forced
steps on the real clock (the machine itself meets every peer on a fast clock in
tests/unit/test_stop.py).
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))  # the fake QMP server's module

from fakeqmp import BAD_PEERS, FakeQMP, sock_path  # noqa: E402,F401  (sock_path: fixture)
from qemu_init.runtime import proc  # noqa: E402
from qemu_init.runtime.stop import Timing  # noqa: E402

HELPER = [sys.executable, "-m", "qemu_init.runtime.helper"]
NAME = "qmpbad1"
STOPDELAY = 1.0
STARTUP = 3.0  # a fresh interpreter on a busy 2-core host, plus the test's own polling


def _stand_in(ignore_sigterm: bool = False) -> subprocess.Popen:
    code = "import signal, time\n"
    if ignore_sigterm:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('ready', flush=True)\ntime.sleep(120)\n"
    child = subprocess.Popen(["qemu-system-x86_64", "-c", code, "-name", f"{NAME},debug-threads=on"],
                             executable=sys.executable, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "ready\n"  # signal handler set
    assert proc.is_guest(child.pid, NAME, (os.getuid(),))  # it runs as us, which the stop is told below
    return child


@pytest.mark.parametrize("peer, ignore_sigterm", [
    *((peer, False) for peer in sorted(BAD_PEERS)),
    ("nested", True),  # and one that shrugs off SIGTERM: SIGKILL follows
])
def test_stop_forces_the_guest_off_whatever_qmp_says(sock_path, peer, ignore_sigterm):
    folder = os.path.dirname(sock_path)
    pidfile, log = f"{folder}/{NAME}.pid", f"{folder}/{NAME}.log"
    guest = _stand_in(ignore_sigterm)
    try:
        with open(pidfile, "w") as f:
            f.write(f"{guest.pid}\n")
        with FakeQMP(sock_path, lambda server, message: BAD_PEERS[peer](message)):
            started = time.monotonic()
            result = subprocess.run([*HELPER, "stop", NAME, "--pidfile", pidfile, "--qmp", sock_path,
                                     "--lock", f"{folder}/{NAME}.lock", "--log", log,
                                     "--runas", pwd.getpwuid(os.getuid()).pw_name, "--stopdelay", f"{STOPDELAY:g}"],
                                    capture_output=True, text=True, timeout=60)
            took = time.monotonic() - started
        code = guest.wait(timeout=5)  # the helper saw it exit; we reap it
    finally:
        guest.kill()
        guest.wait()
        guest.stdout.close()
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert code == -(signal.SIGKILL if ignore_sigterm else signal.SIGTERM)
    assert took <= STOPDELAY + Timing().forced + STARTUP, f"{peer}: stop took {took:.1f} s"
    with open(log) as f:  # the log keeps the machine's own words, one step a line
        steps = [line.split(" stop: ", 1)[1] for line in f if " stop: " in line]
    states = [step.split()[0] for step in steps]
    assert states == ["POWERDOWN", "QUIT", "TERM", *(["KILL"] if ignore_sigterm else []), "GONE"], steps
    assert "QMP quit failed (" in steps[2]
    assert result.stdout.splitlines()[-1].startswith(f"{NAME}: forced off after "), result.stdout
    assert not os.path.exists(pidfile)


def test_stop_resumes_a_paused_guest_before_pressing_its_power_button(sock_path):
    """A paused guest cannot see the button: `cont` first (and only for a paused one)."""
    from fakeqmp import reply
    folder = os.path.dirname(sock_path)
    pidfile = f"{folder}/{NAME}.pid"
    guest = _stand_in()
    answer = lambda server, m: [reply(m, {"status": "paused", "running": False}  # noqa: E731
                                      if m.get("execute") == "query-status" else None)]
    try:
        with open(pidfile, "w") as f:
            f.write(f"{guest.pid}\n")
        with FakeQMP(sock_path, answer) as server:
            result = subprocess.run([*HELPER, "stop", NAME, "--pidfile", pidfile, "--qmp", sock_path,
                                     "--lock", f"{folder}/{NAME}.lock", "--log", f"{folder}/{NAME}.log",
                                     "--runas", pwd.getpwuid(os.getuid()).pw_name, "--stopdelay", "1"],
                                    capture_output=True, text=True, timeout=60)
        guest.wait(timeout=5)
    finally:
        guest.kill()
        guest.wait()
        guest.stdout.close()
    assert result.returncode == 0, result.stderr
    commands = [c for c in server.commands() if c != "qmp_capabilities"]
    assert commands[:3] == ["query-status", "cont", "system_powerdown"], commands
    assert result.stdout.splitlines()[0] == f"{NAME}: it was paused: resumed it"


def test_qemuds_press_resumes_a_paused_guest_and_its_stop_connects_no_more_before_the_resend(sock_path):
    """qemud stop (hostsvc) presses every button with button.press, then runs each stop with
    pressed=True. The press resumes a paused guest on its one connection; the stop then leaves
    QMP alone until the machine's first resend: the guest is powering off right after the press,
    and a query then would only meet its QEMU on the way out."""
    import threading

    from fakeqmp import reply
    from qemu_init.runtime import button, control
    folder = os.path.dirname(sock_path)
    gc = control.GuestControl(name=NAME, pidfile=f"{folder}/{NAME}.pid", qmp=sock_path, lock=f"{folder}/{NAME}.lock",
                              log=f"{folder}/{NAME}.log", runas=pwd.getpwuid(os.getuid()).pw_name, stopdelay=10)
    guest = _stand_in()
    answer = lambda server, m: [reply(m, {"status": "paused", "running": False}  # noqa: E731
                                      if m.get("execute") == "query-status" else None)]
    powers_off = threading.Timer(1.0, guest.terminate)  # the guest obeys the press a second later
    try:
        with open(gc.pidfile, "w") as f:
            f.write(f"{guest.pid}\n")
        with FakeQMP(sock_path, answer) as server:
            assert button.press(gc, 0.5)
            pressed = server.commands()
            powers_off.start()
            started = time.monotonic()
            assert control.stop(gc, pressed=True) == 0
            took = time.monotonic() - started
            after = server.commands()
    finally:
        powers_off.cancel()
        guest.kill()
        guest.wait()
        guest.stdout.close()
    assert pressed == ["qmp_capabilities", "query-status", "cont", "system_powerdown"], pressed
    assert after == pressed, after  # not one connection more: it was gone before the resend
    assert took < Timing().resend, took
