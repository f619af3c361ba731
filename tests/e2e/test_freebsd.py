"""FreeBSD, as far as it can be run on this Linux machine.

FreeBSD itself cannot run here, so what only FreeBSD has is stood in for (tests/guestkit/freebsd):
``ps`` and ``ifconfig`` answer in FreeBSD's format from what really runs, ``rc.subr`` is a model
of FreeBSD's rc.subr(8) (the same tests also run on FreeBSD's own rc.subr where a copy was put
for them: guestkit.freebsd.real_rc_subr), and ``rcorder`` a model of rcorder(8) (and FreeBSD's
own where a build of it is at hand: guestkit.freebsd.real_rcorder). Everything else is real: the generated rc.d scripts run by a POSIX sh, the runtime helper with its FreeBSD
backend (QEMU_INIT_PLATFORM=freebsd), and a real QEMU started from the FreeBSD command line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import guestkit
from guestkit import freebsd
from guestkit.qemuinit import qi

SH = shutil.which("dash") or "/bin/sh"  # FreeBSD's sh is an ash, as dash is
RC_SUBRS = [pytest.param(freebsd.MODEL_RC_SUBR, id="model")]
RC_SUBRS.append(pytest.param(freebsd.real_rc_subr(), id="freebsd", marks=pytest.mark.skipif(
    freebsd.real_rc_subr() is None, reason=f"no copy of FreeBSD's rc.subr ({freebsd.REAL_RC_SUBR_VARIABLE})")))

RCORDERS = [pytest.param(None, id="model"), pytest.param(freebsd.real_rcorder(), id="freebsd", marks=pytest.mark.skipif(
    freebsd.real_rcorder() is None, reason=f"no build of FreeBSD's rcorder ({freebsd.REAL_RCORDER_VARIABLE})"))]


def rcorder(program, paths, keyword=None):
    return freebsd.rcorder(paths, keyword) if program is None else freebsd.run_rcorder(program, paths, keyword)


RECORDER = """#!/bin/sh
# the helper's stand-in: records its arguments, one per line, a blank line after each call
for word in "$@"; do printf '%s\\n' "$word"; done >>"$QI_CALLS"
echo >>"$QI_CALLS"
exit "${QI_EXIT:-0}"
"""


def generate(root: Path, out: Path) -> None:
    qi(root, "generate", "--init", "bsd", "--output", str(out), check=0)


def with_helper(script: Path, helper: str) -> None:
    """Point the script's qemu_helper at ``helper`` (the recorder)."""
    text = script.read_text()
    text, count = re.subn(r"((?:qemu_helper|qemu_init)\(\) \{\n\t).*( \"\$@\"\n\})", rf"\1{helper}\2", text)
    assert count == 1
    script.write_text(text)


class Scripts:
    """The rc.d scripts of one root, runnable with one rc.subr (see freebsd.runnable)."""

    def __init__(self, root: Path, folder: Path, rc_subr: Path):
        self.root, self.folder = root, folder
        self.generated = folder / "generated"
        self.run_dir = folder / "rc.d"
        self.run_dir.mkdir(parents=True)
        self.rc_subr = rc_subr
        self.state = folder / "state"
        self.calls = folder / "calls"

    def make(self, recorder: bool) -> None:
        shutil.rmtree(self.generated, ignore_errors=True)
        generate(self.root, self.generated)
        for script in self.generated.iterdir():
            copy = freebsd.runnable(script, self.rc_subr, self.run_dir)
            if recorder and not script.name.startswith("qemu_bridge_"):
                helper = self.folder / "helper"
                helper.write_text(RECORDER)
                helper.chmod(0o755)
                with_helper(copy, str(helper))

    def rc(self, service: str, *args: str, **env: str) -> subprocess.CompletedProcess:
        environment = freebsd.env(self.state, QI_CALLS=str(self.calls), **env)
        return subprocess.run([SH, str(self.run_dir / service), *args], capture_output=True, text=True,
                              env=environment, timeout=180, stdin=subprocess.DEVNULL)

    def helper_calls(self) -> list:
        """Each recorded call of the helper as its argument list; clears the record."""
        if not self.calls.exists():
            return []
        text = self.calls.read_text()
        self.calls.unlink()
        return [block.splitlines() for block in text.split("\n\n") if block]


