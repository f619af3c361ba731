"""What qemu-init prints for everyday commands (issue 14): every problem at once, on stdout;
what it changed said; the folder in use named; tables that fit; --json."""

from test_cli import guest, qi


def test_check_reports_every_phase_at_once_sorted_on_stdout(tmp_path):
    """A bad value, a DEPENDS on nobody and a missing disk: all three in one run, by file and line."""
    root, folder = tmp_path / "root", tmp_path / "vms"
    rc = guest(folder, "web1", "RAM=lots\nDEPENDS=nosuch\nSTOPDELAY=20\n", cfg="DSK1=/nonexistent/web1.qcow2\n")
    proc = qi(tmp_path, "check", str(folder), check=1)
    assert proc.stderr == ""
    lines = [l for l in proc.stdout.splitlines() if "RUNAS" not in l]  # the host's users vary
    assert lines == [
        f"{folder}/web1-qemu.cfg:1: DSK1: warning: /nonexistent/web1.qcow2 does not exist",
        f"{rc}:5: RAM: not a memory size: 'lots' (e.g. 512M, 2G)",
        f"{rc}:6: DEPENDS: 'nosuch' is not a registered guest",
        f"{rc}:7: STOPDELAY: warning: 20 s is below the host's MINSTOPDELAY: 40 s is used",
        lines[-1],
    ]
    assert lines[-1].startswith("2 error(s), ")


def test_check_clean_says_so_on_stdout(tmp_path):
    root, folder = tmp_path / "root", tmp_path / "vms"
    guest(folder, "db1", "RUNAS=root\n")
    qi(root, "register", str(folder), check=0)
    proc = qi(root, "check", "--init", "sysv", check=0)
    assert proc.stdout.splitlines()[-1] == "0 error(s), 1 warning(s)"  # RUNAS=root: a warning


def test_show_says_stopdelay_was_raised(tmp_path):
    root, folder = tmp_path / "root", tmp_path / "vms"
    rc = guest(folder, "web1", "STOPDELAY=20\n")
    qi(root, "register", str(folder), check=0)
    proc = qi(root, "show", "web1", check=0)
    assert "stop delay      40 s (raised to MINSTOPDELAY)" in proc.stdout.splitlines()
    assert proc.stderr.splitlines() == [
        f"{rc}:5: STOPDELAY: warning: 20 s is below the host's MINSTOPDELAY: 40 s is used"]
    proc = qi(root, "show", "--argv", "web1", check=0)
    assert proc.stdout.startswith("qemu-system-x86_64\n")


GUEST_KEYS = ["number", "name", "folder", "description", "autostart", "state", "pid", "vnc", "monitor", "problem"]


def test_json_of_list_status_qemud_status_show_check(tmp_path):
    import json
    root, folder = tmp_path / "root", tmp_path / "vms"
    guest(folder, "db1", 'DESC="Database"\n')
    guest(folder, "web1", "DEPENDS=db1\n", cfg="DSK1=/nonexistent/web1.qcow2\n")
    qi(root, "register", str(folder), check=0)
    qi(root, "autostart", "web1", "on", check=0)
    listed = json.loads(qi(root, "list", "--json", check=0).stdout)
    assert [list(g) for g in listed] == [GUEST_KEYS, GUEST_KEYS]
    assert listed[0] == {"number": 1, "name": "db1", "folder": str(folder), "description": "Database",
                         "autostart": False, "state": "stopped", "pid": None, "vnc": None, "monitor": None,
                         "problem": None}
    assert json.loads(qi(root, "qemud", "status", "--json", check=3).stdout) == listed  # one vocabulary
    assert json.loads(qi(root, "status", "--json", "web1", check=3).stdout) == listed[1]
    shown = json.loads(qi(root, "show", "--json", "web1", check=0).stdout)
    assert shown["depends"] == ["db1"] and shown["stopdelay"] == 40 and shown["kvm"] is False
    assert shown["drives"] == [{"kind": "disk", "index": 1, "file": "/nonexistent/web1.qcow2"}]
    assert shown["argv"] == qi(root, "show", "--argv", "web1", check=0).stdout.splitlines()
    assert set(shown) >= {"number", "name", "rcfile", "cfgfile", "emulator", "runas", "memory", "cpus", "monitor",
                          "vnc", "bootdelay", "pidfile", "qmp", "nics", "warnings"}
    checked = json.loads(qi(root, "check", "--json", check=0).stdout)
    disk = {"path": f"{folder}/web1-qemu.cfg", "line": 1, "key": "DSK1", "level": "warning",
            "message": "/nonexistent/web1.qcow2 does not exist"}
    assert checked["errors"] == 0 and disk in checked["problems"]
    assert checked["warnings"] == len(checked["problems"])
    guest(folder, "web1", "SMP=lots\n")
    checked = json.loads(qi(root, "check", "--json", check=1).stdout)  # exit codes as without --json
    assert checked["errors"] == 1
    broken = json.loads(qi(root, "list", "--json", check=0).stdout)[1]
    assert broken["state"] == "stopped" and broken["problem"].endswith("SMP: not a CPU count or topology: 'lots'"
                                                                        " (e.g. 2, or 4,sockets=1,cores=4,threads=1)")


