"""The CLI's runtime commands as a user sees them (issue 14), with real QEMU guests: a guest whose
files went bad, stop progress in plain words, the monitor of a stopped guest, --json."""

import json
from pathlib import Path

import pytest
from guestkit import qemu_processes
from guestkit.qemuinit import qi, status_rows

pytestmark = pytest.mark.qemu
SMP_LOTS = "not a CPU count or topology: 'lots' (e.g. 2, or 4,sockets=1,cores=4,threads=1)"


def test_a_running_guest_whose_files_went_bad_is_still_seen_and_stopped(qiroot):
    rc = qiroot.guest("bad1")  # STOPDELAY=1: what its installed script says, and the stop uses
    qiroot.qi("install", "--init", "sysv")
    qiroot.qi("start", "bad1")
    pid = qiroot.pid("bad1")
    Path(rc).write_text(Path(rc).read_text() + "SMP=lots\n")  # broken while it runs
    line = len(Path(rc).read_text().splitlines())
    problem = f"{rc}:{line}: SMP: " + SMP_LOTS

    status = qi(qiroot.root, "status", "bad1", check=0)  # the truth about the process: it runs
    assert status.stdout.startswith(f"bad1: running (pid {pid}")
    assert status.stderr.splitlines() == [
        problem, "qemu-init: bad1: its files have errors; using its pid file and control socket"]
    as_json = json.loads(qi(qiroot.root, "status", "--json", "bad1", check=0).stdout)
    assert (as_json["state"], as_json["pid"], as_json["problem"]) == ("running", pid, problem)

    table = qi(qiroot.root, "qemud", "status", check=0).stdout  # not autostart: the service is "up"
    assert status_rows(table)["bad1"] == ("running", str(pid))
    assert "files have errors: qemu-init check" in table
    listing = qi(qiroot.root, "list", check=0).stdout.splitlines()
    assert listing[1].split()[:5] == ["1", "bad1", "no", "running", "(files", ] and "have errors)" in listing[1]

    stopped = qi(qiroot.root, "stop", "bad1", check=0)
    assert problem in stopped.stderr
    assert "bad1: pressing the power button, waiting up to 1 s for the guest to power off" in stopped.stdout + stopped.stderr  # through its script
    assert qemu_processes(qiroot.root) == []
    assert qi(qiroot.root, "status", "bad1", check=3).stdout == "bad1: not running\n"


def test_cli_stop_says_in_plain_words_that_it_forced_a_stubborn_guest_off(qiroot):
    from guestkit.qemuinit import STUBBORN
    qiroot.guest("stub1", rc=STUBBORN.format(name="stub1", extra="").replace("STOPDELAY=1", "STOPDELAY=6"))
    qiroot.qi("start", "stub1")
    assert qi(qiroot.root, "monitor", "stub1", "info", "status", check=0).stdout == "VM status: running\n"
    unknown = qi(qiroot.root, "monitor", "stub1", "frobnicate", check=1)  # HMP's "error" is text: caught
    assert (unknown.stdout, unknown.stderr) == ("", "qemu-init: stub1: unknown command: 'frobnicate'\n")
    stopped = qi(qiroot.root, "stop", "stub1", check=0)  # forced, and still a success (LSB)
    assert stopped.stdout == ""
    assert stopped.stderr.splitlines() == [
        "stub1: pressing the power button, waiting up to 6 s for the guest to power off",
        "stub1: waiting for the guest to power off, 1 s left",
        "stub1: forcing it off: still running after 6 s",
        "stub1: forced off after 6 s: did not react to the power button"]
    assert qemu_processes(qiroot.root) == []
    monitor = qi(qiroot.root, "monitor", "stub1", "info", "status", check=1)
    assert (monitor.stdout, monitor.stderr) == ("", "qemu-init: stub1: not running (no control socket)\n")
