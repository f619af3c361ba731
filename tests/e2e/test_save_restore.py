"""Save at the host's shutdown, restore at its boot (ONSHUTDOWN=save, issue 16) with real guests.

The guest counts on its serial console (``qi.count``: QI-COUNT 1, 2, … every 0.2 s). A restored
guest goes on counting where it was, without booting again; a fresh one boots and counts from 1.
QEMU truncates its console file when it starts, so each QEMU's console is read on its own.
"""

import json
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import time

import pytest
from guestkit import wait_for_line
from guestkit.qemuinit import host_conf, qi, register, status_rows, write_guest

pytestmark = pytest.mark.qemu
COUNT = re.compile(r"^QI-COUNT (\d+)$")


def counts(text):
    return [int(m.group(1)) for m in map(COUNT.match, text.splitlines()) if m]


def wait_counting(console, past=0, timeout=120.0):
    """Wait until the console shows a QI-COUNT beyond ``past``; returns its text."""
    deadline = time.monotonic() + timeout
    while True:
        text = console.read_text(errors="replace") if console.exists() else ""
        if any(n > past for n in counts(text)):
            return text
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no QI-COUNT beyond {past} on {console}; its end:\n{text[-2000:]}")
        time.sleep(0.05)


def counting_guest(root, vms, guest, name="count1", rc=""):
    host_conf(root, "MINSTOPDELAY=3\n")
    write_guest(vms, name, guest, rc=f"ONSHUTDOWN=save\nSTOPDELAY=30\n{rc}", kernel_args="qi.count")
    register(root, vms, name)
    return vms / f"{name}.serial"


def statefile(root, name="count1"):
    return root / f"var/lib/qemu-init/state/{name}.state"


@pytest.fixture
def person():
    """A real unprivileged user (created for the test, removed afterwards): the ``setpriv``
    prefix that runs a command as it."""
    if shutil.which("useradd") is None or shutil.which("setpriv") is None:
        pytest.skip("needs useradd and setpriv")
    name = "qistat" + secrets.token_hex(3)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        user = pwd.getpwnam(name)
        yield ("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups")
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", name], check=False)


def test_qemud_stop_saves_and_qemud_start_restores(sandbox, subreaper, test_guest, person):
    root, vms = sandbox / "root", sandbox / "vms"
    console = counting_guest(root, vms, test_guest)
    qi(root, "autostart", "on", "count1", check=0)

    began = time.monotonic()
    qi(root, "qemud", "start", check=0)
    wait_counting(console)
    fresh_boot = time.monotonic() - began
    time.sleep(1.0)

    began = time.monotonic()
    out = qi(root, "qemud", "stop", check=0)
    saving = time.monotonic() - began
    assert "saved its state to" in out.stdout + out.stderr, out
    before = console.read_text(errors="replace")
    state = statefile(root)
    # root's alone while it exists: the file 0600, its folder 0711 (a name looked up, never listed)
    st = state.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o711 and state.parent.stat().st_uid == 0
    assert "QI-POWEROFF" not in before  # saved, not shut down

    # status says so: the one line, the table and --json (LSB 3: not running)
    line = qi(root, "status", "count1", check=3).stdout
    assert line.startswith("count1: saved (") and str(state) in line, line
    assert status_rows(qi(root, "qemud", "status").stdout)["count1"][0] == "saved"
    record = json.loads(qi(root, "status", "count1", "--json", check=3).stdout)
    assert record["state"] == "saved"
    # and so to a user who is not root, who can neither read the state nor list its folder
    assert qi(root, "status", "count1", check=3, prefix=person).stdout == line
    assert status_rows(qi(root, "qemud", "status", prefix=person).stdout)["count1"][0] == "saved"
    for peek in (["cat", str(state)], ["ls", str(state.parent)]):
        tried = subprocess.run([*person, *peek], capture_output=True, text=True, timeout=30)
        assert tried.returncode != 0 and "Permission denied" in tried.stderr, (peek, tried)

    shutil.copy(console, sandbox / "before.serial")
    began = time.monotonic()
    qi(root, "qemud", "start", check=0)
    after = wait_counting(console, timeout=60)
    restoring = time.monotonic() - began
    after = wait_counting(console, past=max(counts(after)), timeout=30)  # and goes on counting

    # it ran on where it was: no boot, the count continues (one line may have been half written)
    assert "QI-BOOTED" not in after, after[:2000]
    last, first = max(counts(before)), min(counts(after))
    assert 1 <= first - last <= 2, (last, first)
    assert not state.exists() and not os.path.exists(f"{state}.meta")  # never restored twice
    assert qi(root, "status", "count1", check=0).stdout.startswith("count1: running")
    log = (root / "var/log/qemu-init/count1.log").read_text()
    assert "restored its saved state in" in log
    print(f"\nfresh boot {fresh_boot:.2f} s, save (qemud stop) {saving:.2f} s, "
          f"restore (qemud start until it counts) {restoring:.2f} s")
    assert saving + restoring < fresh_boot, (saving, restoring, fresh_boot)

    # by hand, `stop` shuts it down (whatever ONSHUTDOWN says) unless asked to --save
    qi(root, "stop", "count1", check=0)
    assert wait_for_line(console, "QI-POWEROFF", timeout=5)
    assert not state.exists()
    assert qi(root, "status", "count1", check=3).stdout.strip() == "count1: not running"