def test_tables_fit_100_columns_and_say_the_same_states(tmp_path):
    root, folder = tmp_path / "root", tmp_path / "vms"
    guest(folder, "web1", 'DESC="' + "A web server with a description far too long for any table " * 2 + '"\n')
    qi(root, "register", str(folder), check=0)
    listing = qi(root, "list", check=0).stdout.splitlines()
    assert listing[0].split() == ["NR", "NAME", "AUTOSTART", "STATE", "FOLDER"]
    assert listing[1].split() == ["1", "web1", "no", "stopped", str(folder)]
    table = qi(root, "qemud", "status", check=0).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATE", "PID", "AUTOSTART", "DESCRIPTION"]
    assert table[1].split()[:4] == ["web1", "stopped", "-", "no"]
    assert max(len(l) for l in table) == 100 and table[1].endswith("…")


def test_the_configuration_folder_is_named_when_empty_and_a_missing_root_is_an_error(tmp_path):
    proc = qi(tmp_path, "list", check=0)
    assert proc.stdout == (f"no guests registered in {tmp_path}/etc/qemu-init (no such folder);"
                           " qemu-init new NAME, then qemu-init register PATH\n")
    (tmp_path / "etc/qemu-init").mkdir(parents=True)
    proc = qi(tmp_path, "check", check=0)
    assert proc.stdout.splitlines() == [
        f"no guests registered in {tmp_path}/etc/qemu-init; qemu-init new NAME, then qemu-init register PATH",
        "0 error(s), 0 warning(s)"]
    missing = tmp_path / "nonexistent"
    for command in (["list"], ["check"], ["qemud", "status"], ["status", "web1"]):
        proc = qi(missing, *command, check=2)
        assert proc.stderr.splitlines() == [f"qemu-init: invalid value for '--root': {missing}: no such folder",
                                            "Try 'qemu-init --help'."]
    qi(missing, "new", "web1", "--dir", str(tmp_path), check=0)  # making a host from nothing is fine


def test_monitor_of_a_stopped_guest_is_one_clear_line(tmp_path):
    guest(tmp_path / "vms", "web1")
    qi(tmp_path, "register", str(tmp_path / "vms"), check=0)
    proc = qi(tmp_path, "monitor", "web1", "info", "status", check=1)
    assert (proc.stdout, proc.stderr) == ("", "qemu-init: web1: not running (no control socket)\n")


def test_the_json_schemas_are_documented_in_the_man_page(tmp_path):
    import json
    import re
    from pathlib import Path
    page = (Path(__file__).resolve().parents[2] / "man/qemu-init.8").read_text()
    section = page.split(".Sh JSON OUTPUT", 1)[1].split("\n.Sh ", 1)[0]
    documented = set(re.findall(r"\b[a-z]+\b", section.replace("\\-", "-")))
    guest(tmp_path / "vms", "web1")
    qi(tmp_path, "register", str(tmp_path / "vms"), check=0)
    keys = set(json.loads(qi(tmp_path, "status", "--json", "web1").stdout))
    keys |= set(json.loads(qi(tmp_path, "show", "--json", "web1").stdout))
    checked = json.loads(qi(tmp_path, "check", "--json").stdout)
    keys |= set(checked) | {k for p in checked["problems"] for k in p}
    assert keys - documented == set()
