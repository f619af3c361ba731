"""One owner per guest: starting and stopping go through the guest's installed service."""

from __future__ import annotations

import os

import pytest

from qemu_init import owner
from qemu_init.errors import GuestError
from qemu_init.paths import Layout, Paths


@pytest.fixture
def paths(tmp_path):
    return Paths.for_layout(Layout(), str(tmp_path / "root"))


def script(paths, init, name, body="exit 0"):
    folder = paths.rcddir if init == "bsd" else paths.initdir
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w") as handle:
        handle.write(f"#!/bin/sh\necho \"$0 $*\" >>{folder}/calls\n{body}\n")
    os.chmod(path, 0o755)
    return path


def calls(paths, init="sysv"):
    path = os.path.join(paths.rcddir if init == "bsd" else paths.initdir, "calls")
    return open(path).read().splitlines() if os.path.exists(path) else []


@pytest.mark.parametrize("init, service, action", [("sysv", "qemu-web1", "start"), ("openrc", "qemu-web1", "start"),
                                                   ("bsd", "qemu_web1", "onestart")])
def test_the_installed_script_is_the_command(paths, init, service, action):
    assert owner.service_command(paths, init, "Web1", "start") is None  # not installed
    path = script(paths, init, service)
    assert owner.service_command(paths, init, "Web1", "start") == [path, action]


def test_systemd_units_are_not_started_from_a_sandbox_root(paths):
    os.makedirs(paths.unitdir)
    open(os.path.join(paths.unitdir, "qemu-web1.service"), "w").close()
    assert owner.service_command(paths, "systemd", "web1", "start") is None  # systemd does not read ROOT


def test_a_guest_without_service_is_started_directly_with_a_warning(paths):
    started, said = [], []
    owner.start_guest(paths, "web1", lambda: started.append(1), said.append, "sysv")
    assert started == [1] and "not installed" in said[0]


def test_sysv_starts_the_bridges_first_then_the_guest(paths):
    script(paths, "sysv", "qemu-bridge-br0")
    script(paths, "sysv", "qemu-web1")
    owner.start_guest(paths, "web1", lambda: pytest.fail("started directly"), lambda line: None, "sysv", ["br0"])
    assert [c.split("/")[-1] for c in calls(paths)] == ["qemu-bridge-br0 start", "qemu-web1 start"]


def test_openrc_forgets_a_stale_started_record_before_start(paths):
    script(paths, "openrc", "qemu-web1")
    owner.start_guest(paths, "web1", lambda: pytest.fail("started directly"), lambda line: None, "openrc", ["br0"])
    assert [c.split("/")[-1] for c in calls(paths)] == ["qemu-web1 zap", "qemu-web1 start"]


def test_a_failing_service_start_is_an_error_with_its_status(paths):
    script(paths, "sysv", "qemu-web1", "echo broken; exit 7")
    said = []
    with pytest.raises(GuestError) as error:
        owner.start_guest(paths, "web1", lambda: None, said.append, "sysv")
    assert error.value.exit_code == 7 and "broken" in said


def test_a_guest_its_service_left_running_is_stopped_directly(paths):
    script(paths, "sysv", "qemu-web1")  # says it stopped it, but the guest still runs
    stopped, said = [], []
    owner.stop_guest(paths, "web1", lambda: stopped.append(1), lambda: not stopped, said.append, "sysv")
    assert stopped == [1] and any("stopping it directly" in line for line in said)


def test_a_stop_through_the_service_is_enough_when_the_guest_is_gone(paths):
    script(paths, "sysv", "qemu-web1")
    owner.stop_guest(paths, "web1", lambda: pytest.fail("stopped directly"), lambda: False, lambda line: None, "sysv")
    assert [c.split("/")[-1] for c in calls(paths)] == ["qemu-web1 stop"]