@pytest.fixture(params=RC_SUBRS)
def scripts(request, tmp_path):
    root = tmp_path / "root"
    vms = tmp_path / "vms"
    vms.mkdir()
    (vms / "web1-qemud.rc").write_text("NAME=web1\nTGTARCH=qemu-system-x86_64\nBRIDGE=none\nDESC='Web server'\n")
    (vms / "db1-qemud.rc").write_text("NAME=db1\nTGTARCH=qemu-system-x86_64\nBRIDGE=none\n")
    (vms / "app1-qemud.rc").write_text("NAME=app1\nTGTARCH=qemu-system-x86_64\nBRIDGE=br0\nDEPENDS=db1\n")
    qi(root, "register", str(vms), check=0)
    s = Scripts(root, tmp_path, request.param)
    s.make(recorder=True)
    return s


# -- rc.subr's view of the guest scripts (the helper recorded) -----------------------------------

def test_rcvar_enabled_describe(scripts):
    shown = scripts.rc("qemu_web1", "rcvar")
    assert shown.returncode == 0 and 'qemu_web1_enable="NO"' in shown.stdout
    assert scripts.rc("qemu_web1", "enabled").returncode == 1
    assert scripts.rc("qemu_web1", "enabled", qemu_web1_enable="YES").returncode == 0
    assert scripts.rc("qemu_web1", "describe").stdout == "QEMU guest web1: Web server\n"
    assert scripts.helper_calls() == []


def test_start_needs_enabled_or_one(scripts):
    refused = scripts.rc("qemu_web1", "start")
    assert refused.returncode == 0 and "Cannot 'start' qemu_web1" in refused.stdout
    assert scripts.helper_calls() == []
    assert scripts.rc("qemu_web1", "onestart").returncode == 0
    assert scripts.rc("qemu_web1", "start", qemu_web1_enable="YES").returncode == 0
    calls = scripts.helper_calls()
    assert [c[:2] for c in calls] == [["start", "web1"]] * 2
    assert "--" in calls[0] and calls[0][calls[0].index("--") + 1:][:3] == ["qemu-system-x86_64", "-name", "web1"]


@pytest.mark.parametrize("verb", ["stop", "faststop", "onestop", "forcestop", "status"])
def test_stop_and_status_reach_the_helper_enabled_or_not(scripts, verb):
    """A guest started by qemud or by onestart is not enabled in rc.conf: its stop, and faststop
    at shutdown, must still stop it. The helper judges by the pid file and identity."""
    for enabled in ("NO", "YES"):
        done = scripts.rc("qemu_web1", verb, qemu_web1_enable=enabled)
        assert done.returncode == 0, (enabled, done.stdout, done.stderr)
        assert "Cannot" not in done.stdout
        assert [c[:2] for c in scripts.helper_calls()] == [["status" if verb == "status" else "stop", "web1"]]


def test_a_failing_stop_fails_the_script(scripts):
    failed = scripts.rc("qemu_web1", "stop", QI_EXIT="4")
    assert failed.returncode != 0
    assert scripts.helper_calls()[0][:2] == ["stop", "web1"]


def test_monitor_passes_its_words_through(scripts):
    assert scripts.rc("qemu_web1", "onemonitor", "info", "status").returncode == 0
    assert scripts.rc("qemu_web1", "monitor", "info status", qemu_web1_enable="YES").returncode == 0
    assert scripts.rc("qemu_web1", "onemonitor").returncode == 0
    calls = scripts.helper_calls()
    assert [c[0] for c in calls] == ["monitor"] * 3
    assert calls[0][-2:] == calls[1][-2:] == ["info", "status"]  # rc.subr re-splits the words (eval)
    assert calls[2][-1].startswith("/") and calls[2][-2] == "--qmp"  # no words: a session


def test_qemud_and_bridge_status_whether_enabled_or_not(scripts):
    shown = scripts.rc("qemud", "status")
    assert shown.returncode == 0 and "Cannot" not in shown.stdout, (shown.stdout, shown.stderr)
    assert scripts.helper_calls() == [["qemud", "status"]]
    refused = scripts.rc("qemud", "stop")  # the host service keeps rc.subr's rule: enable it, or onestop
    assert refused.returncode == 0 and "Cannot 'stop' qemud" in refused.stdout
    assert scripts.rc("qemud", "onestop").returncode == 0 and scripts.helper_calls() == [["qemud", "stop"]]
    bridge = scripts.rc("qemu_bridge_br0", "status")  # through the stand-in ifconfig: no such bridge
    assert bridge.returncode != 0 and "bridge br0: does not exist" in bridge.stdout, (bridge.stdout, bridge.stderr)
    assert scripts.rc("qemu_bridge_br0", "stop").returncode == 0  # one it did not make: left alone


