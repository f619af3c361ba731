"""Pure parts of the host service and its shutdown-budget arithmetic."""

import os
from types import SimpleNamespace

from qemu_init.checks import FORCED_STEPS, shutdown_time
from qemu_init.hostsvc import start_order


def guests(**depends):
    return {k: (None, SimpleNamespace(name=k, depends=tuple(v.split()))) for k, v in depends.items()}


def test_dependencies_start_first_even_if_listed_later():
    assert start_order(["a1", "b1", "c1"], guests(a1="", b1="c1", c1="")) == ["a1", "c1", "b1"]


def test_dependencies_outside_autostart_are_pulled_in_once():
    assert start_order(["web1", "web2"], guests(web1="db1", web2="db1 cache1", db1="", cache1="")) == [
        "db1", "web1", "cache1", "web2"]


def test_a_cycle_does_not_loop_forever():
    assert sorted(start_order(["a1"], guests(a1="b1", b1="a1"))) == ["a1", "b1"]


def test_unknown_names_are_kept_for_the_caller_to_report():
    assert start_order(["ghost1"], {}) == ["ghost1"]


def test_shutdown_time_parallel_and_bounded():
    step = FORCED_STEPS
    assert shutdown_time([40, 40, 40, 40], 0) == 40 + step
    assert shutdown_time([40, 40, 40, 40], 1) == 4 * (40 + step)
    assert shutdown_time([100, 10, 10, 10], 2) == 100 + step  # the short ones share the other slot


def _host_with(tmp_path, **depends):
    from qemu_init.inventory import Inventory
    from qemu_init.paths import Layout, Paths
    inventory = Inventory(Paths.for_layout(Layout(), str(tmp_path / "root")))
    for name, deps in depends.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{name}-qemud.rc").write_text(
            f"NAME={name}\nTGTARCH=qemu-system-x86_64\nBRIDGE=none\nDEPENDS={deps}\nSTOPDELAY=3\n")
        inventory.registry.add(name, str(folder))  # no check: a cycle made by editing files later
        pidfile = inventory.paths.pidfile(name)  # qemud stop looks only at guests with one
        os.makedirs(os.path.dirname(pidfile), exist_ok=True)
        with open(pidfile, "w") as handle:
            handle.write("1\n")
    return inventory


def test_stop_of_a_dependency_cycle_stops_them_all_instead_of_hanging(tmp_path, monkeypatch):
    from qemu_init import hostsvc
    from qemu_init.runtime import control, proc
    inventory = _host_with(tmp_path, a1="b1", b1="a1", c1="")
    stopped = []
    monkeypatch.setattr(proc, "probe", lambda pidfile, name, users: (proc.GUEST, 1))
    monkeypatch.setattr(control, "stop", lambda gc, **kw: stopped.append(gc.name))
    lines = []
    assert hostsvc.stop(inventory, say=lines.append) == 0
    assert sorted(stopped) == ["a1", "b1", "c1"]
    assert "dependency cycle among a1 b1: stopping them together" in lines


def test_one_guest_raising_anything_does_not_keep_the_others_running(tmp_path, monkeypatch):
    from qemu_init import hostsvc
    from qemu_init.runtime import control, proc
    inventory = _host_with(tmp_path, a1="", b1="a1")
    stopped = []

    def stop(gc, **kw):
        if gc.name == "b1":
            raise PermissionError(13, "Permission denied")
        stopped.append(gc.name)

    monkeypatch.setattr(proc, "probe", lambda pidfile, name, users: (proc.GUEST, 1))
    monkeypatch.setattr(control, "stop", stop)
    lines = []
    assert hostsvc.stop(inventory, say=lines.append) == 1
    assert stopped == ["a1"] and lines[-1] == "could not stop: b1"


def _stopping(name, depends=(), stopdelay=40, onshutdown="shutdown", savetime=0):
    return SimpleNamespace(name=name, depends=depends, stopdelay=stopdelay, onshutdown=onshutdown, savetime=savetime)


def test_shutdown_estimate_counts_depends_chains():
    from qemu_init.checks import shutdown_estimate
    web = _stopping("web1", ("db1",), 120)
    db = _stopping("db1", (), 40)
    # Together they would take 120 s + steps, but db1 waits for web1 to be down first.
    assert shutdown_estimate([web, db], 0) == 120 + FORCED_STEPS + 40 + FORCED_STEPS
    assert shutdown_estimate([web, db], 1) == 120 + FORCED_STEPS + 40 + FORCED_STEPS
    cyc = [_stopping("a1", ("b1",), 5), _stopping("b1", ("a1",), 5)]
    assert shutdown_estimate(cyc, 0) == 2 * (5 + FORCED_STEPS)


