"""Save at a whole host shutdown, restore at its next boot (ONSHUTDOWN=save, issue 16), under a
real PID 1: sysvinit and systemd (as in test_boot.py: a cached Debian root booted with
``systemd-nspawn -b``, the project's own Debian package installed).

Two boots per init system. The first sets up (register, install, enable the host service, as a
user does) and starts the counting guest save1 (``qi.count``: QI-COUNT 1, 2, … every 0.2 s)
through its service; the host shuts down: save1 is saved, not shut down. At the second boot the
host service restores it: it counts on from where it was, without booting.
"""

from __future__ import annotations

import re
import shutil
import stat
import time
from pathlib import Path
from typing import Dict

import pytest

from guestkit import TestGuest, short_tempdir
from guestkit.boot import Machine
from guestkit.qemuinit import write_guest
from test_boot import ENABLE, GUEST_DIR, POWEROFF, SERIAL, VMS, boot_finished, running, serial, wait_until
from test_boot import pytestmark  # noqa: F401  (root, QEMU, nspawn: the same needs)

# OpenRC passes too (its script's stop, start and restart run under the real openrc-run in
# test_openrc.py); left out here to spare CI two more boots.
INITS = ("sysv", "systemd")
COUNT = re.compile(r"^QI-COUNT (\d+)$", re.M)
STATE = "var/lib/qemu-init/state/save1.state"


def counts(text: str):
    return [int(n) for n in COUNT.findall(text)]


@pytest.fixture(scope="module")
def workdir():
    path = short_tempdir("qi-bsave-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module", params=INITS)
def host(request, workdir, deb, test_guest) -> Dict:
    init = request.param
    folder = workdir / init
    folder.mkdir()
    binds = {str(deb.parent): "/mnt/qi-deb", str(test_guest.kernel.parent): GUEST_DIR}
    with Machine(init, folder, binds, name=f"qi-save-{init}") as machine:
        machine.prepare("dpkg", "-i", f"/mnt/qi-deb/{deb.name}")
        guest = TestGuest(kernel=Path(GUEST_DIR, "vmlinuz"), initrd=Path(GUEST_DIR, "initrd.img"))
        write_guest(machine.root / VMS.lstrip("/") / "save1", "save1", guest,
                    rc="RUNAS=qemud\nSTOPDELAY=60\nONSHUTDOWN=save\n", kernel_args="qi.count",
                    serial=Path(SERIAL, "save1.serial"))
        (machine.root / SERIAL.lstrip("/")).mkdir(parents=True)
        machine.prepare("chown", "qemud:qemud", SERIAL)

        machine.boot()
        wait_until("boot", lambda: boot_finished(machine), machine)
        machine.run("qemu-init", "register", f"{VMS}/save1")
        machine.run("qemu-init", "autostart", "on", "save1")
        machine.run("qemu-init", "install")
        machine.run(*ENABLE[init])
        began = time.monotonic()
        machine.run("qemu-init", "start", "save1")
        wait_until("save1 counting", lambda: counts(serial(machine, "save1")), machine)
        record: Dict = {"fresh_boot": time.monotonic() - began, "machine": machine}
        time.sleep(1)
        record["first_shutdown"] = machine.shutdown(POWEROFF[init])
        record["before"] = serial(machine, "save1")
        state = machine.root / STATE
        record["state_stat"] = state.stat() if state.exists() else None
        record["folder_stat"] = state.parent.stat() if state.parent.exists() else None
        record["log_after_save"] = (machine.root / "var/log/qemu-init/save1.log").read_text()

        machine.console.rename(machine.workdir / "console-first.log")
        began = machine_boot = time.monotonic()
        machine.boot()
        wait_until("save1 running again", lambda: running(machine, "save1"), machine)
        record["resumed_after"] = time.monotonic() - began
        wait_until("save1 counting on", lambda: counts(serial(machine, "save1")), machine, timeout=60)
        record["counting_after"] = time.monotonic() - machine_boot
        time.sleep(1)
        record["after"] = serial(machine, "save1")
        record["state_left"] = state.exists() or Path(f"{state}.meta").exists()
        record["status"] = machine.run("qemu-init", "status", "save1", check=None)
        record["log"] = (machine.root / "var/log/qemu-init/save1.log").read_text()
        record["second_shutdown"] = machine.shutdown(POWEROFF[init])
        record["saved_again"] = state.exists()
        yield record


def test_the_host_shutdown_saves_the_guest_root_only(host):
    assert "saved its state to" in host["log_after_save"], host["log_after_save"]
    assert "QI-POWEROFF" not in host["before"]  # not shut down
    st, folder = host["state_stat"], host["folder_stat"]
    assert st is not None and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert stat.S_IMODE(folder.st_mode) == 0o711 and folder.st_uid == 0  # looked up, never listed


def test_the_next_boot_restores_it_and_it_counts_on(host):
    after = host["after"]
    assert "QI-BOOTED" not in after, after[:2000]
    last, first = max(counts(host["before"])), min(counts(after))
    assert 1 <= first - last <= 2, (last, first)
    assert "restored its saved state in" in host["log"]
    assert not host["state_left"]  # never restored twice
    assert host["status"].returncode == 0 and host["status"].stdout.startswith("save1: running")
    print(f"\n{host['machine'].init}: fresh start until counting {host['fresh_boot']:.1f} s; host shutdown"
          f" with the save {host['first_shutdown']:.1f} s; boot until the guest runs again"
          f" {host['resumed_after']:.1f} s")


def test_the_next_shutdown_saves_it_again(host):
    assert host["saved_again"]
