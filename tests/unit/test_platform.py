"""The runtime's platform layer (qemu_init/runtime/platform/): Linux's /proc, and FreeBSD's ps and
ifconfig, the latter driven on this Linux machine by stand-ins (tests/guestkit/freebsd), since
FreeBSD cannot run here. The stand-ins answer in FreeBSD's format from what really runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from guestkit import freebsd as fakes
from qemu_init.errors import GuestError
from qemu_init.runtime import launch, platform, proc
from qemu_init.runtime.platform import freebsd, linux

ME = (os.getuid(),)


@pytest.fixture
def on_freebsd(tmp_path, monkeypatch):
    """The FreeBSD module, with the stand-in ps and ifconfig first on PATH."""
    for key, value in fakes.env(tmp_path / "ifconfig").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(freebsd, "DEVDIR", str(tmp_path / "ifconfig" / "dev"))
    return tmp_path / "ifconfig"


@pytest.fixture
def qemu_named(tmp_path):
    """A process that looks like guest vm1's QEMU (argv[0] "qemu-system-x86_64", -name vm1)."""
    child = subprocess.Popen(["qemu-system-x86_64", "-c", "import time; time.sleep(60)", "-name", "vm1"],
                             executable=sys.executable)
    deadline = time.monotonic() + 30
    while (linux.process(child.pid) or ([], []))[0][:1] != ["qemu-system-x86_64"]:
        assert time.monotonic() < deadline  # Popen may return while the exec is under way
        time.sleep(0.01)
    yield child
    child.kill()
    child.wait()


def test_the_platform_is_this_system_unless_forced(monkeypatch):
    monkeypatch.delenv(platform.VARIABLE, raising=False)
    assert platform.name() == ("freebsd" if sys.platform.startswith("freebsd") else "linux")
    monkeypatch.setenv(platform.VARIABLE, "freebsd")
    assert platform.current() is freebsd
    monkeypatch.setenv(platform.VARIABLE, "hurd")
    with pytest.raises(GuestError, match="QEMU_INIT_PLATFORM='hurd': not one of linux, freebsd"):
        platform.name()


def test_both_modules_see_the_same_process(on_freebsd, qemu_named):
    argv, uids = freebsd.process(qemu_named.pid)
    assert argv == ["qemu-system-x86_64", "-c", "import", "time;", "time.sleep(60)", "-name", "vm1"]
    assert argv == " ".join(linux.process(qemu_named.pid)[0]).split()  # ps joins argv with spaces
    assert set(uids) == set(linux.process(qemu_named.pid)[1])


def test_freebsd_identity_through_ps(on_freebsd, qemu_named, tmp_path):
    path = str(tmp_path / "p")
    with open(path, "w") as f:
        f.write(f"{qemu_named.pid}\n")
    assert proc.probe(path, "vm1", ME) == (proc.GUEST, qemu_named.pid)
    assert proc.probe(path, "vm2", ME) == (proc.FOREIGN, qemu_named.pid)
    assert proc.probe(path, "vm1", (os.getuid() + 1,)) == (proc.FOREIGN, qemu_named.pid)
    qemu_named.kill()
    qemu_named.wait()
    assert proc.probe(path, "vm1", ME) == (proc.DEAD, qemu_named.pid)  # ps: no such pid, exit 1


def test_freebsd_zombie_is_gone(on_freebsd):
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while linux.process(child.pid) is not None:  # exited, not reaped yet: a zombie
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        assert subprocess.run(["ps", "-o", "state=", "-p", str(child.pid)], capture_output=True,
                              text=True, env=os.environ).stdout.strip() == "Z"
        assert freebsd.process(child.pid) is None
    finally:
        child.wait()


@pytest.mark.parametrize("broken", ["fail", "missing"])
def test_freebsd_without_a_working_ps_nothing_can_be_told(on_freebsd, qemu_named, tmp_path, monkeypatch, broken):
    """No ps, or one that fails: 'unknown' (OSError), never 'dead' (callers: LSB 4, touch nothing)."""
    if broken == "fail":
        monkeypatch.setenv("FAKE_PS", "fail")
        said = "ps: failed: ps: kvm_openfiles: /dev/mem: No such file or directory"
    else:
        monkeypatch.setattr(freebsd, "PS", str(tmp_path / "no-ps"))
        said = "No such file or directory"
    path = str(tmp_path / "p")
    with open(path, "w") as f:
        f.write(f"{qemu_named.pid}\n")
    with pytest.raises(OSError) as caught:
        proc.probe(path, "vm1", ME)
    assert said in f"{caught.value.filename}: {caught.value.strerror}"