def test_unknown_verb_gives_rc_subr_usage(scripts):
    done = scripts.rc("qemu_web1", "frobnicate")
    assert done.returncode == 1 and "Usage:" in done.stderr and "monitor" in done.stderr
    assert scripts.helper_calls() == []


def test_shellcheck_and_dash_accept_the_scripts(scripts):
    for script in sorted(scripts.generated.iterdir()):
        assert subprocess.run(["dash", "-n", str(script)], capture_output=True).returncode == 0
        if shutil.which("shellcheck"):
            lint = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True)
            assert lint.returncode == 0, (script.name, lint.stdout)


# -- rcorder's view ------------------------------------------------------------------------------

def _base_system(folder: Path) -> list:
    """Stand-ins for the base system's placeholders the scripts REQUIRE."""
    made = []
    for name, require in (("NETWORKING", ""), ("LOGIN", "NETWORKING")):
        path = folder / name
        path.write_text(f"#!/bin/sh\n# PROVIDE: {name}\n# REQUIRE: {require}\n")
        made.append(path)
    return made


@pytest.mark.parametrize("program", RCORDERS)
def test_rcorder_bridges_then_guests_in_depends_order_then_qemud(scripts, program):
    files = _base_system(scripts.folder) + sorted(scripts.generated.iterdir())
    boot = [p.name for p in rcorder(program, files)]
    assert boot.index("NETWORKING") < boot.index("qemu_bridge_br0") < boot.index("LOGIN")
    assert boot.index("LOGIN") < boot.index("qemu_db1") < boot.index("qemu_app1") < boot.index("qemud")
    assert boot.index("qemu_web1") < boot.index("qemud")
    shutdown = [p.name for p in reversed(rcorder(program, files, keyword="shutdown"))]
    # rc.shutdown: qemud first (it stops every guest at once), then each guest's own faststop
    assert shutdown[0] == "qemud" and shutdown.index("qemu_app1") < shutdown.index("qemu_db1")
    assert "LOGIN" not in shutdown


@pytest.mark.parametrize("program", RCORDERS)
def test_faststop_in_rc_shutdown_order_reaches_every_guest(scripts, program):
    """rc.shutdown runs `SCRIPT faststop` for each KEYWORD: shutdown script, backwards; with
    nothing enabled in rc.conf, every guest's stop still reaches the helper."""
    files = _base_system(scripts.folder) + sorted(scripts.generated.iterdir())
    for path in reversed(rcorder(program, files, keyword="shutdown")):
        if path.parent == scripts.generated:
            assert scripts.rc(path.name, "faststop").returncode == 0, path.name
    stopped = [c[1] for c in scripts.helper_calls() if c[0] == "stop"]
    assert sorted(stopped) == ["app1", "db1", "web1"] and stopped.index("app1") < stopped.index("db1")


# -- a real QEMU, the helper's FreeBSD backend, the generated rc.d script ------------------------

QEMU = shutil.which(guestkit.QEMU)


@pytest.fixture(params=RC_SUBRS)
def running(request, qiroot):
    """Guest bsd1 (stubborn: ignores the power button; STOPDELAY 1) started by its generated rc.d
    script with `onestart`, as qemud starts guests: not enabled in rc.conf. The helper acts as on
    FreeBSD: it knows processes only through (the stand-in for) ps."""
    if os.geteuid() != 0 or QEMU is None:
        pytest.skip("needs root and QEMU")
    root = Path(qiroot.root)
    qiroot.guest("bsd1")
    s = Scripts(root, root / "fbsd", request.param)
    s.make(recorder=False)
    started = s.rc("qemu_bsd1", "onestart")
    assert started.returncode == 0, (started.stdout, started.stderr)
    s.pidfile, s.qmp = root / "run/qemu-init/bsd1.pid", root / "run/qemu-init/bsd1.qmp"
    s.pid = int(s.pidfile.read_text())
    return s


def test_freebsd_command_line_runs_on_a_real_qemu(running):
    argv = Path(f"/proc/{running.pid}/cmdline").read_bytes().decode().split("\0")
    assert argv[argv.index("-name") + 1] == "bsd1", "no process=: QEMU on FreeBSD exits with it"
    assert "-sandbox" not in argv, "no seccomp on FreeBSD: QEMU there has no -sandbox"


