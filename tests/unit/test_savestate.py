"""runtime/savestate.py on its own: the save's steps against a scripted QMP peer (the real QEMU
runs in tests/e2e/test_save_restore.py), the budget, the stop request, the refusal of a state that
belongs to another command line."""

import json
import shutil
import os
import stat
import subprocess
import sys
import time

import pytest

import fakeqmp
from fakeqmp import sock_path  # noqa: F401  (a fixture)
from qemu_init.errors import GuestError, QMPConnectError
from guestkit import freebsd as fakes
from qemu_init.runtime import helperargs, onstop, proc, savestate
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
    ok = savestate.save(gc, savestate.digest(gc.argv), lambda: False, clock.sleep, lambda line, t: said.append(line), clock=clock,
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
    assert onstop.stop_mode(statefile, "save") == "save"
    onstop.request(statefile, "shutdown")
    assert onstop.stop_mode(statefile, "save") == "shutdown"
    assert onstop.stop_mode(statefile, "save") == "save"  # used up
    onstop.request(statefile, "save")
    assert onstop.stop_mode(statefile, "shutdown") == "save"
    assert onstop.stop_mode("", "save") == "shutdown"  # nowhere to save to


def test_a_planted_request_link_is_not_followed(tmp_path):
    statefile = tmp_path / "state" / "web1.state"
    statefile.parent.mkdir()
    (tmp_path / "elsewhere").write_text("save\n")
    os.symlink(tmp_path / "elsewhere", f"{statefile}.onstop")
    assert onstop.stop_mode(str(statefile), "shutdown") == "shutdown"


def test_the_state_is_bound_to_the_command_line_qemu_runs(tmp_path):
    gc = control(tmp_path)._replace(pidfile=str(tmp_path / "web1.pid"))
    clock = Clock()
    sleeper = subprocess.Popen(["qemu-system-x86_64", "-c", "import time; time.sleep(60)", "-name", "web1"],
                               executable=sys.executable)
    try:
        # started before starts recorded it: the command line the system tells (less -incoming)
        deadline = time.monotonic() + 30
        while (proc.cmdline(sleeper.pid) or [""])[0] != "qemu-system-x86_64":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        running = proc.cmdline(sleeper.pid)
        assert savestate.bound_to(gc, sleeper.pid) == savestate.digest(running)
        savestate.record_launch(gc._replace(argv=ARGV + savestate.INCOMING), sleeper.pid)  # a restore's
        assert savestate.bound_to(gc, sleeper.pid) == savestate.digest(ARGV)
        assert savestate.bound_to(gc, sleeper.pid + 1) != savestate.digest(ARGV)  # another QEMU's record
    finally:
        sleeper.kill()
        sleeper.wait()
    assert savestate.save(gc, savestate.bound_to(gc, sleeper.pid), lambda: False, clock.sleep,
                          lambda line, t: None, clock=clock, connect=FakeQMP)
    assert savestate.pending(gc) == gc.statefile
    said = []
    assert not savestate.save(gc, "", lambda: False, clock.sleep, lambda line, t: said.append(line), clock=clock,
                              connect=FakeQMP)
    assert said[-1] == "could not save its state: cannot tell the command line QEMU runs; shutting it down instead"


def test_on_freebsd_a_word_with_a_space_is_bound_as_launched(tmp_path, monkeypatch):
    """FreeBSD's ps joins argv with spaces: what the start recorded is what counts."""
    for key, value in fakes.env(tmp_path / "ifconfig").items():
        monkeypatch.setenv(key, value)
    argv = ("qemu-system-x86_64", "-c", "import time; time.sleep(60)", "-name", "web1",
            "-smbios", "type=1,manufacturer=Acme Widgets")
    gc = control(tmp_path)._replace(pidfile=str(tmp_path / "web1.pid"), argv=argv)
    sleeper = subprocess.Popen(list(argv), executable=sys.executable)
    try:
        deadline = time.monotonic() + 30
        while "-smbios" not in (proc.cmdline(sleeper.pid) or []):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert proc.cmdline(sleeper.pid)[-2:] == ["type=1,manufacturer=Acme", "Widgets"]  # as ps tells it
        savestate.record_launch(gc, sleeper.pid)
        assert stat.S_IMODE(os.stat(savestate.launch_record(gc.pidfile)).st_mode) == 0o600
        assert savestate.bound_to(gc, sleeper.pid) == savestate.digest(argv)
        # a guest started before starts recorded it: ps's words cannot be told apart, so no
        # save (it shuts down), rather than a state its next start would refuse
        os.unlink(savestate.launch_record(gc.pidfile))
        assert savestate.bound_to(gc, sleeper.pid) == ""
    finally:
        sleeper.kill()
        sleeper.wait()


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


def test_a_failure_after_the_rename_leaves_no_state_without_its_record(tmp_path, monkeypatch):
    """The state renamed into place, then the folder's sync fails: the guest is resumed, so the
    state must go too (with its record): never a state without .meta, nor a .meta alone."""
    real = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    gc = control(tmp_path)
    qmp = FakeQMP()
    ok, said = run_save(gc, qmp)
    assert not ok and "Input/output error" in said[-1], said
    assert qmp.commands[-1] == "cont" and "quit" not in qmp.commands
    assert os.listdir(tmp_path / "state") == []
    assert savestate.pending(gc) is None


@pytest.mark.parametrize("was", ["running", "paused"])
def test_a_restored_guest_is_as_it_was_when_saved(tmp_path, sock_path, was):
    """A guest paused when it was saved (`qemu-init pause`) is restored paused, not resumed."""
    gc = control(tmp_path)._replace(qmp=sock_path)
    assert run_save(gc, FakeQMP(status=was))[0]
    assert savestate.meta(gc.statefile)["was"] == was

    def handler(server, message):
        if message["execute"] == "query-migrate":
            return [fakeqmp.reply(message, {"status": "completed"})]
        return [fakeqmp.reply(message)]

    with fakeqmp.FakeQMP(sock_path, handler) as server:
        said = savestate.restore(gc, gc.statefile, 10)
    assert ("cont" in server.commands()) == (was == "running")
    assert said.startswith("restored its saved state in ")
    assert said.endswith("and resumed it" if was == "running" else "and left it paused, as it was when saved")
    assert not savestate.saved(gc.statefile)


def test_a_restore_may_take_what_the_launch_left_of_the_starts_budget(tmp_path, monkeypatch):
    """The launch's wait and RAM over SAVESPEED (the save's budget, `--savetime` on start too),
    as systemd's TimeoutStartSec allows them, bound the restore."""
    from qemu_init.runtime import control as ctl
    gc = control(tmp_path, savetime=8)._replace(pidfile=str(tmp_path / "web1.pid"), lock=str(tmp_path / "web1.lock"))
    assert run_save(gc, FakeQMP())[0]
    given = []
    monkeypatch.setattr(savestate, "restore", lambda gc, state, timeout: given.append(timeout) or "restored it")
    monkeypatch.setattr(ctl, "_launch", lambda gc, restore=None: restore() or 4242)
    assert ctl.start(gc) == 0
    assert len(given) == 1 and ctl.LAUNCH_TIMEOUT + 8 - 1 < given[0] <= ctl.LAUNCH_TIMEOUT + 8
    assert helperargs.parse(["start", "web1", "--pidfile", "p", "--qmp", "q", "--lock", "k", "--log", "l",
                             "--runas", "u", "--savetime", "8"])["savetime"] == 8


def test_systemd_allows_a_start_the_restore_of_its_ram(tmp_path):
    """TimeoutStartSec: the launch, the restore (RAM over SAVESPEED) and a margin."""
    from qemu_init import render, services
    from test_golden import GOLDEN, golden_site
    assert services.start_timeout(26) == services.start_timeout() + 26
    site = golden_site(GOLDEN / "full")
    for info in site.guests:
        assert info.guest.savetime > 0
        unit = next(f.text for f in render.guest_files(site, info, "systemd"))
        assert f"TimeoutStartSec={services.start_timeout(info.guest.savetime)}\n" in unit, info.guest.name
        start = unit[unit.index("ExecStart="):unit.index("ExecStop=")]
        assert f"--savetime {info.plan.savetime}" in start, start
    qemud = next(f.text for f in render.qemud_files(site, "systemd"))
    total = sum(i.guest.bootdelay + services.start_timeout(i.guest.savetime) for i in site.guests)
    assert f"TimeoutStartSec={total}\n" in qemud


# -- `qemu-init stop [--save]`: a request only where it differs from ONSHUTDOWN ---------------------

def _inventory(tmp_path, **onshutdown):
    from qemu_init.inventory import Inventory
    from qemu_init.paths import Layout, Paths
    inventory = Inventory(Paths.for_layout(Layout(), str(tmp_path / "root")))
    for name, mode in onshutdown.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{name}-qemud.rc").write_text(
            f"NAME={name}\nTGTARCH=qemu-system-x86_64\nBRIDGE=none\nONSHUTDOWN={mode}\n")
        inventory.registry.add(name, str(folder))
    return inventory


