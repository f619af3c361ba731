"""The host service (SPEC §7, issue 5) with real QEMU guests."""

import json
import os
import shutil
import socket
import threading
import time

import pytest
from guestkit import process_alive, qemu_processes, run, wait_for_line
from guestkit.qemuinit import host_conf, qemud_host, qi, register, status_rows, write_guest

pytestmark = pytest.mark.qemu
TICKS = os.sysconf("SC_CLK_TCK")


def started_at(root, name):
    """When the guest's QEMU process started (seconds since boot), from /proc."""
    pid = int((root / f"run/qemu-init/{name}.pid").read_text())
    stat = open(f"/proc/{pid}/stat").read()
    return int(stat.rpartition(")")[2].split()[19]) / TICKS


def test_start_order_depends_and_bootdelay(sandbox):
    root, vms = sandbox / "root", sandbox / "vms"
    host_conf(root, "MINSTOPDELAY=3\n")
    write_guest(vms, "a1")
    write_guest(vms, "b1", rc="DEPENDS=c1\n")
    write_guest(vms, "c1", rc="BOOTDELAY=2\n")
    register(root, vms, "a1", "b1", "c1")
    proc = qi(root, "qemud", "start", check=0)
    assert [l.split(":")[0] for l in proc.stdout.splitlines() if l.endswith(": started")] == ["a1", "c1", "b1"]
    a, b, c = (started_at(root, n) for n in ("a1", "b1", "c1"))
    assert a < c < b
    assert c - a >= 2.0  # c1's BOOTDELAY
    table = qi(root, "qemud", "status", check=0).stdout
    assert all(f"{n}  running" in table.replace("   ", "  ") or n in table for n in ("a1", "b1", "c1"))
    assert qi(root, "qemud", "stop", check=0).returncode == 0
    assert qemu_processes(str(sandbox)) == []


def test_stubborn_guests_stop_in_parallel_or_one_by_one(sandbox):
    root, vms = sandbox / "root", sandbox / "vms"
    for i in range(1, 5):
        write_guest(vms, f"s{i}")  # BIOS only: ignores the power button, STOPDELAY 3
    register(root, vms, "s1", "s2", "s3", "s4")

    host_conf(root, "MINSTOPDELAY=3\n")
    qi(root, "qemud", "start", check=0)
    began = time.monotonic()
    out = qi(root, "qemud", "stop", check=0).stdout
    parallel = time.monotonic() - began
    assert qemu_processes(str(sandbox)) == []
    assert "stopping 4 guest(s), 4 at a time" in out

    host_conf(root, "MINSTOPDELAY=3\nPARALLEL=1\n")
    qi(root, "qemud", "start", check=0)
    began = time.monotonic()
    qi(root, "qemud", "stop", check=0)
    serial = time.monotonic() - began
    # Behaviour, with wide margins: together they take about one STOPDELAY, one by one the sum.
    assert parallel < 3 * 2.5, parallel
    assert serial >= 4 * 3, serial


class PowerButtonWatch:
    """A second QMP monitor of one guest's QEMU, on a socket the test listens on (QEMU
    connects to it at start-up: ``-chardev socket,path=…`` in the cfg-file): QEMU reports every
    press of the power button there as a POWERDOWN event with its own time stamp."""

    def __init__(self, folder, name):
        self.path = str(folder / f"{name}.watch")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        os.chmod(self.path, 0o777)  # QEMU runs as the system user
        self.server.listen(1)
        self.presses = []
        self.thread = threading.Thread(target=self._watch, daemon=True)

    cfg = property(lambda self: f"-chardev socket,id=watch,path={self.path}\n-mon chardev=watch,mode=control\n")

    def _watch(self):
        conn, _ = self.server.accept()
        with conn, conn.makefile("rwb") as stream:
            stream.readline()  # the greeting
            stream.write(b'{"execute": "qmp_capabilities"}\n')
            stream.flush()
            for line in stream:
                message = json.loads(line)
                if message.get("event") == "POWERDOWN":
                    stamp = message["timestamp"]
                    self.presses.append(stamp["seconds"] + stamp["microseconds"] / 1e6)


