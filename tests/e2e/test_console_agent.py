"""The serial console and the guest agent (issue 16) with real guests: Debian's real qemu-ga inside
the test guest's initramfs stops it, an absent or hung agent falls back to the power button within
about a second, and `qemu-init console` under tmux shows the guest, types into it and detaches."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from guestkit import qemu_processes, wait_for_line
from guestkit.qemuinit import qi, write_guest

from qemu_init.runtime import console as guest_console

pytestmark = pytest.mark.qemu


def _log(root, name):
    return Path(root.root, "var/log/qemu-init", f"{name}.console.log")


def _boot(qiroot, test_guest, name, rc="", kernel_args=""):
    write_guest(Path(qiroot.vms), name, test_guest, rc=rc, kernel_args=kernel_args, console=True)
    qiroot.qi("register", qiroot.vms)
    qiroot.qi("start", name)
    wait_for_line(_log(qiroot, name), "QI-READY", timeout=180)


def _needs_qemu_ga(test_guest):
    if "-qganone-" in test_guest.kernel.parent.name:
        pytest.skip("the test guest has no qemu-ga (install qemu-guest-agent: .ci/install-deps)")


def test_a_guest_running_the_real_agent_stops_through_it(qiroot, test_guest):
    _needs_qemu_ga(test_guest)
    _boot(qiroot, test_guest, "ag1", rc="AGENT=yes\nSTOPDELAY=20\n", kernel_args="qi.agent=1")
    assert "QI-AGENT-UP 1" in wait_for_line(_log(qiroot, "ag1"), "QI-AGENT-")
    status = qi(qiroot.root, "status", "ag1", check=0).stdout
    assert status.startswith("ag1: running") and "agent answers" in status
    sockets = Path(qiroot.root, "run/qemu-init")
    for sock in ("ag1.qga", "ag1.console"):
        mode = (sockets / sock).stat()
        assert (mode.st_uid, oct(mode.st_mode & 0o777)) == (0, "0o600")

    began = time.monotonic()
    stopped = qi(qiroot.root, "stop", "ag1", check=0)
    took = time.monotonic() - began
    lines = stopped.stderr.splitlines()
    assert lines[0].startswith("ag1: asked the guest agent to shut down (the power button from 2.5 s on)")
    assert lines[-1].startswith("ag1: powered down after") and "(through its guest agent, 0 presses)" in lines[-1]
    console = _log(qiroot, "ag1").read_text(errors="replace")
    assert "QI-AGENT-SHUTDOWN -h -P +0 hypervisor initiated shutdown" in console
    assert "QI-POWEROFF" not in console  # the power button was never needed
    assert took < 5, took
    assert qemu_processes(qiroot.root) == []
    assert not (sockets / "ag1.qga").exists() and not (sockets / "ag1.console").exists()


@pytest.mark.parametrize("agent", ["", "qi.agent=stopped"], ids=["absent", "hung"])
def test_without_an_answering_agent_the_power_button_follows_within_a_second(qiroot, test_guest, agent):
    if agent:
        _needs_qemu_ga(test_guest)
    _boot(qiroot, test_guest, "na1", rc="AGENT=yes\nSTOPDELAY=20\n", kernel_args=agent)
    if agent:
        assert "QI-AGENT-UP stopped" in wait_for_line(_log(qiroot, "na1"), "QI-AGENT-")
    began = time.monotonic()
    status = qi(qiroot.root, "status", "na1", check=0).stdout
    assert "agent not answering" in status and time.monotonic() - began < 3
    stopped = qi(qiroot.root, "stop", "na1", check=0)
    lines = stopped.stderr.splitlines()
    assert lines[0].startswith("na1: the guest agent does not answer (") and lines[0].endswith(": the power button instead")
    # the second asking took is counted: the grace left says so (20 s, less at most 1.1 s)
    waited = float(lines[1].split("waiting up to ")[1].split(" s")[0])
    assert lines[1].startswith("na1: pressing the power button") and 18.9 <= waited <= 20, lines
    assert "QI-POWEROFF" in _log(qiroot, "na1").read_text(errors="replace")
    assert qemu_processes(qiroot.root) == []


@pytest.fixture
def tmux():
    """A tmux server of this test's own (-L), killed afterwards."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (.ci/install-deps)")
    name = f"qi-agentcon-{secrets.token_hex(4)}"

    def run(*args, check=True):
        return subprocess.run(["tmux", "-L", name, *args], capture_output=True, text=True, check=check)

    try:
        yield run
    finally:
        run("kill-server", check=False)


def _pane(tmux):
    return tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "s").stdout


def _wait_pane(tmux, text, timeout=60):
    deadline = time.monotonic() + timeout
    while text not in _pane(tmux):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} not on the pane:\n{_pane(tmux)}")
        time.sleep(0.2)


def test_console_under_tmux_shows_the_guest_takes_input_and_detaches(qiroot, test_guest, tmux, sandbox):
    _boot(qiroot, test_guest, "con1", kernel_args="qi.shell=1")
    out = Path(sandbox)
    command = " ".join([
        f"stty -g >{out}/before;",
        f"{sys.executable} -m qemu_init --root {qiroot.root} console con1;",
        f"echo $? >{out}/exit; stty -g >{out}/after; sleep 600"])
    tmux("new-session", "-d", "-s", "s", "-x", "160", "-y", "50", command)
    _wait_pane(tmux, "Connected to con1's console; escape character is ^]")
    tmux("send-keys", "-t", "s", "echo typed-$((6*7))", "Enter")
    _wait_pane(tmux, "typed-42")  # only the guest's shell makes 42 of what was typed

    # more than the cap, while attached: the log is QEMU's copy of it all
    tmux("send-keys", "-t", "s", "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 1300000; echo; echo done-$((1+1))", "Enter")
    _wait_pane(tmux, "done-2", timeout=240)
    tmux("send-keys", "-t", "s", "C-]")
    deadline = time.monotonic() + 20
    while not (out / "after").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (out / "exit").read_text() == "0\n"
    assert (out / "after").read_text() == (out / "before").read_text()  # the terminal as it was

    log = _log(qiroot, "con1")
    assert log.stat().st_size > guest_console.CAP  # nobody looked since: over the cap
    tail = qi(qiroot.root, "console", "con1", "--tail", "2", check=0).stdout
    assert "done-2" in tail
    assert log.stat().st_size <= guest_console.CAP  # the look kept the cap
    older = Path(str(log) + ".1").read_text(errors="replace")
    assert "typed-42" in older and "done-2" in older
    assert oct(log.stat().st_mode & 0o777) == "0o640" and log.stat().st_uid == 0

    qi(qiroot.root, "stop", "con1", check=0)
    assert qemu_processes(qiroot.root) == []
    gone = qi(qiroot.root, "console", "con1", check=1)
    assert gone.stderr == "qemu-init: con1: not running (no console socket)\n"