@pytest.mark.parametrize("onshutdown, save, asked", [
    ("save", False, "shutdown"), ("shutdown", True, "save"),  # what differs is asked of its stop
    ("shutdown", False, None), ("save", True, None),          # what its stop does anyway: no request
])
def test_stop_asks_its_service_only_what_differs_from_onshutdown(tmp_path, monkeypatch, onshutdown, save, asked):
    from qemu_init import guestcmds
    inventory = _inventory(tmp_path, web1=onshutdown)
    statefile = inventory.paths.statefile("web1")
    seen = []
    monkeypatch.setattr(guestcmds, "_stop_guest", lambda inv, gc, control, timeout, force: seen.append(
        onstop._request_text(statefile)))
    assert guestcmds.stop(inventory, "web1", save=save) == 0
    assert [text and text.partition("\n")[0] for text in seen] == [asked]
    assert not os.path.lexists(statefile + savestate.ONSTOP)  # withdrawn afterwards


def test_stop_asks_against_what_the_installed_script_does(tmp_path, monkeypatch):
    """ONSHUTDOWN changed since `install`: the service's stop does what its script says."""
    from qemu_init import guestcmds
    inventory = _inventory(tmp_path, web1="shutdown")
    monkeypatch.setattr(inventory, "recorded_stop", lambda name: {"onshutdown": "save"})
    seen = []
    monkeypatch.setattr(guestcmds, "_stop_guest", lambda inv, gc, control, timeout, force: seen.append(
        onstop.next_mode(gc.statefile, "save")))
    assert guestcmds.stop(inventory, "web1") == 0
    assert seen == ["shutdown"]