def test_qemud_stop_presses_every_button_before_it_waits(sandbox):
    # issue 15: every guest hears its power button from the start of the shutdown, none waits
    # for another's stop to get going; and no guest is pressed twice at once (qemud's press
    # counts as its stop's first)
    root, vms = sandbox / "root", sandbox / "vms"
    host_conf(root, "MINSTOPDELAY=3\n")
    names = [f"p{i}" for i in range(1, 6)]
    watches = {}
    for name in names:
        watches[name] = PowerButtonWatch(sandbox, name)
        write_guest(vms, name, cfg=watches[name].cfg)  # BIOS only: ignores the button, STOPDELAY 3
    register(root, vms, *names)
    qi(root, "qemud", "start", check=0)
    for watch in watches.values():
        watch.thread.start()
    began = time.time()
    out = qi(root, "qemud", "stop", check=0).stdout
    assert qemu_processes(str(sandbox)) == []
    for watch in watches.values():
        watch.thread.join(timeout=10)
    presses = {name: watch.presses for name, watch in watches.items()}
    assert all(presses.values()), presses
    firsts = [p[0] for p in presses.values()]
    resends = [p[1] for p in presses.values() if len(p) > 1]
    assert max(firsts) < min(resends, default=float("inf")), presses  # every button before any resend
    for name, stamps in presses.items():
        assert all(b - a > 1.0 for a, b in zip(stamps, stamps[1:])), (name, stamps)  # never twice at once
    assert all(f"{n}: forced off after 3 s: did not react to the power button" in out for n in names), out
    print(f"first press {min(firsts) - began:.3f} s after qemud stop began, last {max(firsts) - began:.3f} s")


def test_graceful_guests_do_not_wait_for_a_stubborn_one(sandbox, test_guest):
    root, vms = sandbox / "root", sandbox / "vms"
    host_conf(root, "MINSTOPDELAY=3\n")
    write_guest(vms, "stub1", rc="STOPDELAY=12\n")
    for name in ("good1", "good2"):
        write_guest(vms, name, test_guest)
    register(root, vms, "stub1", "good1", "good2")
    qi(root, "qemud", "start", check=0)
    for name in ("good1", "good2"):
        wait_for_line(vms / f"{name}.serial", f"QI-BOOTED {name}", timeout=60)
    out = qi(root, "qemud", "stop", check=0).stdout.splitlines()
    stopped = [l.split(":")[0] for l in out if l.endswith(": stopped") or ": forced off" in l]
    assert stopped[-1] == "stub1" and set(stopped) == {"stub1", "good1", "good2"}
    assert "stub1: forced off after 12 s: did not react to the power button" in out  # said as such
    assert any(l.startswith("stub1: waiting for the guest to power off, ") and l.endswith(" s left") for l in out)
    for name in ("good1", "good2"):
        assert wait_for_line(vms / f"{name}.serial", "QI-POWEROFF", timeout=1)


def test_dependents_stop_before_their_dependencies(sandbox):
    root, vms = sandbox / "root", sandbox / "vms"
    host_conf(root, "MINSTOPDELAY=3\n")
    write_guest(vms, "db1")
    write_guest(vms, "app1", rc="DEPENDS=db1\n")
    register(root, vms, "app1")
    qi(root, "qemud", "start", check=0)
    out = qi(root, "qemud", "stop", check=0).stdout.splitlines()
    assert [l.split(":")[0] for l in out if l.endswith(": stopped") or ": forced off" in l] == ["app1", "db1"]


