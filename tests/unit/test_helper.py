"""The helper's command line: argument handling and the one-line error contract."""

from __future__ import annotations

import pytest

from qemu_init.errors import GuestError
from qemu_init.runtime import control, helper, monitor

from fakeqmp import FakeQMP, sock_path  # noqa: F401  (sock_path: fixture)


def test_status_prints_one_line_and_exits_with_the_lsb_code(tmp_path, capsys):
    assert helper.main(["status", "vm1", "--pidfile", str(tmp_path / "p"), "--qmp", str(tmp_path / "q"),
                        "--runas", "root"]) == 3
    assert capsys.readouterr().out == "vm1: not running\n"


def test_start_hands_everything_over(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(control, "start", lambda gc: seen.append(gc) or 0)
    rc = helper.main(["start", "vm1", "--pidfile", "P", "--qmp", "S", "--lock", "K", "--log", "L",
                      "--runas", "qemud", "--hmp", "M",
                      "--stopdelay", "45", "--rcfile", "F", "--source", f"/a=b/c.rc={'AB' * 32}",
                      "--precmd", "echo pre", "--postcmd", "echo post", "--tap", "qtap1=br0", "--tap", "qtap2=br1",
                      "--vnc", "127.0.0.1:5901", "--monitor", "tcp 127.0.0.1:30320",
                      "--", "qemu-system-x86_64", "-name", "vm1", "-m", "64", "--", "-x"])
    assert rc == 0
    gc = seen[0]
    assert (gc.name, gc.pidfile, gc.qmp, gc.lock, gc.log, gc.stopdelay) == ("vm1", "P", "S", "K", "L", 45.0)
    assert (gc.runas, gc.hmp) == ("qemud", "M")
    assert gc.sources == (("/a=b/c.rc", "ab" * 32),)
    assert gc.taps == (("qtap1", "br0"), ("qtap2", "br1"))
    assert gc.argv == ("qemu-system-x86_64", "-name", "vm1", "-m", "64", "--", "-x")
    assert (gc.precmd, gc.postcmd, gc.rcfile) == ("echo pre", "echo post", "F")


def test_monitor_command_words_may_follow_the_options(monkeypatch):
    seen = []
    monkeypatch.setattr(monitor, "monitor", lambda gc, command: seen.append((gc.qmp, command)) or 0)
    assert helper.main(["monitor", "vm1", "--qmp", "S", "info", "status"]) == 0
    assert helper.main(["monitor", "vm1", "info", "--qmp", "S", "block"]) == 0
    assert helper.main(["monitor", "vm1", "--qmp", "S"]) == 0
    assert seen == [("S", "info status"), ("S", "info block"), ("S", None)]


@pytest.mark.parametrize("argv", [
    ["stop", "vm1", "--pidfile", "P", "--qmp", "S", "--lock", "K", "--log", "L", "--runas", "root"],  # no --stopdelay
    ["status", "vm1", "--pidfile", "P", "--qmp", "S"],  # no --runas: identity needs the user
    ["stop", "vm1", "--pidfile", "P", "--qmp", "S", "--lock", "K", "--log", "L", "--stopdelay", "-1"],
    ["status", "vm1", "--pidfile", "P", "--qmp", "S", "extra"],
    ["start", "vm1", "--pidfile", "P", "--qmp", "S", "--lock", "K", "--log", "L", "--source", "nohash"],
    ["reboot", "vm1"],
])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        helper.main(argv)
    assert exc.value.code == 2


def test_guest_errors_are_one_line_with_their_code(monkeypatch, capsys):
    def fail(gc, **kwargs):
        raise GuestError("still running 3 s after SIGKILL", 4)

    monkeypatch.setattr(control, "stop", fail)
    rc = helper.main(["stop", "vm1", "--pidfile", "P", "--qmp", "S", "--lock", "K", "--log", "L", "--runas", "root",
                      "--stopdelay", "1"])
    assert rc == 4
    assert capsys.readouterr().err == "qemu-init: vm1: still running 3 s after SIGKILL\n"


def test_bugs_are_one_line_unless_debug(monkeypatch, capsys):
    def bug(gc):
        raise KeyError("oops")

    monkeypatch.setattr(control, "status", bug)
    args = ["status", "vm1", "--pidfile", "P", "--qmp", "S", "--runas", "root"]
    assert helper.main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: KeyError" in err and "--debug" in err
    assert helper.main(["--debug", *args]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("action, command, line", [("pause", "stop", "paused"), ("resume", "cont", "running"),
                                                   ("reset", "system_reset", "reset")])
def test_pause_resume_reset_send_their_qmp_command_and_log_it(sock_path, tmp_path, capsys, action, command, line):
    log = tmp_path / "vm1.log"
    with FakeQMP(sock_path) as server:
        assert helper.main([action, "vm1", "--qmp", sock_path, "--log", str(log)]) == 0
    assert server.commands() == ["qmp_capabilities", command]
    assert capsys.readouterr().out == f"vm1: {line}\n"
    assert log.read_text().endswith(f" vm1: {line}\n")


def test_pause_of_a_stopped_guest_or_a_refusal_is_one_line(sock_path, capsys):
    assert helper.main(["pause", "vm1", "--qmp", sock_path]) == 1
    assert capsys.readouterr().err == "qemu-init: vm1: not running (no control socket)\n"
    refuse = lambda server, m: [{"error": {"class": "GenericError", "desc": "no way"}, "id": m["id"]}]  # noqa: E731
    with FakeQMP(sock_path, refuse):
        assert helper.main(["reset", "vm1", "--qmp", sock_path]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qemu-init: vm1: reset failed: ") and "no way" in err and err.count("\n") == 1
