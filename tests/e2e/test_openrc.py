"""OpenRC: the real openrc-run runs the generated scripts against a real QEMU, and OpenRC's own
dependency resolution orders bridge, DEPENDS chain and guest.

OpenRC keeps its state in /run/openrc and finds services in /etc/init.d. Every command here runs
in a private mount namespace where a folder of the test's root is bind-mounted over each of them (and
an empty tmpfs over /sys/fs/cgroup, where openrc-run would make a cgroup per service), so the
host's OpenRC state, services and cgroups are never touched. A test checks that.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Dict, Tuple

import pytest

from guestkit import QEMU, process_alive, qemu_processes, run, wait_for_line
from guestkit.qemuinit import qemud_host, status_rows

OPENRC_RUN = shutil.which("openrc-run")
RC_DEPEND = "/lib/rc/bin/rc-depend"
pytestmark = [pytest.mark.qemu, pytest.mark.root,
              pytest.mark.skipif(shutil.which(QEMU) is None or OPENRC_RUN is None, reason="needs QEMU and openrc-run"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount namespaces)")]

# What openrc makes in its state folder at boot; openrc-run expects it all.
STATE_DIRS = ("daemons", "exclusive", "failed", "hotplugged", "inactive", "options", "scheduled",
              "started", "starting", "stopping", "tmp", "wasinactive")

IN_NAMESPACE = """
mount --bind "$1" /run/openrc &&
mount --bind "$2" /etc/init.d &&
mount -t tmpfs qi-cgroup /sys/fs/cgroup && mkdir /sys/fs/cgroup/unified &&
shift 2 && exec "$@"
"""


def snapshot(folder: str) -> Dict[str, str]:
    """Every file under ``folder`` with a hash of its content (folders: "dir")."""
    found = {}
    for top, dirs, files in os.walk(folder):
        for d in dirs:
            found[os.path.join(top, d)] = "dir"
        for f in files:
            path = os.path.join(top, f)
            try:
                found[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError:
                found[path] = "unreadable"
    return found


@pytest.fixture
def openrc(qiroot) -> Callable[..., subprocess.CompletedProcess]:
    """Runs a command with the test root's OpenRC state and /etc/init.d in place of the host's."""
    state = qiroot.path("openrc-state")
    for sub in STATE_DIRS:
        os.makedirs(os.path.join(state, sub))
    Path(state, "softlevel").write_text("default\n")  # "booted by OpenRC", as openrc-run requires
    initd = qiroot.path("etc/init.d")
    os.makedirs(initd, exist_ok=True)  # only what `install` writes: no stand-in services

    made_run_openrc = not os.path.isdir("/run/openrc")  # a mount point is needed, even on hosts without OpenRC
    if made_run_openrc:
        os.makedirs("/run/openrc")
    before = snapshot("/run/openrc"), sorted(os.listdir("/etc/init.d")), sorted(os.listdir("/sys/fs/cgroup"))

    def inside(*argv: str) -> subprocess.CompletedProcess:
        return run("unshare", "--mount", "--propagation", "private", "sh", "-c", IN_NAMESPACE, "sh",
                   state, initd, *argv)

    try:
        yield inside
    finally:
        after = snapshot("/run/openrc"), sorted(os.listdir("/etc/init.d")), sorted(os.listdir("/sys/fs/cgroup"))
        if made_run_openrc:
            os.rmdir("/run/openrc")
    assert after == before, "the host's OpenRC state, services or cgroups changed"


def test_openrc_run_starts_reports_and_stops_a_real_guest(qiroot, openrc):
    qiroot.guest("stub1")
    qiroot.qi("install", "--init", "openrc")
    script = "/etc/init.d/qemu-stub1"

    def action(name: str, code: int) -> subprocess.CompletedProcess:
        result = openrc(OPENRC_RUN, script, name)
        assert result.returncode == code, (name, result.stdout, result.stderr)
        return result

    assert "stub1: not running" in action("status", 3).stdout
    action("start", 0)
    # Only what qemu-init installed is there (Debian's openrc has no localmount): nothing needed is missing.
    assert sorted(os.listdir(qiroot.path("openrc-state/started"))) == ["qemu-stub1"]
    pid = qiroot.pid("stub1")
    assert process_alive(pid)
    assert f"running (pid {pid}" in action("status", 0).stdout
    action("start", 0)  # OpenRC: already started
    assert qiroot.pid("stub1") == pid
    action("powerdown", 0)  # an extra command, through the monitor: the stubborn guest ignores it
    described = action("describe", 0)
    assert "power button" in described.stdout + described.stderr

    stopped = action("stop", 0)
    assert "stub1: forced off after 1 s: did not react to the power button" in stopped.stdout, stopped.stdout
    assert not process_alive(pid)
    action("status", 3)
    action("stop", 0)


def test_openrc_orders_bridge_and_depends_before_the_guest(qiroot, openrc):
    if not os.access(RC_DEPEND, os.X_OK):
        pytest.skip("rc-depend not installed")
    rc = "NAME={}\nTGTARCH=qemu-system-x86_64\nKVM=no\nMONITOR=unix\n{}"
    qiroot.guest("db1", rc.format("db1", "BRIDGE=br0\n"))
    qiroot.guest("web1", rc.format("web1", "BRIDGE=br-dmz\nDEPENDS=db1\n"))
    qiroot.qi("install", "--init", "openrc")
    assert openrc(RC_DEPEND, "--update").returncode == 0  # OpenRC reads every depend() once

    needs = openrc(OPENRC_RUN, "/etc/init.d/qemu-web1", "ineed")
    assert needs.returncode == 0, needs.stderr
    # traced: db1 brings its own bridge along
    assert set(needs.stdout.split()) == {"qemu-bridge-br-dmz", "qemu-db1", "qemu-bridge-br0"}

    start = openrc(RC_DEPEND, "qemu-web1")  # what OpenRC starts, in its order
    assert start.returncode == 0, start.stderr
    order = start.stdout.split()
    assert order[-1] == "qemu-web1"
    assert order.index("qemu-bridge-br0") < order.index("qemu-db1") < order.index("qemu-web1")
    assert order.index("qemu-bridge-br-dmz") < order.index("qemu-web1")

    stop = openrc(RC_DEPEND, "-t", "needsme", "qemu-bridge-br0")  # what stops with the bridge, in order
    order = stop.stdout.split()
    assert order.index("qemu-web1") < order.index("qemu-db1") < order.index("qemu-bridge-br0")
    # qemud names no bridge (a packaged one stays right): the bridge orders itself before it.
    # OpenRC's own record (its dependency cache) has qemud after them, so it stops first.
    deptree = Path(qiroot.path("openrc-state/deptree")).read_text()
    number = re.search(r"^depinfo_(\d+)_service='qemud'$", deptree, re.M).group(1)
    after = set(re.findall(rf"^depinfo_{number}_iafter_\d+='([^']*)'$", deptree, re.M))
    assert {"qemu-bridge-br0", "qemu-bridge-br-dmz", "qemu-db1", "qemu-web1"} <= after, after


def test_hostile_values_do_not_run_under_openrc_run(qiroot, openrc):
    canary = Path("/tmp/qi-canary")
    canary.unlink(missing_ok=True)
    golden = Path(__file__).resolve().parent.parent / "golden" / "hostile"
    for source in golden.glob("hostile1-*"):
        shutil.copy(source, qiroot.vms)
    qiroot.qi("register", qiroot.vms)
    qiroot.qi("install", "--init", "openrc")
    for name in ("status", "start", "status", "describe", "stop"):
        openrc(OPENRC_RUN, "/etc/init.d/qemu-hostile1", name)
    assert not canary.exists()


def test_openrc_run_starts_and_stops_the_guests_with_the_qemud_script(qiroot, openrc, test_guest):
    """The host service under openrc-run (issue 5): the stubborn stub1 and the real Linux lin1
    are autostart guests, idle1 is registered only."""
    vms = Path(qiroot.vms)
    qemud_host(Path(qiroot.root), vms, test_guest)
    qiroot.qi("install", "--init", "openrc")
    started = qiroot.path("openrc-state/started/qemud")

    def qemud(name: str, code: int) -> Dict[str, Tuple[str, ...]]:
        """openrc-run's exit status must be ``code``; returns NAME -> (STATE, PID) when the
        output is the status table."""
        result = openrc(OPENRC_RUN, "/etc/init.d/qemud", name)
        assert result.returncode == code, (name, result.returncode, result.stdout, result.stderr)
        return status_rows(result.stdout)

    nothing_runs = dict.fromkeys(("stub1", "lin1", "idle1"), ("stopped", "-"))
    assert qemud("status", 3) == nothing_runs
    qemud("start", 0)
    assert os.path.lexists(started), "OpenRC counts qemud as started"
    pids = {name: qiroot.pid(name) for name in ("stub1", "lin1")}
    assert all(process_alive(pid) for pid in pids.values())
    assert qemu_processes(qiroot.root) == sorted(pids.values())
    assert not os.path.exists(qiroot.path("run/qemu-init/idle1.pid")), "idle1 is not autostart"
    assert qemud("status", 0) == {"stub1": ("running", str(pids["stub1"])),
                                  "lin1": ("running", str(pids["lin1"])), "idle1": ("stopped", "-")}

    wait_for_line(vms / "lin1.serial", "QI-BOOTED lin1", timeout=120)
    qemud("stop", 0)
    assert not os.path.lexists(started)
    assert qemu_processes(qiroot.root) == []
    assert not any(process_alive(pid) for pid in pids.values())
    assert not list(Path(qiroot.path("run/qemu-init")).glob("*.pid"))
    assert "QI-POWEROFF" in (vms / "lin1.serial").read_text()  # the Linux guest shut down cleanly
    assert qemud("status", 3) == nothing_runs
    qemud("stop", 0)  # OpenRC: already stopped


def test_openrc_suspend_resume_and_reset_a_real_linux_guest(qiroot, openrc, test_guest):
    """The extra started commands under the real openrc-run: suspend (the helper's pause; OpenRC's
    own `pause` would stop the service), resume, reset; the service stays started throughout."""
    from guestkit.qemuinit import wait_for_count, write_guest

    write_guest(Path(qiroot.vms), "lin1", test_guest, rc="STOPDELAY=30\n", reboot=True)
    qiroot.qi("register", qiroot.vms)
    qiroot.qi("install", "--init", "openrc")
    serial = Path(qiroot.vms, "lin1.serial")
    script = "/etc/init.d/qemu-lin1"

    def action(name: str, code: int = 0) -> subprocess.CompletedProcess:
        result = openrc(OPENRC_RUN, script, name)
        assert result.returncode == code, (name, result.stdout, result.stderr)
        return result

    action("start")
    pid = qiroot.pid("lin1")
    try:
        wait_for_count(serial, "QI-BOOTED lin1", 1)
        assert "lin1: paused\n" in action("suspend").stdout
        assert f"lin1: paused (pid {pid}" in action("status").stdout
        assert "lin1: running\n" in action("resume").stdout
        assert f"lin1: running (pid {pid}" in action("status").stdout
        assert "lin1: reset\n" in action("reset").stdout
        wait_for_count(serial, "QI-BOOTED lin1", 2)
        assert serial.read_text().count("QI-ARGS") == 2
        assert qiroot.pid("lin1") == pid and process_alive(pid)
        assert sorted(os.listdir(qiroot.path("openrc-state/started"))) == ["qemu-lin1"]
        described = action("describe")
        assert "Pause the guest's CPUs" in described.stdout + described.stderr
        wait_for_line(serial, "QI-READY", timeout=120)
    finally:
        action("stop")
    assert not process_alive(pid)
    # only a started service has them (extra_started_commands)
    assert "lin1: paused" not in action("suspend", 1).stdout


def test_openrc_stop_saves_start_restores_and_restart_boots_afresh(qiroot, openrc):
    """ONSHUTDOWN=save under openrc-run: stop saves, start restores, restart (RC_CMD) shuts down."""
    qiroot.guest("save1", extra="ONSHUTDOWN=save\n")
    qiroot.qi("install", "--init", "openrc")
    script = "/etc/init.d/qemu-save1"
    state = qiroot.path("var/lib/qemu-init/state/save1.state")
    log = Path(qiroot.path("var/log/qemu-init/save1.log"))

    def action(name: str, code: int = 0) -> subprocess.CompletedProcess:
        result = openrc(OPENRC_RUN, script, name)
        assert result.returncode == code, (name, result.stdout, result.stderr)
        return result

    action("start")
    assert "save1: saved its state to" in action("stop").stdout
    assert os.path.exists(state)
    assert action("status", 3).stdout.startswith("save1: saved (")
    action("start")
    assert not os.path.exists(state) and "restored its saved state in" in log.read_text()
    pid = qiroot.pid("save1")
    action("restart")
    assert qiroot.pid("save1") != pid and not os.path.exists(state)
    assert log.read_text().count("saved its state to") == 1  # the restart shut it down
    action("stop")
    assert os.path.exists(state)