def test_changed_command_line_refuses_the_state_and_discard_boots_afresh(sandbox, subreaper, test_guest):
    root, vms = sandbox / "root", sandbox / "vms"
    console = counting_guest(root, vms, test_guest)
    qi(root, "start", "count1", check=0)
    wait_counting(console)
    out = qi(root, "stop", "count1", "--save", check=0)
    assert "saved its state" in out.stdout + out.stderr, out
    state = statefile(root)
    assert state.exists()

    rcfile = vms / "count1-qemud.rc"
    rcfile.write_text(rcfile.read_text().replace("RAM=256M", "RAM=320M"))
    refused = qi(root, "start", "count1", check=1)
    # one error line (beside the warning that, in this sandbox, it has no service to start by)
    lines = [line for line in refused.stderr.splitlines() if "is not installed" not in line]
    assert len(lines) == 1 and "another QEMU command line (RAM or devices changed since)" in lines[0], refused
    assert "--discard-state" in lines[0]
    assert state.exists() and os.path.exists(f"{state}.meta")  # kept
    assert qi(root, "status", "count1", check=3).stdout.startswith("count1: saved (")

    out = qi(root, "start", "count1", "--discard-state", check=0)
    assert "saved state discarded" in out.stdout, out
    assert not state.exists()
    text = wait_counting(console)
    assert "QI-BOOTED count1" in text and min(counts(text)) == 1  # a fresh boot
    qi(root, "stop", "count1", check=0)


def test_a_save_that_fails_falls_back_to_the_power_button(sandbox, subreaper, test_guest):
    root, vms = sandbox / "root", sandbox / "vms"
    console = counting_guest(root, vms, test_guest)
    qi(root, "start", "count1", check=0)
    wait_counting(console)
    # the state folder cannot be made: a file is where it would be
    folder = statefile(root).parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.write_text("in the way\n")
    out = qi(root, "qemud", "stop", check=0)
    said = out.stdout + out.stderr
    assert "could not save its state" in said and "shutting it down instead" in said, said
    assert wait_for_line(console, "QI-POWEROFF", timeout=5)
    log = (root / "var/log/qemu-init/count1.log").read_text()
    assert "could not save its state" in log and "powered down" in log, log
    assert "QUIT" not in log  # the clean shutdown, not a forced one
    assert qi(root, "status", "count1", check=3).stdout.strip() == "count1: not running"


def test_a_state_that_does_not_load_is_kept_and_said_so(sandbox, subreaper):
    root, vms = sandbox / "root", sandbox / "vms"
    host_conf(root, "MINSTOPDELAY=3\n")
    write_guest(vms, "bios1", rc="RAM=64M\n")  # no kernel: it sits in its BIOS
    register(root, vms)
    qi(root, "start", "bios1", check=0)
    qi(root, "stop", "bios1", "--save", check=0)
    state = statefile(root, "bios1")
    data = state.read_bytes()
    state.write_bytes(data[:len(data) // 2])  # cut short: QEMU cannot load it
    refused = qi(root, "start", "bios1", check=1)
    assert "could not restore the saved state" in refused.stderr and "is kept" in refused.stderr, refused.stderr
    assert state.exists() and qi(root, "status", "bios1", check=3).stdout.startswith("bios1: saved (")
    qi(root, "start", "bios1", "--discard-state", check=0)
    assert not state.exists()
    qi(root, "stop", "bios1", "--force", check=0)


def test_a_guest_paused_when_saved_is_restored_paused(sandbox, subreaper):
    root, vms = sandbox / "root", sandbox / "vms"
    host_conf(root, "MINSTOPDELAY=3\n")
    write_guest(vms, "bios1", rc="RAM=64M\n")  # no kernel: it sits in its BIOS
    register(root, vms)
    qi(root, "start", "bios1", check=0)
    qi(root, "pause", "bios1", check=0)
    out = qi(root, "stop", "bios1", "--save", check=0)
    assert "saved its state" in out.stdout + out.stderr, out
    qi(root, "start", "bios1", check=0)
    assert not statefile(root, "bios1").exists()
    assert qi(root, "status", "bios1", check=0).stdout.startswith("bios1: paused"), "restored as it was"
    log = (root / "var/log/qemu-init/bios1.log").read_text()
    assert "and left it paused, as it was when saved" in log, log
    qi(root, "resume", "bios1", check=0)
    assert qi(root, "status", "bios1", check=0).stdout.startswith("bios1: running")
    qi(root, "stop", "bios1", "--force", check=0)
