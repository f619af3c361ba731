"""The command line `show` prints is the one real QEMU runs (SPEC §2–§3, issue 2)."""

import os
import pwd
import socket
import subprocess

import pytest
from guestkit import GUEST_USER, console_file, qemu_processes, qmp, wait_for_line, wait_gone
from guestkit.qemuinit import host_conf, qi, write_guest

pytestmark = pytest.mark.qemu


def run_shown(root, name):
    """Start the guest the way the scripts do (the helper hands QEMU its sockets as descriptors,
    so QEMU cannot run without it); QEMU's own command line is exactly what `show` printed."""
    argv = qi(root, "show", "--argv", name, check=0).stdout.splitlines()
    qi(root, "start", name, check=0)
    pid = int((root / f"run/qemu-init/{name}.pid").read_text())
    cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[:-1]
    assert [a.decode() for a in cmdline] == argv  # byte for byte what show printed
    return argv


def test_shown_command_line_runs_in_real_qemu(sandbox, test_guest):
    root = sandbox / "root"
    with socket.socket() as probe:  # a free port, so a busy 30320 on this host cannot interfere
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host_conf(root, f"MONPORT={port}\n")
    write_guest(sandbox / "vms", "cmd1", rc="DISPLAY=127.0.0.1:33\nMONITOR=inet\n")
    qi(root, "register", str(sandbox / "vms"), check=0)
    argv = run_shown(root, "cmd1")
    pidfile, qmp_sock = root / "run/qemu-init/cmd1.pid", root / "run/qemu-init/cmd1.qmp"
    pid = int(pidfile.read_text())
    assert qemu_processes(str(sandbox)) == [pid]
    assert argv[argv.index("-name") + 1] == "cmd1,process=qemu-cmd1"
    assert qmp_sock.is_socket()
    assert qmp(qmp_sock, "query-status")[0]["status"] == "running"
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    assert f"127.0.0.1:{5900 + 33} " in listening and f"127.0.0.1:{port} " in listening
    qi(root, "stop", "cmd1", "--force", check=0)
    assert wait_gone(pid)
    assert not pidfile.exists() and not qmp_sock.exists()


def test_kernel_in_cfg_file_boots_and_prints(sandbox, test_guest):
    root = sandbox / "root"
    serial = console_file(sandbox / "console.log")
    write_guest(sandbox / "vms", "boot1", test_guest, kernel_args="qi.echo=hello", serial=serial)
    qi(root, "register", str(sandbox / "vms"), check=0)
    run_shown(root, "boot1")
    assert wait_for_line(serial, "QI-BOOTED boot1", timeout=60)
    assert wait_for_line(serial, "QI-ECHO hello", timeout=10)
    qmp(root / "run/qemu-init/boot1.qmp", "system_powerdown")
    assert wait_for_line(serial, "QI-POWEROFF", timeout=30)
    pid_gone = not (root / "run/qemu-init/boot1.pid").exists() or wait_gone(
        int((root / "run/qemu-init/boot1.pid").read_text()))
    assert pid_gone


def test_hostile_disk_path_reaches_qemu_byte_for_byte(sandbox):
    root, folder = sandbox / "root", sandbox / "vms"
    odd = folder / "a dir, with $(x) `y` 'q' \"d\"; z"
    odd.mkdir(parents=True)
    disk = odd / "disk,1 $HOME.img"
    disk.write_bytes(b"\0" * 1024 * 1024)
    os.chown(disk, pwd.getpwnam(GUEST_USER).pw_uid, -1)  # QEMU opens it as the guest's user
    write_guest(folder, "odd1", cfg=f"DSK1='{disk}'\n")
    qi(root, "register", str(folder), check=0)
    run_shown(root, "odd1")
    blocks = qmp(root / "run/qemu-init/odd1.qmp", "query-block")[0]
    files = [b["inserted"]["file"] for b in blocks if "inserted" in b]
    assert str(disk) in files
    qmp(root / "run/qemu-init/odd1.qmp", "quit")


def test_unregistering_a_running_guest_is_refused(sandbox):
    root = sandbox / "root"
    write_guest(sandbox / "vms", "run1")
    qi(root, "register", str(sandbox / "vms"), check=0)
    qi(root, "start", "run1", check=0)
    proc = qi(root, "unregister", "run1", check=1)
    assert proc.stderr.strip() == "qemu-init: run1: is running; stop it first (qemu-init stop run1)"
    assert "run1" in qi(root, "list", check=0).stdout
    rc = sandbox / "vms/run1-qemud.rc"
    good = rc.read_text()
    rc.write_text(good + "RAM=lots\n")  # its files go bad while it runs: still refused
    assert qi(root, "unregister", "run1", check=1).stderr.strip().endswith("is running; stop it first (qemu-init stop run1)")
    assert "running (files have errors)" in qi(root, "list", check=0).stdout
    rc.write_text(good)
    qi(root, "stop", "run1", "--force", check=0)
    qi(root, "unregister", "run1", check=0)
    assert "run1" not in qi(root, "list", check=0).stdout