def test_stop_presses_every_button_before_any_wait(tmp_path, monkeypatch):
    """qemud stop (issue 15): every ready guest's power button first, then the stop machines
    that wait; a guest with running dependents is pressed only once they are gone."""
    from qemu_init import hostsvc
    from qemu_init.runtime import button, control, proc
    inventory = _host_with(tmp_path, a1="", b1="", c1="", d1="", db1="", web1="db1")
    events = []
    monkeypatch.setattr(proc, "probe", lambda pidfile, name, users: (proc.GUEST, 1))
    monkeypatch.setattr(button, "press", lambda gc, timeout: events.append(("press", gc.name)) or True)

    def stop(gc, pressed=False, **kw):
        events.append(("wait", gc.name, pressed))

    monkeypatch.setattr(control, "stop", stop)
    assert hostsvc.stop(inventory, say=lambda line: None) == 0
    first_wait = next(i for i, e in enumerate(events) if e[0] == "wait")
    assert sorted(e[1] for e in events[:first_wait]) == ["a1", "b1", "c1", "d1", "web1"]  # all pressed first
    assert all(e[0] == "press" for e in events[:first_wait])
    assert all(e[2] for e in events if e[0] == "wait")  # no stop presses a second time at once
    assert events.index(("press", "db1")) > events.index(("wait", "web1", True))  # dependents first


def test_a_guest_that_missed_qemuds_press_is_pressed_by_its_stop(tmp_path, monkeypatch):
    from qemu_init import hostsvc
    from qemu_init.runtime import button, control, proc
    inventory = _host_with(tmp_path, a1="")
    calls = []
    monkeypatch.setattr(proc, "probe", lambda pidfile, name, users: (proc.GUEST, 1))
    monkeypatch.setattr(button, "press", lambda gc, timeout: False)  # its control socket did not answer
    monkeypatch.setattr(control, "stop", lambda gc, pressed=False, **kw: calls.append(pressed))
    assert hostsvc.stop(inventory, say=lambda line: None) == 0
    assert calls == [False]


def test_stop_reads_only_the_guests_with_a_pid_file(tmp_path, monkeypatch):
    from qemu_init import hostsvc
    from qemu_init.runtime import button, control, proc
    inventory = _host_with(tmp_path, a1="", b1="")
    os.unlink(inventory.paths.pidfile("b1"))
    (tmp_path / "b1" / "b1-qemud.rc").write_text("RAM=lots\n")  # never read: it cannot be running
    monkeypatch.setattr(proc, "probe", lambda pidfile, name, users: (proc.GUEST, 1))
    monkeypatch.setattr(button, "press", lambda gc, timeout: True)
    stopped = []
    monkeypatch.setattr(control, "stop", lambda gc, **kw: stopped.append(gc.name))
    loaded = []
    real = inventory.load_entry
    monkeypatch.setattr(inventory, "load_entry", lambda entry: loaded.append(entry.name) or real(entry))
    assert hostsvc.stop(inventory, say=lambda line: None) == 0
    assert stopped == ["a1"] and loaded == ["a1"]


def test_shutdown_estimate_counts_the_time_to_save_a_state():
    """ONSHUTDOWN=save: the save may take its budget and fail at its end, then STOPDELAY."""
    from qemu_init.checks import shutdown_estimate
    saving = _stopping("web1", (), 40, "save", 26)
    assert shutdown_estimate([saving], 0) == 26 + 40 + FORCED_STEPS
    # the budget only counts for a guest that saves at shutdown
    assert shutdown_estimate([_stopping("db1", (), 40, "shutdown", 26)], 0) == 40 + FORCED_STEPS


def test_a_guest_whose_stop_will_save_is_not_pressed(tmp_path, monkeypatch):
    """ONSHUTDOWN=save, or a pending `qemu-init stop --save`: its stop saves it (a press would
    power it off, or be saved in its state); a pending plain `stop` of a saving guest: pressed."""
    from qemu_init import hostsvc, owner
    from qemu_init.runtime import button, control, onstop, proc
    inventory = _host_with(tmp_path, plain1="", save1="", asked1="", back1="")
    for name, mode in (("save1", "save"), ("back1", "save")):
        rc = tmp_path / name / f"{name}-qemud.rc"
        rc.write_text(rc.read_text() + f"ONSHUTDOWN={mode}\n")
    onstop.request(inventory.paths.statefile("asked1"), "save")      # `qemu-init stop --save asked1`
    onstop.request(inventory.paths.statefile("back1"), "shutdown")   # `qemu-init stop back1`
    pressed = []
    monkeypatch.setattr(owner, "detect_init", lambda: "sysv")
    monkeypatch.setattr(proc, "probe", lambda pidfile, name, users: (proc.GUEST, 1))
    monkeypatch.setattr(button, "press", lambda gc, timeout: pressed.append(gc.name) or True)
    monkeypatch.setattr(control, "stop", lambda gc, **kw: None)
    assert hostsvc.stop(inventory, say=lambda line: None) == 0
    assert sorted(pressed) == ["back1", "plain1"]
    assert onstop.next_mode(inventory.paths.statefile("asked1"), "shutdown") == "save"  # left for its stop
