"""The test-guest fixtures work: a guest boots under QEMU and obeys the power button, two guests
in a network namespace reach each other, and nothing is left behind on the host.

Timings are printed (run with -s to see them)."""

import subprocess
import time

import pytest

import guestkit
from guestkit import QEMU, qemu_guest_args, qmp, wait_for_line

pytestmark = [pytest.mark.qemu, pytest.mark.root]


def host_links():
    """The host's interfaces, to prove the tests never touch them."""
    return subprocess.run(["ip", "-o", "link", "show"], check=True, capture_output=True, text=True).stdout


def netns_names():
    return subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True).stdout


def test_guest_boots_and_powers_off_on_system_powerdown(test_guest, sandbox):
    log, sock, pidfile = sandbox / "serial.log", sandbox / "qmp.sock", sandbox / "qemu.pid"
    argv = [
        QEMU,
        *qemu_guest_args("alpha", log, "qi.echo=hello", guest=test_guest),
        "-qmp", f"unix:{sock},server=on,wait=off",
        "-daemonize",
        "-pidfile", str(pidfile),
    ]  # fmt: skip

    started = time.monotonic()
    subprocess.run(argv, check=True, timeout=30)  # returns once the daemon is set up
    pid = int(pidfile.read_text())
    assert guestkit.qemu_processes(str(sandbox)) == [pid]
    wait_for_line(log, "QI-BOOTED alpha", timeout=30)
    boot = time.monotonic() - started
    assert "qi.name=alpha qi.echo=hello" in wait_for_line(log, "QI-ARGS", timeout=1)
    wait_for_line(log, "QI-ECHO hello", timeout=10)
    wait_for_line(log, "QI-READY", timeout=10)

    pressed = time.monotonic()
    qmp(sock, "system_powerdown")
    assert guestkit.wait_gone(pid, timeout=10), "QEMU still runs 10 s after system_powerdown"
    poweroff = time.monotonic() - pressed
    wait_for_line(log, "QI-POWEROFF", timeout=1)
    # A clean exit: QEMU removed its own pid file and socket.
    assert not pidfile.exists()
    assert not sock.exists()
    assert guestkit.qemu_processes(str(sandbox)) == []
    print(f"\nTIMING boot (QEMU start to QI-BOOTED): {boot:.2f} s; poweroff (system_powerdown to exit): {poweroff:.2f} s")


def test_two_guests_on_a_bridge_in_a_netns_ping_each_other(test_guest, sandbox, netns):
    links_before = host_links()
    netns.run(["ip", "link", "add", "br0", "type", "bridge"])
    netns.run(["ip", "link", "set", "br0", "up"])
    guests = {"alpha": ("10.0.0.1", "10.0.0.2"), "beta": ("10.0.0.2", "10.0.0.1")}

    started = time.monotonic()
    pids = []
    for number, (name, (address, peer)) in enumerate(guests.items(), start=1):
        tap = f"tap{number}"
        netns.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
        netns.run(["ip", "link", "set", tap, "master", "br0"])
        netns.run(["ip", "link", "set", tap, "up"])
        pidfile = sandbox / f"{name}.pid"
        argv = [
            QEMU,
            *qemu_guest_args(name, sandbox / f"{name}.log", f"qi.ip={address}/24 qi.ping={peer}", guest=test_guest),
            "-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=net0,mac=52:54:00:00:00:{number:02x}",
            "-daemonize",
            "-pidfile", str(pidfile),
        ]  # fmt: skip
        netns.run(argv, timeout=30)
        pids.append(int(pidfile.read_text()))

    assert sorted(netns.pids()) == sorted(pids)
    for name, (address, peer) in guests.items():
        wait_for_line(sandbox / f"{name}.log", f"QI-NET-UP {address}/24", timeout=40)
    for name, (address, peer) in guests.items():
        wait_for_line(sandbox / f"{name}.log", f"QI-PING-OK {peer}", timeout=40)
    both_pinged = time.monotonic() - started

    assert host_links() == links_before
    print(f"\nTIMING two guests, start of the first to both QI-PING-OK: {both_pinged:.2f} s")
    # The netns and sandbox fixtures kill both guests; the next tests prove that cleanup.


def test_netns_cleanup_kills_everything_inside_and_leaves_the_host_alone():
    links_before = host_links()
    with guestkit.Netns() as ns:
        assert ns.name in netns_names()
        ns.run(["ip", "link", "add", "br0", "type", "bridge"])
        sleeper = ns.popen(["sleep", "600"])
        deadline = time.monotonic() + 10  # `ip netns exec` enters the namespace after Popen returned
        while ns.pids() != [sleeper.pid] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ns.pids() == [sleeper.pid]
    assert sleeper.wait(timeout=5) == -9
    assert ns.name not in netns_names()
    assert host_links() == links_before


def test_kill_qemu_finds_and_kills_by_marker(test_guest, sandbox):
    pidfile = sandbox / "qemu.pid"
    # -S: the guest never runs; only the process matters here.
    argv = [QEMU, *qemu_guest_args("gamma", sandbox / "serial.log", guest=test_guest), "-S"]
    subprocess.run([*argv, "-daemonize", "-pidfile", str(pidfile)], check=True, timeout=30)
    pid = int(pidfile.read_text())
    assert guestkit.qemu_processes(str(sandbox)) == [pid]
    assert guestkit.qemu_processes("/tmp/qi-no-such-sandbox") == []
    assert guestkit.kill_qemu(str(sandbox)) == [pid]
    assert not guestkit.process_alive(pid)
    assert guestkit.qemu_processes(str(sandbox)) == []


def test_short_tempdir_leaves_room_for_socket_paths():
    path = guestkit.short_tempdir()
    try:
        assert path.is_dir() and str(path).startswith("/tmp/qi-")
        assert len(str(path)) < 24
    finally:
        path.rmdir()
