"""Hand-edited host files (ETCDIR/registered, autostart, next-number) through the real CLI: a file
that is not text, or a line that means nothing, is one ``file:line:`` error and a non-zero exit for
every command that reads it, never an internal error. And what `check` says of them."""

from __future__ import annotations

import pytest

from qemu_init.paths import Layout, Paths
from qemu_init.registry import Registry
from test_cli import guest, qi

GARBAGE = {  # name: (bytes appended to the file as a new line, the message for that line)
    "invalid-utf8": (b"2 db\xff\xfe1 /srv/db1\n", "not UTF-8 text"),
    "nul": (b"2 db1 /srv/db\x001\n", "a NUL byte: not a text file"),
    "binary": (bytes(range(256)) * 4, "a NUL byte: not a text file"),
}


@pytest.fixture
def host(tmp_path):
    """A root with web1 registered (number 1) and on autostart; (root, etcdir)."""
    root = tmp_path / "root"
    guest(tmp_path / "vms", "web1")
    guest(tmp_path / "vms", "db1")
    registry = Registry(Paths.for_layout(Layout(), str(root)))  # in-process: setup, not what is tested
    registry.add("web1", str(tmp_path / "vms"))
    registry.set_autostart("web1", True)
    return root, root / "etc/qemu-init"


def _commands(tmp_path):
    """Every command that reads the registry, as argument lists."""
    return [["list"], ["check"], ["status", "web1"], ["show", "web1"], ["register", str(tmp_path / "vms/db1-qemud.rc")],
            ["qemud", "status"], ["autostart", "on", "web1"], ["generate", "web1"]]


def _one_error(proc, line):
    """One error line (`check` says its results on stdout, other commands on stderr)."""
    errors = [l for l in (proc.stdout + proc.stderr).splitlines() if "error(s)" not in l]
    assert errors == [line], proc.stderr
    assert proc.returncode != 0 and "internal error" not in proc.stderr


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_registered_that_is_not_text(host, tmp_path, kind):
    root, etc = host
    data, message = GARBAGE[kind]
    (etc / "registered").write_bytes((etc / "registered").read_bytes() + data)
    # every command that reads the file once; the other kinds of damage take the same path
    for argv in _commands(tmp_path) if kind == "invalid-utf8" else (["check"], ["list"]):
        _one_error(qi(root, *argv), f"{etc}/registered:3: {message}")


@pytest.mark.parametrize("line, message", [
    ("garbage", "not NUMBER NAME FOLDER: 'garbage'"),
    ("x" * 500, "not NUMBER NAME FOLDER: '" + "x" * 60 + "…'"),
    ("2 db1", "not NUMBER NAME FOLDER: '2 db1'"),
    ("-2 db1 /srv/db1", "not NUMBER NAME FOLDER: '-2 db1 /srv/db1'"),
    ("0 db1 /srv/db1", "guest number '0': numbers run from 1 to 999999"),
    ("1000000 db1 /srv/db1", "guest number '1000000': numbers run from 1 to 999999"),
    ("9" * 5000 + " db1 /srv/db1", "guest number '" + "9" * 60 + "…': numbers run from 1 to 999999"),
    ("2 db-1 /srv/db1", "not a guest name: letters and digits only, '-' is not allowed in 'db-1'"),
    ("2 db1 srv/db1", "db1: the folder is not an absolute path: 'srv/db1'"),
    ("1 db1 /srv/db1", "db1: number 1 is also web1's (line 2)"),
    ("2 WEB1 /srv/web1", "WEB1: registered again (first on line 2; names are compared in lower case)"),
])
def test_registered_with_a_garbage_line(host, tmp_path, line, message):
    root, etc = host
    with open(etc / "registered", "a") as f:
        f.write(f"# a comment, then a blank line\n\n{line}\n")
    for argv in (["check"], ["list"]):  # every command reads it the same way (see the test above)
        _one_error(qi(root, *argv), f"{etc}/registered:5: {message}")


@pytest.mark.parametrize("data, message", [
    (b"db\xff1\n", "not UTF-8 text"),
    (b"db\x001\n", "a NUL byte: not a text file"),
    (b"web1 db1\n", "not a guest name: letters and digits only, ' ' is not allowed in 'web1 db1'"),
])
def test_autostart_with_a_garbage_line(host, tmp_path, data, message):
    root, etc = host
    (etc / "autostart").write_bytes((etc / "autostart").read_bytes() + data)
    every = (["list"], ["check"], ["qemud", "status"], ["qemud", "start"], ["autostart", "list"],
             ["autostart", "off", "web1"], ["unregister", "web1"])
    for argv in every if data.startswith(b"db\xff") else every[:2] + every[-1:]:
        _one_error(qi(root, *argv), f"{etc}/autostart:3: {message}")
    assert "web1" in (etc / "registered").read_text()  # nothing was half done


@pytest.mark.parametrize("data, line, message", [
    (b"\xff\n", 1, "not UTF-8 text"),
    (b"7\x00\n", 1, "a NUL byte: not a text file"),
    (b"seven\n", 1, "not the next guest number (1 to 1000000): 'seven'"),
    (b"0\n", 1, "not the next guest number (1 to 1000000): '0'"),
    (b"# next\n7\n8\n", 3, "one number only, the next guest's: '8'"),
])
def test_next_number_with_garbage(host, tmp_path, data, line, message):
    root, etc = host
    counter = Paths.for_layout(Layout(), str(root)).number_file
    with open(counter, "wb") as f:
        f.write(data)
    before = (etc / "registered").read_bytes()
    for argv in (["register", str(tmp_path / "vms/db1-qemud.rc")], ["check"]):
        _one_error(qi(root, *argv), f"{counter}:{line}: {message}")
    assert (etc / "registered").read_bytes() == before  # db1 was not registered
    assert qi(root, "list", check=0)  # the file is read by register alone


def test_a_hand_edited_registry_that_is_fine(host, tmp_path):
    root, etc = host
    folder = tmp_path / "vms"
    (etc / "registered").write_text(f"# mine\n\n  1\tweb1   {folder}  \n7 db1 {folder}\n")
    with open(Paths.for_layout(Layout(), str(root)).number_file, "w") as f:
        f.write("8\n")
    assert qi(root, "check", check=0).stdout.splitlines()[-1].startswith("0 error(s)")
    guest(tmp_path / "vms2", "app1")
    assert "registered app1 as number 8" in qi(root, "register", str(tmp_path / "vms2"), check=0).stdout


def test_autostart_naming_an_unknown_guest_or_one_twice(host):
    root, etc = host
    with open(etc / "autostart", "a") as f:
        f.write("nosuch1\nWEB1\nweb1\n")
    proc = qi(root, "check", check=1)
    assert [l for l in proc.stdout.splitlines() if "autostart" in l] == [
        f"{etc}/autostart:3: 'nosuch1' is not a registered guest",
        f"{etc}/autostart:4: 'WEB1' is listed again (first on line 2; names are compared in lower case)",
        f"{etc}/autostart:5: 'web1' is listed again (first on line 2; names are compared in lower case)",
    ]
    assert proc.stdout.splitlines()[-1].startswith("3 error(s)")
    assert qi(root, "check", "web1", check=0)  # a check of one guest is not about the host's files
