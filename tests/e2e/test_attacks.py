"""A local user attacks a real guest started the default way (SPEC §9, issue 11).

The attacker is a real unprivileged user the test creates (and removes): everything it tries runs
under ``setpriv`` as that user. The guests are started through ``qemu-init`` with the default
settings: QEMU as the system user (SYSUSR), under its seccomp sandbox, its control socket and
monitor root-only unix sockets the helper made. (The file attacks, a guest folder of the user's
own, links, FIFOs, are in test_untrusted_files.py; a misbehaving QMP peer in the unit tests.)
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import time

import pytest

import guestkit
from guestkit import GUEST_USER, wait_gone
from guestkit.qemuinit import host_conf, qi, write_guest

pytestmark = [
    pytest.mark.qemu, pytest.mark.root, pytest.mark.usefixtures("subreaper"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a user to attack with)"),
    pytest.mark.skipif(shutil.which("useradd") is None or shutil.which("setpriv") is None,
                       reason="needs useradd and setpriv"),
]


@pytest.fixture
def attacker():
    name = "qiatk" + secrets.token_hex(3)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", name], check=False)


def as_user(user, *argv: str, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 30)
    return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                           *argv], capture_output=True, text=True, **kwargs)


def started(sandbox, name: str = "vic1", rc: str = "DISPLAY=0\n") -> tuple:
    """A stubborn guest with the default settings (no VNC: no port to clash with other tests)."""
    root = sandbox / "root"
    host_conf(root, "MINSTOPDELAY=1\n")
    rcfile = write_guest(sandbox / "vms", name, rc=rc + "STOPDELAY=1\n")
    for key in ("RUNAS", "MONITOR", "DAEMON"):
        assert f"{key}=" not in rcfile.read_text()  # the defaults, as a new user leaves them
    qi(root, "register", str(rcfile), check=0)
    qi(root, "start", name, check=0)
    pid = int((root / f"run/qemu-init/{name}.pid").read_text())
    return root, pid


def proc_status(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, v in (line.split(":", 1) for line in f)}


def test_qemu_runs_as_the_system_user_inside_its_seccomp_sandbox(sandbox):
    root, pid = started(sandbox)
    fields = proc_status(pid)
    assert fields["Seccomp"] == "2"
    qemud = pwd.getpwnam(GUEST_USER)
    assert fields["Uid"].split() == [str(qemud.pw_uid)] * 4 and fields["Gid"].split() == [str(qemud.pw_gid)] * 4
    for sock in ("vic1.qmp", "vic1.mon", "vic1.pid", "vic1.console"):
        st = os.stat(root / "run/qemu-init" / sock)
        assert st.st_uid == 0 and not st.st_mode & 0o022, sock
    console_log = os.stat(root / "var/log/qemu-init/vic1.console.log")  # root's, opened for QEMU
    assert console_log.st_uid == 0 and oct(console_log.st_mode & 0o777) == "0o640"
    assert qi(root, "check", check=0).stdout.endswith("0 error(s), 0 warning(s)\n")  # the defaults need none


def test_a_local_user_reaches_neither_the_monitor_nor_the_control_socket(sandbox, attacker):
    """Attack 1: the monitor was a loopback TCP port anyone could send `migrate "exec:…"` to."""
    root, pid = started(sandbox)
    run = root / "run/qemu-init"
    probe = ("import socket, sys\n"
             "for path in sys.argv[1:]:\n"
             "    s = socket.socket(socket.AF_UNIX)\n"
             "    try:\n"
             "        s.connect(path); print('connected', path)\n"
             "    except OSError as e:\n"
             "        print('refused', e.errno)\n")
    tried = as_user(attacker, sys.executable, "-c", probe, str(run / "vic1.mon"), str(run / "vic1.qmp"),
                    str(run / "vic1.console"))
    assert tried.stdout.split("\n")[:3] == ["refused 13"] * 3, tried  # EACCES
    listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    assert f"pid={pid}," not in listening, "QEMU listens on no TCP port"
    assert "monitor  unix " in qi(root, "show", "vic1", check=0).stdout.replace("\t", "  ") or \
        f"unix {run / 'vic1.mon'}" in qi(root, "show", "vic1", check=0).stdout


def test_spawning_through_the_monitor_kills_qemu_instead_of_running_anything(sandbox):
    """Even root's own monitor: the sandbox forbids QEMU to spawn, so `migrate "exec:…"` makes
    QEMU die (SIGSYS) and nothing runs, as the guest's user or anyone."""
    root, pid = started(sandbox)
    canary = sandbox / "pwned"
    os.chmod(sandbox, 0o777 | 0o1000)  # anyone could write the canary, were anything to run
    qi(root, "monitor", "vic1", f'migrate "exec:id > {canary}"')
    assert wait_gone(pid, 10)
    time.sleep(0.5)
    assert not canary.exists()
    assert qi(root, "status", "vic1").returncode == 1  # dead, pid file left: the admin sees it