def test_a_failing_guest_does_not_stop_the_others(sandbox):
    root, vms = sandbox / "root", sandbox / "vms"
    host_conf(root, "MINSTOPDELAY=3\n")
    write_guest(vms, "ok1")
    write_guest(vms, "nodisk1", cfg=f"DSK1={vms}/missing.qcow2\n")
    write_guest(vms, "ok2")
    register(root, vms, "ok1", "nodisk1", "ok2")
    proc = qi(root, "qemud", "start", check=1)
    assert "nodisk1: failed to start:" in proc.stdout and "missing.qcow2" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "failed: nodisk1"
    assert len(qemu_processes(str(sandbox))) == 2
    rows = {l.split()[0]: l.split()[1] for l in qi(root, "qemud", "status", check=3).stdout.splitlines()[1:]}
    assert rows == {"ok1": "running", "nodisk1": "stopped", "ok2": "running"}
    qi(root, "qemud", "stop", check=0)


def test_a_guest_whose_files_went_bad_is_still_stopped(sandbox, test_guest):
    root, vms = sandbox / "root", sandbox / "vms"
    host_conf(root, "MINSTOPDELAY=3\n")
    rc = write_guest(vms, "bad1", test_guest)
    register(root, vms, "bad1")
    qi(root, "qemud", "start", check=0)
    wait_for_line(vms / "bad1.serial", "QI-BOOTED bad1", timeout=60)
    rc.write_text(rc.read_text() + "RAM=lots\n")  # broken while it runs
    # Listed with the truth about its process (it runs, so the service is "running": exit 0).
    assert status_rows(qi(root, "qemud", "status", check=0).stdout)["bad1"][0] == "running"
    out = qi(root, "qemud", "stop", check=0, timeout=120).stdout
    assert "bad1: stopped" in out
    assert wait_for_line(vms / "bad1.serial", "QI-POWEROFF", timeout=1)  # cleanly, by the power button
    assert qemu_processes(str(sandbox)) == []


# -- the generated qemud scripts (issue 5, acceptance 5) ----------------------------------------

@pytest.mark.root
@pytest.mark.usefixtures("subreaper")
@pytest.mark.skipif(shutil.which("dash") is None, reason="needs dash")
def test_sysv_qemud_script_starts_and_stops_the_guests_under_dash(sandbox, test_guest):
    """The generated SysV qemud script under dash: the stubborn stub1 and the real Linux lin1 are
    autostart guests, idle1 is registered only."""
    root, vms = sandbox / "root", sandbox / "vms"
    qemud_host(root, vms, test_guest)
    qi(root, "install", "--init", "sysv", check=0)

    def sysv(script, action, code):
        result = run("dash", str(root / "etc/init.d" / script), action)
        assert result.returncode == code, (script, action, result.returncode, result.stdout, result.stderr)
        return result

    def pid(name):
        return int((root / f"run/qemu-init/{name}.pid").read_text())

    nothing_runs = dict.fromkeys(("stub1", "lin1", "idle1"), ("stopped", "-"))
    assert status_rows(sysv("qemud", "status", 3).stdout) == nothing_runs
    sysv("qemud", "start", 0)
    pids = {name: pid(name) for name in ("stub1", "lin1")}
    assert all(process_alive(p) for p in pids.values())
    assert qemu_processes(str(sandbox)) == sorted(pids.values())
    assert not (root / "run/qemu-init/idle1.pid").exists(), "idle1 is not autostart"
    assert status_rows(sysv("qemud", "status", 0).stdout) == {"stub1": ("running", str(pids["stub1"])),
                                                            "lin1": ("running", str(pids["lin1"])),
                                                            "idle1": ("stopped", "-")}

    sysv("qemu-idle1", "start", 0)  # stop takes every running guest, autostart or not
    pids["idle1"] = pid("idle1")
    wait_for_line(vms / "lin1.serial", "QI-BOOTED lin1", timeout=120)
    sysv("qemud", "stop", 0)
    assert qemu_processes(str(sandbox)) == []
    assert not any(process_alive(p) for p in pids.values())
    assert not list((root / "run/qemu-init").glob("*.pid"))
    assert "QI-POWEROFF" in (vms / "lin1.serial").read_text()  # the Linux guest shut down cleanly
    assert status_rows(sysv("qemud", "status", 3).stdout) == nothing_runs
    sysv("qemud", "stop", 0)  # nothing left to stop
