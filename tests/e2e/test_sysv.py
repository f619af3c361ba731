"""SysV: dash runs the generated scripts (with Debian's /lib/lsb/init-functions) against a real
QEMU; insserv and systemd's sysv-generator order a generated set; the bridge service and the tap
scripts set up a real bridge in a network namespace of its own."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from guestkit import QEMU, process_alive, run, wait_gone
from guestkit.qemuinit import STUBBORN, qi

pytestmark = [pytest.mark.qemu, pytest.mark.root,
              pytest.mark.skipif(shutil.which(QEMU) is None or shutil.which("dash") is None, reason="needs QEMU and dash"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]
GENERATOR = "/lib/systemd/system-generators/systemd-sysv-generator"


def script(box, name: str) -> str:
    return box.path("etc/init.d", name)


def test_lsb_actions_and_exit_codes_with_a_real_guest(qiroot):
    qiroot.guest("stub1")
    qiroot.qi("install", "--init", "sysv")
    qemu = script(qiroot, "qemu-stub1")

    def lsb(action: str, code: int) -> subprocess.CompletedProcess:
        result = run("dash", qemu, action)
        assert result.returncode == code, (action, result.stdout, result.stderr)
        return result

    lsb("status", 3)
    lsb("try-restart", 0)  # a stopped guest stays stopped
    assert not os.path.exists(qiroot.path("run/qemu-init/stub1.pid"))

    lsb("start", 0)
    pid = qiroot.pid("stub1")
    assert process_alive(pid)
    assert "already running" in lsb("start", 0).stdout and qiroot.pid("stub1") == pid
    assert f"running (pid {pid}" in lsb("status", 0).stdout

    lsb("restart", 0)
    restarted = qiroot.pid("stub1")
    assert restarted != pid and process_alive(restarted) and not process_alive(pid)
    lsb("force-reload", 0)  # no reload in QEMU: a running guest is restarted
    assert qiroot.pid("stub1") != restarted

    last = qiroot.pid("stub1")
    lsb("stop", 0)
    assert not process_alive(last)
    lsb("stop", 0)
    lsb("status", 3)

    lsb("start", 0)
    killed = qiroot.pid("stub1")
    os.kill(killed, signal.SIGKILL)
    assert wait_gone(killed)
    lsb("status", 1)  # dead, but the pid file is there
    lsb("stop", 0)  # cleans up
    lsb("status", 3)

    usage = lsb("reload", 3)
    assert usage.stderr.startswith("Usage: ") and usage.stdout == ""


def test_stop_shuts_a_real_linux_guest_down_cleanly(qiroot, test_guest):
    """The test guest (tests/guestkit) obeys the power button: stop ends at GONE without
    forcing anything, well before STOPDELAY."""
    from guestkit import console_file, wait_for_line

    serial = str(console_file(qiroot.path("lin1.serial")))
    cfg = (f"-accel tcg -no-user-config -no-reboot\n"
           f"-kernel {test_guest.kernel} -initrd {test_guest.initrd}\n"
           f"-append 'console=ttyS0 panic=-1 qi.name=lin1'\n-serial file:{serial}\n")
    rc = STUBBORN.format(name="lin1", extra="").replace("RAM=64M", "RAM=256M").replace("STOPDELAY=1", "STOPDELAY=60")
    qiroot.guest("lin1", rc=rc, cfg=cfg)
    qiroot.qi("install", "--init", "sysv")
    qemu = script(qiroot, "qemu-lin1")
    assert run("dash", qemu, "start").returncode == 0
    pid = qiroot.pid("lin1")
    wait_for_line(serial, "QI-READY", timeout=120)

    stopped = run("dash", qemu, "stop")
    assert stopped.returncode == 0, stopped.stderr
    lines = [l for l in stopped.stdout.splitlines() if not l.endswith(" s left")]  # progress every 5 s
    # The LSB headline first (Debian's log_daemon_msg), then the helper's plain words, then log_end_msg.
    assert lines[:2] == ["Stopping QEMU guest: lin1",
                         "lin1: pressing the power button, waiting up to 60 s for the guest to power off"], lines
    assert re.fullmatch(r"lin1: powered down after \d+ s \(1 press\)", lines[2]) and lines[3:] == ["."], lines
    assert "QI-POWEROFF" in Path(serial).read_text()
    assert not process_alive(pid)
    assert run("dash", qemu, "status").returncode == 3


def test_pause_resume_and_reset_a_real_linux_guest_through_the_script_and_the_cli(qiroot, test_guest):
    """SysV actions pause/resume/reset (dash) and the same CLI commands: status says paused
    (exit 0) while paused; reset reboots the guest (a second boot on its console)."""
    from guestkit.qemuinit import wait_for_count, write_guest

    write_guest(Path(qiroot.vms), "lin1", test_guest, rc="STOPDELAY=30\n", reboot=True)
    qiroot.qi("register", qiroot.vms)
    serial = Path(qiroot.vms, "lin1.serial")
    qiroot.qi("install", "--init", "sysv")
    qemu = script(qiroot, "qemu-lin1")
    assert run("dash", qemu, "start").returncode == 0
    pid = qiroot.pid("lin1")
    wait_for_count(serial, "QI-BOOTED lin1", 1)

    def lsb(action: str, code: int = 0) -> subprocess.CompletedProcess:
        result = run("dash", qemu, action)
        assert result.returncode == code, (action, result.stdout, result.stderr)
        return result

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess:
        return qi(qiroot.root, *args, "lin1", check=code)

    try:
        assert lsb("pause").stdout == "lin1: paused\n"
        assert lsb("status").stdout.startswith(f"lin1: paused (pid {pid}")
        assert cli("status").stdout.startswith(f"lin1: paused (pid {pid}")
        assert lsb("resume").stdout == "lin1: running\n"
        assert lsb("status").stdout.startswith(f"lin1: running (pid {pid}")

        assert cli("pause").stdout == "lin1: paused\n"
        assert cli("status").stdout.startswith("lin1: paused")
        assert cli("resume").stdout == "lin1: running\n"
        assert cli("status").stdout.startswith("lin1: running")

        assert lsb("reset").stdout == "lin1: reset\n"
        wait_for_count(serial, "QI-BOOTED lin1", 2)
        assert cli("reset").stdout == "lin1: reset\n"
        wait_for_count(serial, "QI-BOOTED lin1", 3)
        assert serial.read_text().count("QI-ARGS") == 3
        assert qiroot.pid("lin1") == pid and process_alive(pid), "a reset is no new QEMU"
        log = next(Path(qiroot.root).rglob("lin1.log"))
        assert [l.split(" ", 2)[2] for l in log.read_text().splitlines() if "lin1: " in l][-6:] == \
            ["paused", "running", "paused", "running", "reset", "reset"]
        wait_for_count(serial, "QI-READY", 3)
        lsb("pause")  # a paused guest cannot see its power button: stop resumes it first
    finally:
        stopped = run("dash", qemu, "stop")
    assert stopped.returncode == 0, stopped.stdout
    assert "lin1: it was paused: resumed it\n" in stopped.stdout
    assert re.search(r"^lin1: powered down after \d+ s \(1 press\)$", stopped.stdout, re.M), stopped.stdout
    assert "QI-POWEROFF" in serial.read_text()
    assert not process_alive(pid)
    # a stopped guest: one clear line, not 0
    assert lsb("pause", 1).stderr == "qemu-init: lin1: not running (no control socket)\n"
    assert cli("resume", code=1).stderr == "qemu-init: lin1: not running (no control socket)\n"


def test_missing_helper_is_lsb_not_installed(qiroot):
    from qemu_init import install
    from qemu_init.inventory import Inventory
    from qemu_init.paths import host_paths

    qiroot.guest("stub1")
    install.install(Inventory(host_paths(qiroot.root)), "sysv", helper=[qiroot.path("no/such/helper")])
    assert run("dash", script(qiroot, "qemu-stub1"), "status").returncode == 4
    assert run("dash", script(qiroot, "qemu-stub1"), "start").returncode == 5


def ordered_set(box) -> str:
    """Bridges, a DEPENDS chain db1 <- app1 <- web1 across two bridges, a loner and qemud,
    installed for SysV into the test root's /etc/init.d."""
    rc = "NAME={}\nTGTARCH=qemu-system-x86_64\nKVM=no\nMONITOR=unix\n{}"
    box.guest("db1", rc.format("db1", "BRIDGE=br0\n"))
    box.guest("app1", rc.format("app1", "BRIDGE=br0\nDEPENDS=db1\n"))
    box.guest("web1", rc.format("web1", "BRIDGE=br-dmz\nDEPENDS=app1\n"))
    box.guest("solo1", rc.format("solo1", "BRIDGE=none\n"))
    box.qi("install", "--init", "sysv")
    return box.path("etc/init.d")