def test_freebsd_guest_process_checks_identity_before_every_signal(on_freebsd, qemu_named, tmp_path,
                                                                  monkeypatch):
    log = tmp_path / "ps.log"
    monkeypatch.setenv("FAKE_PS_LOG", str(log))
    guest = proc.GuestProcess(qemu_named.pid, "vm1", ME)
    assert guest._fd is None  # no pidfds on FreeBSD
    assert guest.alive()
    before = len(log.read_text().splitlines())
    assert guest.signal(0)
    assert len(log.read_text().splitlines()) == before + 1  # asked ps again before signalling
    qemu_named.kill()
    qemu_named.wait()
    assert not guest.alive() and not guest.signal(15)


# -- taps on FreeBSD ----------------------------------------------------------------------------

def ifconfig(state, *args):
    return subprocess.run(["ifconfig", *args], capture_output=True, text=True, check=True).stdout


def interfaces(state):
    return json.loads((state / "interfaces.json").read_text())


def test_freebsd_taps_are_cloned_renamed_and_attached(on_freebsd):
    state = on_freebsd
    bridge = ifconfig(state, "bridge", "create").strip()
    ifconfig(state, bridge, "name", "br0")
    ifconfig(state, "br0", "mtu", "9000", "up")
    (state / "log").write_text("")
    fds = launch.open_taps([("qi3n0", "br0"), ("qi3n1", "br0")])
    try:
        assert sorted(fds) == [launch.TAP_FD, launch.TAP_FD + 1]
        assert (state / "log").read_text().splitlines() == [
            "ifconfig br0", "ifconfig qi3n0", "ifconfig tap create", "ifconfig tap0 name qi3n0",
            "ifconfig qi3n0 mtu 9000 up", "ifconfig br0 addm qi3n0",
            "ifconfig br0", "ifconfig qi3n1", "ifconfig tap create", "ifconfig tap1 name qi3n1",
            "ifconfig qi3n1 mtu 9000 up", "ifconfig br0 addm qi3n1"]
        assert interfaces(state)["br0"]["members"] == ["qi3n0", "qi3n1"]
        assert os.fstat(fds[launch.TAP_FD]).st_ino == os.stat(state / "dev" / "tap0").st_ino
    finally:
        for fd in fds.values():
            os.close(fd)
    # A FreeBSD tap outlives its QEMU: the stop deletes it.
    assert launch.tap_exists("qi3n0")
    assert list(launch.delete_taps(["qi3n0", "qi3n1", "qi3n2"])) == ["qi3n0", "qi3n1"]
    assert sorted(interfaces(state)) == ["br0"] and interfaces(state)["br0"]["members"] == []


def test_freebsd_tap_left_by_a_dead_guest_is_made_anew(on_freebsd):
    state = on_freebsd
    ifconfig(state, ifconfig(state, "bridge", "create").strip(), "name", "br0")
    ifconfig(state, ifconfig(state, "tap", "create").strip(), "name", "qi3n0")
    (state / "log").write_text("")
    fds = launch.open_taps([("qi3n0", "br0")])
    for fd in fds.values():
        os.close(fd)
    log = (state / "log").read_text().splitlines()
    assert log.index("ifconfig qi3n0 destroy") < log.index("ifconfig tap create")
    assert interfaces(state)["br0"]["members"] == ["qi3n0"]


def test_freebsd_taps_all_or_none(on_freebsd, monkeypatch):
    state = on_freebsd
    ifconfig(state, ifconfig(state, "bridge", "create").strip(), "name", "br0")
    with pytest.raises(GuestError, match="^bridge br-dmz does not exist; start the service qemu_bridge_br_dmz first$"):
        launch.open_taps([("qi3n0", "br0"), ("qi3n1", "br-dmz")])
    assert sorted(interfaces(state)) == ["br0"]  # the first tap made is gone again
    ifconfig(state, "tap", "create")  # an interface that is not a bridge
    with pytest.raises(GuestError, match="bridge tap0 does not exist"):
        launch.open_taps([("qi3n0", "tap0")])
    monkeypatch.setenv("FAKE_IFCONFIG_FAIL", "addm")
    with pytest.raises(GuestError, match="^cannot attach qi3n0 to bridge br0: ifconfig: br0 addm qi3n0: "
                                         "Operation not permitted$"):
        launch.open_taps([("qi3n0", "br0")])
    assert sorted(interfaces(state)) == ["br0", "tap0"]
    monkeypatch.setattr(freebsd, "IFCONFIG", "/nonexistent/ifconfig")
    with pytest.raises(GuestError, match="bridge br0 does not exist"):
        launch.open_taps([("qi3n0", "br0")])
