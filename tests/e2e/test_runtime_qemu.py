"""The runtime helper against a real QEMU, driven through its command line like an init script.

The "stubborn" guest has no kernel and no disk: it sits in the BIOS and ignores the power
button, which is exactly what a stop has to cope with. Every QEMU a test starts carries the test's
folder (/tmp/qi-XXXXXX) in its command line; the fixture kills whatever carries it, pass or fail.
"""

from __future__ import annotations

import os
import re
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from typing import List

import pytest

import guestkit
from guestkit import qemu_processes, wait_gone
from qemu_init.runtime import launch, proc

QEMU = shutil.which(guestkit.QEMU)
# subreaper (tests/conftest.py): the daemonized QEMUs become our children and are reaped soon.
pytestmark = [pytest.mark.qemu, pytest.mark.usefixtures("subreaper"),
              pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not installed")]


def needs_root(test):  # type: ignore[no-untyped-def]
    return pytest.mark.root(pytest.mark.skipif(os.geteuid() != 0, reason="needs root")(test))


HELPER = [sys.executable, "-m", "qemu_init.runtime.helper"]


def helper(*args: str, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 120)
    return subprocess.run([*HELPER, *args], capture_output=True, text=True, **kwargs)


class Guest:
    """One test guest (the stubborn one unless ``boot`` says otherwise) and the helper command
    lines its init script would run."""

    def __init__(self, folder: str, boot: tuple = (), runas: str = guestkit.GUEST_USER):
        self.dir = folder
        self.boot = boot  # QEMU options that boot something; none: the stubborn BIOS guest
        self.runas = runas
        self.serial = ""  # its console, if it has one
        self.name = "e2e" + secrets.token_hex(3) + "x"  # letters and digits, not ending in 0
        self.pidfile = f"{folder}/run/{self.name}.pid"
        self.qmp = f"{folder}/run/{self.name}.qmp"
        self.lock = f"{folder}/lock/{self.name}.lock"
        self.log = f"{folder}/log/{self.name}.log"

    def argv(self, extra: tuple = ()) -> List[str]:
        """As qemu-init's command line has it: sandboxed, QMP on the descriptor the helper passes."""
        machine = self.boot or ("-accel", "tcg", "-display", "none", "-nic", "none", "-name", self.name,
                                "-m", "64")
        return [QEMU, *machine, "-sandbox", launch.SANDBOX, "-chardev",
                f"socket,id=qmp,fd={launch.QMP_FD},server=on,wait=off", "-mon", "chardev=qmp,mode=control", *extra]

    def start_args(self, *options: str, extra: tuple = ()) -> List[str]:
        return ["start", self.name, "--pidfile", self.pidfile, "--qmp", self.qmp, "--lock", self.lock,
                "--log", self.log, "--runas", self.runas, *options, "--", *self.argv(extra)]

    def stop_args(self, *options: str, stopdelay: int = 40) -> List[str]:
        return ["stop", self.name, "--pidfile", self.pidfile, "--qmp", self.qmp, "--lock", self.lock,
                "--log", self.log, "--runas", self.runas, "--stopdelay", str(stopdelay), *options]

    def start(self, *options: str, extra: tuple = ()):
        return helper(*self.start_args(*options, extra=extra))

    def stop(self, *options: str, stopdelay: int = 40):
        return helper(*self.stop_args(*options, stopdelay=stopdelay))

    def status(self, *options: str):
        return helper("status", self.name, "--pidfile", self.pidfile, "--qmp", self.qmp, "--runas", self.runas,
                      *options)

    def pid(self) -> int:
        with open(self.pidfile) as f:
            return int(f.read())

    def qemus(self) -> List[int]:
        return qemu_processes(self.dir)

    def logtext(self) -> str:
        with open(self.log) as f:
            return f.read()


@pytest.fixture
def guest(sandbox):
    """A Guest in the sandbox (tests/conftest.py: short, for unix socket paths < 108 bytes; whatever
    names it is killed afterwards)."""
    return Guest(str(sandbox))


def started(guest: Guest, *options: str, **kwargs) -> int:
    result = guest.start(*options, **kwargs)
    assert result.returncode == 0, result.stderr
    return guest.pid()


# -- stop --------------------------------------------------------------------------------------

def test_stubborn_guest_is_forced_off_soon_after_the_timeout(guest):
    pid = started(guest)
    status = guest.status("--vnc", "127.0.0.1:1", "--monitor", "127.0.0.1:30320")
    assert status.returncode == 0
    assert status.stdout.strip() == (f"{guest.name}: running (pid {pid}, vnc 127.0.0.1:1 (port 5901), "
                                      "monitor tcp 127.0.0.1:30320)")

    began = time.monotonic()
    stopping = subprocess.Popen([*HELPER, *guest.stop_args("--timeout", "3")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    status = guest.status()  # the stop does not hog QEMU's one QMP connection
    assert status.returncode == 0 and status.stdout.startswith(f"{guest.name}: running (pid {pid})")
    stdout, stderr = stopping.communicate(timeout=60)
    took = time.monotonic() - began
    assert stopping.returncode == 0, stderr
    assert 3 <= took < 3 + 4, stdout
    assert stdout.splitlines() == [  # plain words, and a forced stop said as such (QEMU 7.2 honours quit)
        f"{guest.name}: pressing the power button, waiting up to 3 s for the guest to power off",
        f"{guest.name}: forcing it off: still running after 3 s",
        f"{guest.name}: forced off after 3 s: did not react to the power button"], stdout
    assert not proc.running(pid)
    assert not os.path.exists(guest.pidfile) and not os.path.exists(guest.qmp)
    assert "stop: QUIT at 3.0 s: still running after 3 s" in guest.logtext()
    assert guest.status().returncode == 3


def test_control_socket_that_accepts_and_never_answers(guest):
    """QEMU's control socket replaced by one that accepts connections and never says a word:
    every QMP step times out, the stop still ends within its bounds and forces QEMU off."""
    import socket
    pid = started(guest)
    os.unlink(guest.qmp)
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(guest.qmp)
    silent.listen(16)
    try:
        began = time.monotonic()
        result = guest.stop("--timeout", "2")
        took = time.monotonic() - began
    finally:
        silent.close()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # the silent socket's second spent asking whether the guest is paused counts against the 2 s
    assert re.fullmatch(rf"{guest.name}: pressing the power button, waiting up to [12] s for the guest to power off",
                        lines[0]), lines
    assert any(l.startswith(f"{guest.name}: sending SIGTERM: ") for l in lines), result.stdout
    assert re.match(rf"{guest.name}: forced off after [12] s: did not react to the power button \(SIG", lines[-1]), lines
    assert took < 2 + 12, result.stdout  # STOPDELAY, then the forced steps' own deadlines
    assert wait_gone(pid)
    assert not os.path.exists(guest.pidfile)


def test_sigkilled_guest_is_dead_then_start_cleans_up_and_starts_again(guest):
    pid = started(guest)
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    assert os.path.exists(guest.pidfile) and os.path.exists(guest.qmp)  # left behind

    status = guest.status()
    assert status.returncode == 1
    assert status.stdout.strip() == f"{guest.name}: dead, but pid file {guest.pidfile} exists (pid {pid})"

    new = started(guest)
    assert new != pid and guest.qemus() == [new]
    assert guest.status().returncode == 0
    assert f"removed {guest.pidfile}, {guest.qmp}" in guest.logtext()


def test_stop_of_a_sigkilled_guest_cleans_up(guest):
    pid = started(guest)
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    result = guest.stop()
    assert result.returncode == 0, result.stderr
    assert not os.path.exists(guest.pidfile) and not os.path.exists(guest.qmp)


def test_pid_file_naming_an_unrelated_process_is_never_acted_on(guest):
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        os.makedirs(os.path.dirname(guest.pidfile))
        with open(guest.pidfile, "w") as f:
            f.write(f"{sleeper.pid}\n")
        status = guest.status()
        assert status.returncode == 1 and "stale pid file" in status.stdout

        result = guest.stop("--timeout", "1")
        assert result.returncode == 0, result.stderr
        time.sleep(0.2)
        assert sleeper.poll() is None, "stop signalled an unrelated process"

        with open(guest.pidfile, "w") as f:
            f.write(f"{sleeper.pid}\n")
        pid = started(guest)  # a stale pid file does not block a start either
        assert pid != sleeper.pid and sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_ten_concurrent_starts_make_exactly_one_qemu(guest):
    starts = [subprocess.Popen([*HELPER, *guest.start_args()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(10)]
    outputs = [p.communicate(timeout=120) for p in starts]
    assert [p.returncode for p in starts] == [0] * 10, [err for _, err in outputs]
    assert len(guest.qemus()) == 1
    pid = guest.pid()
    assert sum(out.strip() == f"{guest.name} is already running (pid {pid})" for out, _ in outputs) == 9
    assert guest.logtext().count("started (pid") == 1


# -- status, monitor, files --------------------------------------------------------------------

def test_monitor_one_shot_and_session(guest):
    started(guest)
    result = helper("monitor", guest.name, "--qmp", guest.qmp, "info", "status")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "VM status: running\n"

    session = helper("monitor", guest.name, "--qmp", guest.qmp, input="stop\ninfo status\nexit\ninfo name\n")
    assert session.returncode == 0, session.stderr
    assert session.stdout == "VM status: paused\n"  # nothing after "exit" ran
    status = guest.status()
    assert status.returncode == 0 and status.stdout.startswith(f"{guest.name}: paused (pid ")

    assert helper("monitor", guest.name, "--qmp", guest.qmp, "cont").returncode == 0
    assert guest.status().stdout.startswith(f"{guest.name}: running (pid ")


def test_monitor_of_a_stopped_guest_is_one_clear_line(guest):
    result = helper("monitor", guest.name, "--qmp", guest.qmp, "info", "status")
    assert result.returncode == 1
    assert result.stderr == f"qemu-init: {guest.name}: not running (no control socket)\n"


@needs_root
def test_control_files_are_root_owned_and_not_writable_by_others(guest):
    started(guest)
    for path in (guest.pidfile, guest.qmp, guest.lock, guest.log):
        st = os.stat(path)
        assert st.st_uid == 0, path
        assert not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH), f"{path}: {st.st_mode:o}"
    assert stat.S_ISSOCK(os.stat(guest.qmp).st_mode)
    assert not os.stat(guest.qmp).st_mode & stat.S_IRWXO  # nobody else may even connect


def test_changed_source_is_a_warning_not_a_failure(guest):
    rc = f"{guest.dir}/{guest.name}-qemud.rc"
    with open(rc, "w") as f:
        f.write(f"NAME={guest.name}\n")
    result = guest.start("--source", f"{rc}={'0' * 64}")
    assert result.returncode == 0, result.stderr
    assert f"{rc}: changed since the script was generated; regenerate" in result.stderr


# -- QEMU's own failures; how QEMU runs ----------------------------------------------------------

def test_qemu_error_is_reported_in_one_line_and_logged(guest):
    result = guest.start(extra=("-no-such-option",))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "-no-such-option: invalid option" in result.stderr
    assert "-no-such-option: invalid option" in guest.logtext()
    assert guest.qemus() == [] and not os.path.exists(guest.pidfile)


def test_qemu_is_detached_by_the_helper_and_sandboxed(guest):
    """No -daemonize (the sandbox forbids it): the helper gives QEMU a session of its own, its
    log as output and only the descriptors it names; QEMU runs as its user under seccomp."""
    began = time.monotonic()
    pid = started(guest)
    assert time.monotonic() - began < 30
    assert os.getsid(pid) == pid  # its own session: no controlling terminal, survives the script
    assert os.readlink(f"/proc/{pid}/fd/2") == guest.log
    assert sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))[:4] == [0, 1, 2, launch.QMP_FD]
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    assert fields["Seccomp"].strip() == "2"
    assert fields["Uid"].split() == [str(pwd.getpwnam(guest.runas).pw_uid)] * 4
    assert guest.status().returncode == 0
    result = guest.stop("--force")
    assert result.returncode == 0, result.stderr
    assert wait_gone(pid)


# -- PRECMD / POSTCMD --------------------------------------------------------------------------

def _hooks(guest: Guest, mode: int):
    rc = f"{guest.dir}/{guest.name}-qemud.rc"
    with open(rc, "w") as f:
        f.write(f"NAME={guest.name}\n")
    os.chmod(rc, mode)
    order = f"{guest.dir}/order"
    pre = f"if [ -e {guest.pidfile} ]; then echo pre running; else echo pre stopped; fi >> {order}"
    post = f"echo post $(cat {guest.pidfile}) >> {order}"
    return rc, order, ("--rcfile", rc, "--precmd", pre, "--postcmd", post)


@needs_root
def test_precmd_and_postcmd_run_in_order_from_a_root_owned_rcfile(guest):
    rc, order, options = _hooks(guest, 0o644)
    pid = started(guest, *options)
    with open(order) as f:
        assert f.read().splitlines() == ["pre stopped", f"post {pid}"]


@needs_root
@pytest.mark.parametrize("mode", [0o664, 0o666])
def test_precmd_is_refused_from_a_writable_rcfile(guest, mode):
    rc, order, options = _hooks(guest, mode)
    result = guest.start(*options)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and rc in result.stderr and "refusing" in result.stderr
    assert not os.path.exists(order), "PRECMD ran"
    assert guest.qemus() == []


# -- RUNAS -------------------------------------------------------------------------------------

@pytest.fixture
def system_user():
    name = "qi" + secrets.token_hex(4)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)


@needs_root
@pytest.mark.skipif(shutil.which("useradd") is None, reason="no useradd")
def test_runas_drops_privileges_and_stop_still_cleans_up(system_user, guest):
    guest.runas = system_user.pw_name
    pid = started(guest)
    with open(f"/proc/{pid}/status") as f:
        uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
    assert uids == [str(system_user.pw_uid)] * 4  # real, effective, saved, filesystem
    assert os.stat(guest.pidfile).st_uid == 0 and os.stat(guest.qmp).st_uid == 0
    result = guest.stop("--timeout", "1")
    assert result.returncode == 0, result.stderr
    assert wait_gone(pid)
    # QEMU, no longer root, cannot remove its pid file and socket: the helper does
    assert not os.path.exists(guest.pidfile) and not os.path.exists(guest.qmp)


# -- a guest that obeys the power button (tests/guestkit) --------------------------------------

def _booting(test_guest, sandbox) -> Guest:
    import guestkit  # tests/conftest.py puts it on the path
    guest = Guest(str(sandbox))
    guest.serial = str(guestkit.console_file(f"{sandbox}/serial"))
    guest.boot = tuple(guestkit.qemu_guest_args(guest.name, guest.serial, guest=test_guest))
    return guest


def test_graceful_guest_stops_in_seconds_not_stopdelay(test_guest, sandbox):
    import guestkit
    guest = _booting(test_guest, sandbox)
    pid = started(guest)
    guestkit.wait_for_line(guest.serial, "QI-READY", timeout=120)
    began = time.monotonic()
    result = guest.stop(stopdelay=120)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - began < 15
    lines = [l for l in result.stdout.splitlines() if not l.endswith(" s left")]  # progress every 5 s
    assert lines[0] == f"{guest.name}: pressing the power button, waiting up to 120 s for the guest to power off"
    assert len(lines) == 2 and re.fullmatch(rf"{guest.name}: powered down after \d+ s \(1 press\)", lines[1]), lines
    guestkit.wait_for_line(guest.serial, "QI-POWEROFF", timeout=1)
    assert not proc.running(pid)
    assert not os.path.exists(guest.pidfile) and not os.path.exists(guest.qmp)


def test_guest_stopped_while_booting_powers_down_thanks_to_resends(test_guest, sandbox):
    """The button pressed right after the start is lost (the guest's kernel is not even up):
    only a later press, once it watches the button, shuts it down, cleanly."""
    import guestkit
    guest = _booting(test_guest, sandbox)
    started(guest)
    result = guest.stop(stopdelay=120)
    assert result.returncode == 0, result.stderr
    lines = [l for l in result.stdout.splitlines() if not l.endswith(" s left")]  # progress every 5 s
    assert len(lines) == 2 and "pressing the power button" in lines[0], result.stdout
    presses = int(re.fullmatch(rf"{guest.name}: powered down after \d+ s \((\d+) presses\)", lines[1]).group(1))
    assert presses >= 2, result.stdout
    # Powered itself off: clean. (Its QI-BOOTED line may be missing: the guest watches the
    # button before it prints that line, and a resend can land in between.)
    guestkit.wait_for_line(guest.serial, "QI-POWEROFF", timeout=1)


def test_start_with_a_live_qemu_but_no_pid_file_refuses_and_touches_nothing(guest):
    pid = started(guest)
    os.unlink(guest.pidfile)  # lost, e.g. an admin's rm in the run folder
    result = guest.start()
    assert result.returncode == 1
    assert f"a QEMU answers on {guest.qmp}" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert guest.qemus() == [pid] and os.path.exists(guest.qmp)  # the live guest keeps its socket


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_without_proc_a_running_guest_is_unknown_and_nothing_is_removed(guest):
    """No /proc to tell processes by (FreeBSD without procfs; here an empty /proc in a mount
    namespace of the helper's own): status says unknown (LSB 4), stop and start touch nothing."""
    pid = started(guest)
    hidden = ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'mount -t tmpfs none /proc && exec "$@"', "-"]
    for args, code in ((["status", guest.name, "--pidfile", guest.pidfile, "--qmp", guest.qmp, "--runas", guest.runas], 4),
                       (guest.stop_args("--timeout", "1"), 4), (guest.start_args(), 4)):
        result = subprocess.run([*hidden, *HELPER, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == code, (args[0], result.stdout, result.stderr)
        assert os.path.exists(guest.pidfile) and os.path.exists(guest.qmp), args[0]
        assert guest.qemus() == [pid], args[0]
    assert guest.status().returncode == 0