def test_stop_withdraws_only_its_own_request(tmp_path, monkeypatch):
    """The stop used ours up and another `qemu-init stop --save` wrote its own meanwhile: that
    one stays, for its stop."""
    from qemu_init import guestcmds
    inventory = _inventory(tmp_path, web1="save")
    statefile = inventory.paths.statefile("web1")
    others = []

    def stop_guest(inv, gc, control, timeout, force):
        assert onstop.stop_mode(statefile, "save") == "shutdown"  # its stop uses ours up
        others.append(onstop.request(statefile, "save"))  # another asker's

    monkeypatch.setattr(guestcmds, "_stop_guest", stop_guest)
    assert guestcmds.stop(inventory, "web1") == 0
    assert onstop._request_text(statefile) == others[0]
    assert onstop.next_mode(statefile, "shutdown") == "save"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_stop_by_a_user_says_what_any_stop_by_a_user_says():
    """No request to write for a user who cannot: the line of any start or stop by them."""
    import tempfile
    from pathlib import Path
    folder = Path(tempfile.mkdtemp(prefix="qi-save-user-", dir="/tmp"))
    try:
        os.chmod(folder, 0o755)  # the user reads the registry and the rc-files
        _stop_by_a_user(_inventory(folder, web1="save", web2="shutdown"))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _stop_by_a_user(inventory):
    said = {}
    for name in ("web1", "web2"):
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                               "qemu_init", "--root", inventory.paths.root, "stop", name],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        said[name] = done.stderr.replace(name, "NAME")
    assert "cannot ask its stop" not in said["web1"]
    assert said["web1"] == said["web2"], said
    assert not os.path.lexists(inventory.paths.statefile("web1") + savestate.ONSTOP)


def test_stop_save_force_is_refused_in_one_line(tmp_path, monkeypatch):
    """A forced stop saves nothing: --save --force would quietly do the opposite of --save."""
    from qemu_init import guestcmds
    from qemu_init.errors import QemuInitError
    inventory = _inventory(tmp_path, web1="shutdown")
    monkeypatch.setattr(guestcmds, "_stop_guest", lambda *a: pytest.fail("stopped"))
    with pytest.raises(QemuInitError, match="--save and --force do not go together"):
        guestcmds.stop(inventory, "web1", save=True, force=True)


def test_a_request_left_by_a_busy_lock_is_said_and_the_stops_outcome_stands(tmp_path, monkeypatch, capsys):
    """Withdrawing the request needs the guest's lock again: held too long by another start or
    stop, the request is left (said on stderr), and the stop's own outcome is what is raised."""
    from qemu_init import guestcmds
    from qemu_init.errors import GuestError
    from qemu_init.runtime import lock
    inventory = _inventory(tmp_path, web1="save")
    real, calls = lock.locked, []

    def locked(path, wait):
        calls.append(path)
        if len(calls) == 2:  # the withdrawal's
            raise GuestError("still locked by another start or stop")
        return real(path, wait)

    monkeypatch.setattr(lock, "locked", locked)

    def stop_guest(*args):
        raise GuestError("the stop's own trouble")

    monkeypatch.setattr(guestcmds, "_stop_guest", stop_guest)
    with pytest.raises(GuestError, match="the stop's own trouble"):
        guestcmds.stop(inventory, "web1")
    assert "is left for its next stop: still locked" in capsys.readouterr().err