SERVICES = ["qemu-db1", "qemu-app1", "qemu-web1", "qemu-solo1", "qemu-bridge-br0", "qemu-bridge-br-dmz", "qemud"]


def test_insserv_orders_bridges_then_the_depends_chain_and_stops_in_reverse(qiroot):
    if shutil.which("insserv") is None:
        pytest.skip("insserv not installed")
    initd = ordered_set(qiroot)
    host_links = {d: sorted(os.listdir(f"/etc/{d}")) for d in ("rc0.d", "rc2.d") if os.path.isdir(f"/etc/{d}")}
    # -p/-i: the script folder and where the .depend files go; the rc?.d links are made beside
    # it (../rc2.d), never in the host's /etc.
    result = run("insserv", "-c", "/etc/insserv.conf", "-p", initd, "-i", initd, *SERVICES, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr

    def sequence(folder: str, kind: str):
        links = os.listdir(os.path.join(os.path.dirname(initd), folder))
        return {m.group(2): int(m.group(1)) for m in (re.fullmatch(kind + r"(\d\d)(.+)", n) for n in links) if m}

    for level in ("rc2.d", "rc3.d", "rc4.d", "rc5.d"):
        start = sequence(level, "S")
        assert set(start) == set(SERVICES), level
        assert start["qemu-bridge-br0"] < start["qemu-db1"] < start["qemu-app1"] < start["qemu-web1"]
        assert start["qemu-bridge-br-dmz"] < start["qemu-web1"]
        assert start["qemu-bridge-br0"] < start["qemud"] and start["qemu-bridge-br-dmz"] < start["qemud"]
    for level in ("rc0.d", "rc1.d", "rc6.d"):
        stop = sequence(level, "K")
        assert set(stop) == set(SERVICES), level
        assert stop["qemu-web1"] < stop["qemu-app1"] < stop["qemu-db1"] < stop["qemu-bridge-br0"]
        assert stop["qemu-web1"] < stop["qemu-bridge-br-dmz"]
        assert stop["qemud"] < stop["qemu-bridge-br0"] and stop["qemud"] < stop["qemu-bridge-br-dmz"]
    # insserv's own record agrees: each service after what it requires
    depend = Path(initd, ".depend.start").read_text()
    assert re.search(r"^qemu-web1: .*\bqemu-app1\b", depend, re.M) and "qemu-bridge-br-dmz" in depend
    assert {d: sorted(os.listdir(f"/etc/{d}")) for d in host_links} == host_links


def test_systemd_sysv_generator_orders_the_units_the_same_way(qiroot):
    if not os.access(GENERATOR, os.X_OK):
        pytest.skip("systemd-sysv-generator not installed")
    initd = ordered_set(qiroot)
    out = qiroot.path("generator")
    for sub in ("normal", "early", "late"):
        os.makedirs(os.path.join(out, sub))
    env = dict(os.environ, SYSTEMD_SYSVINIT_PATH=initd, SYSTEMD_SYSVRCND_PATH=os.path.dirname(initd),
               SYSTEMD_UNIT_PATH=qiroot.path("no-native-units"), SYSTEMD_LOG_LEVEL="warning")
    result = run(GENERATOR, *(os.path.join(out, s) for s in ("normal", "early", "late")), env=env)
    assert result.returncode == 0, result.stderr

    def ordering(service: str, key: str):
        text = Path(out, "late", service + ".service").read_text()
        assert f"SourcePath={initd}/{service}" in text
        return {w for line in text.splitlines() if line.startswith(key) for w in line[len(key):].split()}

    def after(service: str):
        return ordering(service, "After=")

    assert {"remote-fs.target", "network-online.target", "qemu-bridge-br0.service"} <= after("qemu-db1")
    assert {"qemu-db1.service", "qemu-bridge-br0.service"} <= after("qemu-app1")
    assert {"qemu-app1.service", "qemu-bridge-br-dmz.service"} <= after("qemu-web1")
    # The host service names no guest or bridge (so a packaged one stays right): the bridges
    # order themselves before it (X-Start-Before).
    assert "qemud.service" in ordering("qemu-bridge-br0", "Before=") & ordering("qemu-bridge-br-dmz", "Before=")
    assert not after("qemu-bridge-br0") & {f"{s}.service" for s in SERVICES}
    # systemd stops in the reverse of After=, so shutdown order follows from the same lines.
    if shutil.which("systemd-analyze"):
        verify = run("systemd-analyze", "verify", "--man=no",
                     *(os.path.join(out, "late", f"{s}.service") for s in SERVICES))
        assert verify.returncode == 0, verify.stderr


def test_bridge_service_and_tap_scripts_in_a_network_namespace(qiroot, netns):
    """netns (tests/conftest.py): bridges and taps made there never touch the host's network."""
    qiroot.settings("MINSTOPDELAY=1\nBRIDGE=qibr0\n")
    qiroot.guest("net1", rc=STUBBORN.format(name="net1", extra="").replace("BRIDGE=none\n", ""))  # on qibr0
    qiroot.qi("install", "--init", "sysv")

    def inside(*argv: str) -> subprocess.CompletedProcess:
        return netns.run(argv, check=False)

    def sysfs(path: str) -> str:
        return inside("cat", f"/sys/class/net/{path}").stdout.strip()

    bridge, guest = script(qiroot, "qemu-bridge-qibr0"), script(qiroot, "qemu-net1")
    assert inside("dash", bridge, "status").returncode == 3
    assert inside("dash", bridge, "start").returncode == 0
    assert sysfs("qibr0/operstate") in ("up", "unknown", "down")  # no port yet: carrier down is fine
    assert inside("dash", bridge, "start").returncode == 0  # again: nothing to do

    started = inside("dash", guest, "start")
    assert started.returncode == 0, started.stderr
    tap = "qi1n0"
    assert sysfs(f"qibr0/brif/{tap}/port_no"), "the helper attached the tap to the bridge"
    assert sysfs(f"{tap}/mtu") == sysfs("qibr0/mtu")

    assert inside("dash", bridge, "stop").returncode == 0
    assert sysfs("qibr0/brif/" + tap + "/port_no"), "a bridge with a guest attached stays"
    assert inside("dash", guest, "stop").returncode == 0
    assert inside("test", "-e", f"/sys/class/net/{tap}").returncode == 1
    assert inside("dash", bridge, "stop").returncode == 0
    assert inside("test", "-e", "/sys/class/net/qibr0").returncode == 1, "made here, so removed here"
    assert not os.path.exists(qiroot.path("run/qemu-init/bridge-qibr0.created"))

    # A bridge someone else made is used, but never removed.
    assert inside("ip", "link", "add", "qibr0", "type", "bridge").returncode == 0
    assert inside("dash", bridge, "start").returncode == 0
    assert inside("dash", bridge, "stop").returncode == 0
    assert inside("test", "-e", "/sys/class/net/qibr0").returncode == 0


def test_stop_saves_start_restores_and_restart_boots_afresh(qiroot):
    """ONSHUTDOWN=save through the script: its stop (what the host's shutdown runs) saves the
    guest, its start restores it, its restart shuts it down and boots it afresh."""
    qiroot.guest("save1", extra="ONSHUTDOWN=save\n")
    qiroot.qi("install", "--init", "sysv")
    qemu = script(qiroot, "qemu-save1")
    state = qiroot.path("var/lib/qemu-init/state/save1.state")
    log = qiroot.path("var/log/qemu-init/save1.log")
    assert run("dash", qemu, "start").returncode == 0
    stopped = run("dash", qemu, "stop")
    assert stopped.returncode == 0 and "save1: saved its state to" in stopped.stdout, stopped.stdout
    assert os.path.exists(state)
    status = run("dash", qemu, "status")
    assert status.returncode == 3 and status.stdout.startswith("save1: saved ("), status.stdout
    assert run("dash", qemu, "start").returncode == 0
    assert not os.path.exists(state) and "restored its saved state in" in Path(log).read_text()
    pid = qiroot.pid("save1")
    restarted = run("dash", qemu, "restart")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert qiroot.pid("save1") != pid and not os.path.exists(state)
    assert Path(log).read_text().count("saved its state to") == 1  # the restart shut it down
    assert run("dash", qemu, "stop").returncode == 0 and os.path.exists(state)
