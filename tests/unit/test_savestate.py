"""runtime/savestate.py on its own: the save's steps against a scripted QMP peer (the real QEMU
runs in tests/e2e/test_save_restore.py), the budget, the stop request, the refusal of a state that
belongs to another command line."""

import json
import os
import stat

import pytest

from qemu_init.errors import GuestError, QMPConnectError
from qemu_init.runtime import savestate
from qemu_init.runtime.control import GuestControl

ARGV = ("qemu-system-x86_64", "-name", "web1", "-m", "256M")


class FakeQMP:
    """A QEMU that answers the save's commands as ``script`` says; writes the state it is given."""

    greeting = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 22}}}}

    def __init__(self, status="running", migrate=("active", "completed"), ram=256 << 20, fail=None):
        self.status, self.migrate, self.ram, self.fail = status, list(migrate), ram, fail
        self.commands = []
        self.closed = False

    def execute(self, command, args=None, timeout=None, fds=()):
        self.commands.append(command)
        if command == self.fail:
            raise QMPConnectError("gone")
        if command == "query-status":
            return {"status": self.status}
        if command == "query-memory-size-summary":
            return {"base-memory": self.ram}
        if command == "getfd":
            assert args == {"fdname": savestate.FDNAME} and len(fds) == 1
            os.write(fds[0], b"QEVM" + b"\0" * 4096)  # what QEMU writes into it
            return {}
        if command == "query-migrate":
            state = self.migrate.pop(0) if len(self.migrate) > 1 else self.migrate[0]
            return {"status": state}
        return {}

    def close(self):
        self.closed = True


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += max(seconds, 0.05)


def control(tmp_path, **kw):
    return GuestControl(name="web1", statefile=str(tmp_path / "state" / "web1.state"), argv=ARGV,
                        qmp=str(tmp_path / "web1.qmp"), savetime=kw.pop("savetime", 10), **kw)


def run_save(gc, qmp, clock=None):
    clock = clock or Clock()
    said = []
    ok = savestate.save(gc, gc.argv, lambda: False, clock.sleep, lambda line, t: said.append(line), clock=clock,
                        connect=lambda: qmp)
    return ok, said


def test_budget_is_slack_plus_ram_over_speed():
    assert savestate.budget(2 << 30, 100 << 20) == 5 + 21
    assert savestate.budget(256 << 20, 100 << 20) == 5 + 3
    assert savestate.budget(0, 100 << 20) == 5


def test_a_save_writes_a_root_only_state_with_its_record(tmp_path):
    gc = control(tmp_path)
    qmp = FakeQMP()
    ok, said = run_save(gc, qmp)
    assert ok, said
    assert qmp.commands == ["query-status", "query-memory-size-summary", "stop", "migrate-set-parameters",
                            "getfd", "migrate", "query-migrate", "query-migrate", "quit"]
    state = tmp_path / "state" / "web1.state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600 and state.read_bytes().startswith(b"QEVM")
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o711  # no listing, nobody else writes
    record = json.loads((tmp_path / "state" / "web1.state.meta").read_text())
    assert record["argv"] == savestate.digest(ARGV) and record["qemu"] == "7.2.22" and record["bytes"] == 4100
    assert not (tmp_path / "state" / "web1.state.part").exists()
    assert said[-1].startswith(f"saved its state to {state} (0 MiB in ")
    assert savestate.pending(gc) == str(state)  # the same command line restores it


def test_a_save_over_its_budget_is_cancelled_and_the_guest_resumed(tmp_path):
    gc = control(tmp_path, savetime=2)
    qmp = FakeQMP(migrate=("active",))  # it never ends
    ok, said = run_save(gc, qmp)
    assert not ok
    assert said[-1] == "could not save its state: the save not done within 2 s; shutting it down instead"
    assert "migrate_cancel" in qmp.commands and qmp.commands[-1] == "cont" and "quit" not in qmp.commands
    assert os.listdir(tmp_path / "state") == []  # no state, no half-written one