def test_freebsd_backend_sees_and_stops_a_guest_that_is_not_enabled(running):
    log = running.folder / "ps.log"
    status = running.rc("qemu_bsd1", "status", FAKE_PS_LOG=str(log))
    assert status.returncode == 0 and f"bsd1: running (pid {running.pid}" in status.stdout, status.stderr
    assert f"-p {running.pid}" in log.read_text(), "identity came from ps"
    stopped = running.rc("qemu_bsd1", "stop", FAKE_PS_LOG=str(log))
    assert stopped.returncode == 0, (stopped.stdout, stopped.stderr)
    assert "Cannot" not in stopped.stdout
    assert stopped.stdout.splitlines() == [  # the same stop machine as on Linux
        "bsd1: pressing the power button, waiting up to 1 s for the guest to power off",
        "bsd1: forcing it off: still running after 1 s",
        "bsd1: forced off after 1 s: did not react to the power button"], stopped.stdout
    assert guestkit.wait_gone(running.pid, timeout=30)
    assert not running.pidfile.exists() and not running.qmp.exists()
    assert f"-p {running.pid}" in log.read_text(), "identity came from ps"


@pytest.mark.parametrize("broken", ["ps fails", "no ps"])
def test_freebsd_without_identity_nothing_of_a_live_guest_is_removed(running, broken):
    """What was seen (issue 13): a stop that could not tell the guest runs removed its pid file
    and control socket and said it succeeded. Now: unknown, nothing touched, the guest runs on."""
    env = {"FAKE_PS": "fail"} if broken == "ps fails" else {"PATH": "/nonexistent"}
    for verb in ("stop", "status", "faststop", "onestart"):
        done = running.rc("qemu_bsd1", verb, **env)
        assert done.returncode != 0, (verb, done.stdout)
        assert "cannot tell whether it runs" in done.stderr or "unknown" in done.stdout, (verb, done.stderr)
        assert running.pidfile.exists() and running.qmp.exists(), verb
        assert guestkit.process_alive(running.pid), verb
    helper = [sys.executable, "-m", "qemu_init.runtime.helper", "status", "bsd1", "--pidfile",
              str(running.pidfile), "--qmp", str(running.qmp), "--runas", guestkit.GUEST_USER]
    lsb = subprocess.run(helper, capture_output=True, text=True, env=freebsd.env(running.state, **env))
    assert lsb.returncode == 4 and lsb.stdout.startswith("bsd1: unknown (ps: "), lsb.stdout
    assert running.rc("qemu_bsd1", "stop").returncode == 0  # ps back: stopped, cleaned up
    assert not running.pidfile.exists()


def test_freebsd_a_guest_with_a_space_in_a_word_restores_its_own_saved_state(qiroot):
    """FreeBSD's ps joins argv with spaces: a word holding one cannot be told from two. The
    state is bound to the command line the start launched (recorded then), not to what ps says,
    so such a guest's save is its own at the next start."""
    if os.geteuid() != 0 or QEMU is None:
        pytest.skip("needs root and QEMU")
    root = Path(qiroot.root)
    qiroot.guest("bsd2", extra="ONSHUTDOWN=save\n", cfg='-smbios "type=1,manufacturer=Acme Widgets"\n')
    s = Scripts(root, root / "fbsd", freebsd.MODEL_RC_SUBR)
    s.make(recorder=False)
    started = s.rc("qemu_bsd2", "onestart")
    assert started.returncode == 0, (started.stdout, started.stderr)
    pid = qiroot.pid("bsd2")
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert "type=1,manufacturer=Acme Widgets" in argv
    record = root / "run/qemu-init/bsd2.pid.argv"  # what the start launched, for the save
    assert record.read_text().split()[0] == str(pid) and (record.stat().st_mode & 0o777) == 0o600
    stopped = s.rc("qemu_bsd2", "onestop")
    assert stopped.returncode == 0 and "saved its state" in stopped.stdout, (stopped.stdout, stopped.stderr)
    assert guestkit.wait_gone(pid, timeout=30)
    state = root / "var/lib/qemu-init/state/bsd2.state"
    assert state.exists()
    restored = s.rc("qemu_bsd2", "onestart")
    assert restored.returncode == 0, (restored.stdout, restored.stderr)
    assert not state.exists()
    assert "restored its saved state in" in (root / "var/log/qemu-init/bsd2.log").read_text()
    assert s.rc("qemu_bsd2", "onestop").returncode == 0
    assert not record.exists()  # gone with the pid file