def test_a_lookalike_process_of_another_user_is_never_taken_for_the_guest(sandbox, attacker):
    """Attack 6: after the guest died, a local user's process that looks like its QEMU holds the
    pid in the pid file (a recycled pid): it is not the guest for status, start or stop."""
    root, pid = started(sandbox)
    os.kill(pid, 9)
    assert wait_gone(pid)
    lookalike = subprocess.Popen(  # argv[0] and every option as the guest's QEMU has them
        ["qemu-system-x86_64", "-c", "import time; time.sleep(300)", "-name", "vic1,process=qemu-vic1",
         "-chardev", "socket,id=qmp,fd=3,server=on,wait=off"], executable="/usr/bin/python3",  # the venv may sit where the attacker cannot enter
        user=attacker.pw_uid, group=attacker.pw_gid, extra_groups=[])
    try:
        deadline = time.monotonic() + 10
        while b"vic1" not in open(f"/proc/{lookalike.pid}/cmdline", "rb").read():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        (root / "run/qemu-init/vic1.pid").write_text(f"{lookalike.pid}\n")  # as if the pid came round
        status = qi(root, "status", "vic1")
        assert status.returncode == 1 and "is not this guest" in status.stdout, status
        start = qi(root, "start", "vic1", check=0)
        assert "already running" not in start.stdout + start.stderr
        new = int((root / "run/qemu-init/vic1.pid").read_text())
        assert new != lookalike.pid and proc_status(new)["Uid"].split()[0] == str(pwd.getpwnam(GUEST_USER).pw_uid)
        qi(root, "stop", "vic1", "--force", check=0)
        assert wait_gone(new) and lookalike.poll() is None, "stop signalled the lookalike"
    finally:
        lookalike.kill()
        lookalike.wait()


def test_a_vnc_port_taken_first_by_a_local_user_is_one_clear_start_error(sandbox, attacker):
    """Attack 9: with the monitor on a unix socket, VNC's port is all a local user can squat."""
    with socket.socket() as free:
        for port in range(5990, 6090):  # a VNC port nobody here uses now
            try:
                free.bind(("127.0.0.1", port))
                break
            except OSError:
                continue
    display = port - 5900
    squat = subprocess.Popen(
        ["setpriv", f"--reuid={attacker.pw_uid}", f"--regid={attacker.pw_gid}", "--clear-groups",
         sys.executable, "-c", "import socket, sys, time\ns = socket.socket()\n"
         f"s.bind(('127.0.0.1', {port})); s.listen(); print('listening', flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert squat.stdout.readline().strip() == "listening"
        root = sandbox / "root"
        host_conf(root, "MINSTOPDELAY=1\n")
        qi(root, "register", str(write_guest(sandbox / "vms", "vnc1", rc=f"DISPLAY=127.0.0.1:{display}\n")), check=0)
        failed = qi(root, "start", "vnc1", check=1)
        assert [line for line in failed.stderr.splitlines() if line.startswith("qemu-init: ")] == [
            f"qemu-init: vnc1: VNC display 127.0.0.1:{display} (port {port}) is taken by another program;"
            " not started"], failed.stderr
        assert guestkit.qemu_processes(str(sandbox)) == []
        assert not (root / "run/qemu-init/vnc1.pid").exists() and not (root / "run/qemu-init/vnc1.qmp").exists()
    finally:
        squat.kill()
        squat.wait()


def test_bridge_none_means_no_network_at_all(sandbox):
    """Attack 8: QEMU's default user-mode NIC (outbound NAT) is never added."""
    root, pid = started(sandbox, rc="DISPLAY=0\nBRIDGE=none\n")
    assert qi(root, "monitor", "vic1", "info", "network", check=0).stdout.strip() == ""
    pci = qi(root, "monitor", "vic1", "info", "pci", check=0).stdout
    assert "Ethernet controller" not in pci and "Bridge" in pci  # the query works: there is just no NIC


@pytest.mark.parametrize("rc,warning", [
    ("MONITOR=inet\n", "MONITOR: warning: inet: every local user can connect and run commands as qemud"),
    ("RUNAS=root\n", "RUNAS: warning: root: QEMU keeps every privilege"),
])
def test_check_warns_about_what_opens_the_guest_to_others(tmp_path, rc, warning):
    root = tmp_path / "root"
    qi(root, "register", str(write_guest(tmp_path / "vms", "warn1", rc=rc)), check=0)
    assert warning in qi(root, "check", check=0).stdout