def test_a_guest_paused_before_stays_paused_when_the_save_fails(tmp_path):
    qmp = FakeQMP(status="paused", migrate=("failed",))
    ok, said = run_save(control(tmp_path), qmp)
    assert not ok and "the save failed" in said[-1]
    assert "cont" not in qmp.commands


def test_no_room_for_the_ram_is_no_save_and_no_pause(tmp_path):
    qmp = FakeQMP(ram=1 << 60)
    ok, said = run_save(control(tmp_path), qmp)
    assert not ok and "less than the guest's RAM" in said[-1]
    assert "stop" not in qmp.commands


def test_a_state_folder_that_cannot_be_made_is_no_save(tmp_path):
    (tmp_path / "state").write_text("in the way")
    qmp = FakeQMP()
    ok, said = run_save(control(tmp_path), qmp)
    assert not ok and "could not save its state" in said[-1] and qmp.commands == []


def test_a_qemu_that_goes_away_midway_is_no_save(tmp_path):
    qmp = FakeQMP(fail="migrate")
    ok, said = run_save(control(tmp_path), qmp)
    assert not ok and qmp.commands[-1] == "cont"
    assert os.listdir(tmp_path / "state") == []


def test_the_stop_request_of_the_cli_is_used_once(tmp_path):
    statefile = str(tmp_path / "state" / "web1.state")
    assert savestate.stop_mode(statefile, "save") == "save"
    savestate.request(statefile, "shutdown")
    assert savestate.stop_mode(statefile, "save") == "shutdown"
    assert savestate.stop_mode(statefile, "save") == "save"  # used up
    savestate.request(statefile, "save")
    assert savestate.stop_mode(statefile, "shutdown") == "save"
    assert savestate.stop_mode("", "save") == "shutdown"  # nowhere to save to


def test_a_planted_request_link_is_not_followed(tmp_path):
    statefile = tmp_path / "state" / "web1.state"
    statefile.parent.mkdir()
    (tmp_path / "elsewhere").write_text("save\n")
    os.symlink(tmp_path / "elsewhere", f"{statefile}.onstop")
    assert savestate.stop_mode(str(statefile), "shutdown") == "shutdown"


def test_the_state_is_bound_to_the_command_line_qemu_runs(tmp_path):
    gc = control(tmp_path)
    clock = Clock()
    # a guest restored before runs with -incoming defer: the same command line as its script's
    assert savestate.save(gc._replace(argv=()), ARGV + savestate.INCOMING, lambda: False, clock.sleep,
                          lambda line, t: None, clock=clock, connect=FakeQMP)
    assert savestate.pending(gc) == gc.statefile
    said = []
    assert not savestate.save(gc, (), lambda: False, clock.sleep, lambda line, t: said.append(line), clock=clock,
                              connect=FakeQMP)
    assert said[-1] == "could not save its state: cannot tell the command line QEMU runs; shutting it down instead"


def test_a_state_of_another_command_line_is_refused_and_kept(tmp_path):
    gc = control(tmp_path)
    assert savestate.pending(gc) is None  # nothing saved: a fresh boot
    assert run_save(gc, FakeQMP())[0]
    changed = gc._replace(argv=ARGV[:-1] + ("320M",))
    with pytest.raises(GuestError, match=r"another QEMU command line \(RAM or devices changed since\); kept"):
        savestate.pending(changed)
    assert savestate.saved(gc.statefile)
    os.unlink(gc.statefile + savestate.META)
    with pytest.raises(GuestError, match="without a readable record"):
        savestate.pending(gc)
    assert savestate.discard(gc.statefile) and not savestate.saved(gc.statefile)


def test_the_state_folder_is_made_root_only(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    assert run_save(control(tmp_path), FakeQMP())[0]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o711
    linked = tmp_path / "other"
    os.symlink(tmp_path / "elsewhere", linked)  # a link where the folder would be: no save
    gc = control(tmp_path)._replace(statefile=str(linked / "web1.state"))
    qmp = FakeQMP()
    ok, said = run_save(gc, qmp)
    assert not ok and qmp.commands == []
