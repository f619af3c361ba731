"""(0) Against the peers (issue 15): qemu-init (its CLI and its generated SysV script) against
libvirt 9 (``virsh``, ``libvirt-guests.sh``, a libvirtd of the bench's own: libvirt.py) and the
floors (QEMU started by hand; the power button pressed by hand), on the same test guest
(tests/guestkit: Debian kernel + busybox initramfs, TCG, 256 MB), interleaved rounds.

Rows, as the issue's table: status of one guest; status of 20; start of one guest until the
command returns (BIOS-only guest: only the start matters); stop of one booted guest until its
QEMU is gone; host stop of 8 booted guests, until all are gone and until the command returned.
qemu-openrc is not packaged for Debian and is left out (bench/RESULTS.md says so).
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from typing import Callable, List

import libvirt
from hoststop import _qmp
from kit import Samples, Section, cli, guestkit, qi, release, round_robin, sandbox, say, timed
from scripts import Guests, by_hand, helper_args

MANY = 20
HOST_STOP = 8
BOOT_TIMEOUT = 300.0


def _gone(pids: List[int], began: float, timeout: float = 120) -> float:
    """Seconds from ``began`` until every pid has exited."""
    fds = [os.pidfd_open(pid) for pid in pids]
    try:
        left = set(fds)
        while left:
            ready = select.select(list(left), [], [], timeout)[0]
            if not ready:
                raise TimeoutError("guests still running")
            left.difference_update(ready)
        return time.perf_counter() - began
    finally:
        for fd in fds:
            os.close(fd)


def _background(argv: List[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run(section: Section, quick: bool) -> None:
    why = libvirt.available()
    if why:
        section.error = f"libvirt not measured: {why}"
        return
    repeats = 2 if quick else 3
    box = sandbox("peers")
    lv = libvirt.Libvirt(box)
    guest = guestkit.build_test_guest()
    try:
        say("  starting libvirtd in its own namespaces")
        lv.start()
        g = Guests(box, "MINSTOPDELAY=3\n")
        # qemu-init: bios1 (start), lin1 (stop of one), st1..st20 (status), hs1..hs8 (host stop)
        g.add("bios1a", rc="RAM=64M\n")
        g.add("lin1a", guest, rc="STOPDELAY=30\n")
        many = [f"st{i}a" for i in range(1, MANY + 1)]
        for name in many:
            g.add(name, rc="RAM=32M\n")
        hosts = [f"hs{i}a" for i in range(1, HOST_STOP + 1)]
        for name in hosts:
            g.add(name, guest, rc="STOPDELAY=30\n")
        g.register()
        cli_base = [*cli(), "--root", str(g.root)]
        for name in ["bios1a", "lin1a", *many, *hosts]:
            g.sysv_script(name)
        script = lambda name: str(g.box / "sysv" / f"qemu-{name}")  # noqa: E731
        hand = by_hand(helper_args(g.sysv_script("bios1a"), "start"))
        # libvirt: the same guests
        for name in ["bios1a", *many]:
            lv.define(f"lv-{name}", None, box / f"lv-{name}.serial", ram_mb=64 if name == "bios1a" else 32)
        for name in ["lin1a", *hosts]:
            lv.define(f"lv-{name}", guest, box / f"lv-{name}.serial")

        def lv_wait_off(name: str) -> None:
            deadline = time.monotonic() + 30
            while lv.virsh("domstate", name, ok=()).stdout.strip() != "shut off":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: libvirt still sees it running")
                time.sleep(0.05)

        samples = Samples()

        # -- status: one running guest; 20 registered ------------------------------------
        qi(g.root, "start", "st1a")
        lv.virsh("start", "lv-st1a")
        status = {
            "status of one: qemu-init status NAME (CLI)": lambda: timed([*cli_base, "status", "st1a"]),
            "status of one: its SysV script": lambda: timed([script("st1a"), "status"]),
            "status of one: virsh domstate": lambda: timed(lv.virsh_argv("domstate", "lv-st1a")),
            f"status of {MANY}: qemu-init qemud status": lambda: timed([*cli_base, "qemud", "status"], ok=(0, 3)),
            f"status of {MANY}: virsh list --all": lambda: timed(lv.virsh_argv("list", "--all")),
        }
        say(f"  status: {repeats * 3} rounds")
        round_robin(status, repeats * 3, samples, weights={k: 3 for k in status})
        qi(g.root, "stop", "st1a", "--force")
        lv.virsh("destroy", "lv-st1a")

        # -- start of one guest, until the command returns -------------------------------
        def start(argv: List[str], cleanup: Callable[[], None]) -> float:
            seconds = timed(argv)
            cleanup()
            return seconds

        def kill_bios() -> None:
            g.kill("bios1a")

        def lv_destroy() -> None:
            lv.virsh("destroy", "lv-bios1a")
            lv_wait_off("lv-bios1a")

        starts = {
            "start one: qemu-init start NAME (CLI)": lambda: start([*cli_base, "start", "bios1a"], kill_bios),
            "start one: its SysV script": lambda: start([script("bios1a"), "start"], kill_bios),
            "start one: virsh start": lambda: start(lv.virsh_argv("start", "lv-bios1a"), lv_destroy),
            "start one: floor: QEMU by hand (-daemonize)": lambda: start(hand, kill_bios),
        }
        say(f"  start: {repeats * 2} rounds")
        round_robin(starts, repeats * 2, samples)

        # -- stop of one booted guest, until QEMU is gone --------------------------------
        def boot_qi(names: List[str]) -> List[int]:
            for name in names:
                guestkit.console_file(g.serial(name))
            for name in names:
                qi(g.root, "start", name)
            for name in names:
                guestkit.wait_for_line(g.serial(name), "QI-READY", timeout=BOOT_TIMEOUT)
            return [int(g.pidfile(name).read_text()) for name in names]

        def boot_lv(names: List[str]) -> List[int]:
            for name in names:
                serial = box / f"lv-{name}.serial"
                serial.write_text("")
                lv.virsh("start", f"lv-{name}")
            for name in names:
                guestkit.wait_for_line(box / f"lv-{name}.serial", "QI-READY", timeout=BOOT_TIMEOUT)
            return [lv.pid(f"lv-{name}") for name in names]

        def stop_one(boot, argv: List[str], after: Callable[[], None] = lambda: None) -> float:
            pids = boot(["lin1a"])
            began = time.perf_counter()
            proc = _background(argv) if argv else None
            if proc is None:
                _qmp(str(g.rundir() / "lin1a.qmp"), "system_powerdown")
            seconds = _gone(pids, began)
            if proc is not None:
                proc.wait(timeout=120)
            after()
            return seconds

        stops = {
            "stop one booted, QEMU gone: qemu-init stop NAME (CLI)": lambda: stop_one(boot_qi, [*cli_base, "stop", "lin1a"]),
            "stop one booted, QEMU gone: its SysV script": lambda: stop_one(boot_qi, [script("lin1a"), "stop"]),
            "stop one booted, QEMU gone: virsh shutdown": lambda: stop_one(
                boot_lv, lv.virsh_argv("shutdown", "lv-lin1a"), lambda: lv_wait_off("lv-lin1a")),
            "stop one booted, QEMU gone: floor: power button by hand": lambda: stop_one(
                boot_qi, [], lambda: g.kill("lin1a")),
        }
        # rounds of the booted-guest rows: each boots its guests again (TCG: seconds each); three,
        # so that one round's outlier (a QEMU that hung at power-off, see RESULTS.md) is not the median
        boots = 3
        say(f"  stop of one booted guest: {boots} rounds")
        round_robin(stops, boots, samples, warmup=0)

        # -- host stop of 8 booted guests ------------------------------------------------
        lv.guests_settings(f"URIS=default\nON_SHUTDOWN=shutdown\nPARALLEL_SHUTDOWN={HOST_STOP}\n"
                           "SHUTDOWN_TIMEOUT=60\n")

        def host_stop(label: str, boot, argv: List[str], after: Callable[[], None] = lambda: None) -> float:
            pids = boot(hosts)
            began = time.perf_counter()
            proc = _background(argv) if argv else None
            if proc is None:
                for name in hosts:
                    _qmp(str(g.rundir() / f"{name}.qmp"), "system_powerdown")
            gone = _gone(pids, began)
            if proc is not None:
                proc.wait(timeout=300)
                samples.add(f"host stop of {HOST_STOP}, command returns: {label}", time.perf_counter() - began)
            after()
            return gone

        def lv_boot(names: List[str]) -> List[int]:
            # as after a boot's `libvirt-guests.sh start`: its list of the last stop's guests gone
            # (with it left, a stop does nothing: "last stop was not followed by start")
            (lv.box / "lib/libvirt-guests").unlink(missing_ok=True)
            return boot_lv(names)

        def lv_after() -> None:
            for name in hosts:
                lv_wait_off(f"lv-{name}")

        host = {
            f"host stop of {HOST_STOP}, all gone: qemu-init qemud stop": lambda: host_stop(
                "qemu-init qemud stop", boot_qi, [*cli_base, "qemud", "stop"]),
            f"host stop of {HOST_STOP}, all gone: libvirt-guests.sh stop": lambda: host_stop(
                "libvirt-guests.sh stop", lv_boot, lv.inside("sh", libvirt.GUESTS_SH, "stop"), lv_after),
            f"host stop of {HOST_STOP}, all gone: floor: every power button by hand": lambda: host_stop(
                "floor", boot_qi, [], lambda: g.kill()),
        }
        say(f"  host stop of {HOST_STOP} booted guests: {boots} rounds")
        round_robin(host, boots, samples, warmup=0)

        for name in [*status, *starts, *stops, *host]:
            section.measure(name, samples.get(name))
        for label in ("qemu-init qemud stop", "libvirt-guests.sh stop"):
            name = f"host stop of {HOST_STOP}, command returns: {label}"
            section.measure(name, samples.get(name))
        _ratios(section, samples)
    finally:
        lv.stop()
        release(box)


def _ratios(section: Section, s: Samples) -> None:
    m = s.median
    virsh_state = m("status of one: virsh domstate")
    section.ratio("status NAME (CLI) / virsh domstate", m("status of one: qemu-init status NAME (CLI)") / virsh_state, 2.0)
    section.ratio("status, SysV script / virsh domstate", m("status of one: its SysV script") / virsh_state)
    section.ratio(f"qemud status ({MANY}) / virsh list --all",
                  m(f"status of {MANY}: qemu-init qemud status") / m(f"status of {MANY}: virsh list --all"), 2.0)
    virsh_start = m("start one: virsh start")
    cli_start = m("start one: qemu-init start NAME (CLI)")
    section.ratio("start, CLI / virsh start", cli_start / virsh_start, 0.2)
    section.ratio("start, CLI / qemu-openrc's 177 ms (the issue's figure)", cli_start / 0.177, 1.0)
    section.ratio("start, SysV script / virsh start", m("start one: its SysV script") / virsh_start, 0.6)
    section.ratio("start, CLI / QEMU by hand", cli_start / m("start one: floor: QEMU by hand (-daemonize)"))
    floor = m("stop one booted, QEMU gone: floor: power button by hand")
    section.ratio("stop one, CLI / floor", m("stop one booted, QEMU gone: qemu-init stop NAME (CLI)") / floor, 2.0)
    section.ratio("stop one, SysV script / floor", m("stop one booted, QEMU gone: its SysV script") / floor, 2.0)
    section.ratio("stop one, virsh shutdown / floor", m("stop one booted, QEMU gone: virsh shutdown") / floor)
    hfloor = m(f"host stop of {HOST_STOP}, all gone: floor: every power button by hand")
    section.ratio(f"host stop of {HOST_STOP}, all gone: qemud stop / floor",
                  m(f"host stop of {HOST_STOP}, all gone: qemu-init qemud stop") / hfloor, 1.3)
    section.ratio(f"host stop of {HOST_STOP}, all gone: libvirt-guests / floor",
                  m(f"host stop of {HOST_STOP}, all gone: libvirt-guests.sh stop") / hfloor)
    section.ratio(f"host stop of {HOST_STOP}, command returns: qemud stop / libvirt-guests",
                  m(f"host stop of {HOST_STOP}, command returns: qemu-init qemud stop")
                  / m(f"host stop of {HOST_STOP}, command returns: libvirt-guests.sh stop"), 0.5)
