"""generate and install: where files land, their modes, and that a failed install breaks nothing."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

import inprocess

from qemu_init import install
from qemu_init.errors import ConfigError, RenderError
from qemu_init.inventory import Inventory
from qemu_init.paths import Layout, Paths

RC = "NAME={name}\nTGTARCH=qemu-system-x86_64\nKVM=no\nBRIDGE={bridge}\n{extra}"


def qi(root, *args):
    return inprocess.run(["--root", str(root), *args])  # qemu-init, in this process


@pytest.fixture
def inventory(tmp_path):
    vms = tmp_path / "vms"
    vms.mkdir()
    (vms / "db1-qemud.rc").write_text(RC.format(name="db1", bridge="br0", extra=""))
    (vms / "web1-qemud.rc").write_text(RC.format(name="web1", bridge="br1", extra="DEPENDS=db1\n"))
    root = tmp_path / "root"
    assert qi(root, "register", str(vms)).returncode == 0
    return Inventory(Paths.for_layout(Layout(), str(root)))


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_install_puts_each_file_where_its_init_system_looks(inventory):
    paths = inventory.paths
    written = install.install(inventory, "sysv")
    expected = {f"{paths.initdir}/{n}" for n in ("qemu-db1", "qemu-web1", "qemu-bridge-br0", "qemu-bridge-br1", "qemud")}
    assert set(written) == expected
    assert all(mode(p) == 0o755 for p in written)
    if os.geteuid() == 0:
        assert all(os.stat(p).st_uid == 0 and os.stat(p).st_gid == 0 for p in written)

    units = install.install(inventory, "systemd")
    assert {p for p in units if p.endswith(".service")} == {
        f"{paths.unitdir}/{n}.service" for n in ("qemu-db1", "qemu-web1", "qemu-bridge-br0", "qemu-bridge-br1", "qemud")}
    assert all(mode(p) == (0o644 if p.endswith(".service") else 0o755) for p in units)
    assert f"{paths.etcdir}/qemu-bridge-br0" in units  # the script the bridge unit runs

    rcd = install.install(inventory, "bsd")
    assert f"{paths.rcddir}/qemu_web1" in rcd and f"{paths.rcddir}/qemud" in rcd


def test_install_under_destdir(inventory, tmp_path):
    written = install.install(inventory, "openrc", str(tmp_path / "pkg"))
    assert written and all(p.startswith(str(tmp_path / "pkg") + inventory.paths.root + "/") for p in written)
    assert not os.path.exists(inventory.paths.initdir)


def test_an_interrupted_install_leaves_every_old_script_whole(inventory, monkeypatch):
    first = install.install(inventory, "sysv")
    before = {p: Path(p).read_text() for p in first}
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 1:  # install rewrites only the scripts that change: db1's
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    (Path(inventory.entries()[0].folder) / "db1-qemud.rc").write_text(
        RC.format(name="db1", bridge="br0", extra="DESC=changed\n"))
    with pytest.raises(OSError):
        install.install(Inventory(inventory.paths), "sysv")  # a new run reads the edited file
    assert calls and os.path.basename(calls[0]) == "qemu-db1", calls
    for path, text in before.items():  # each file is the old one or the new one, never a mix
        now = Path(path).read_text()
        assert now == text or ("changed" in now and now.startswith("#!/bin/sh\n")), path
    leftovers = [n for p in first for n in os.listdir(os.path.dirname(p)) if n.startswith(".")]
    assert [n for n in leftovers if n != ".registry.lock"] == []


def test_install_rewrites_only_the_scripts_that_change(inventory):
    # A configuration engine (contrib/ansible) runs install after each guest's change: the other
    # guests' scripts keep their inode and mtime.
    first = install.install(inventory, "sysv")
    stamps = {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in first}
    assert install.install(inventory, "sysv") == first
    assert {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in first} == stamps
    (Path(inventory.entries()[0].folder) / "db1-qemud.rc").write_text(
        RC.format(name="db1", bridge="br0", extra="DESC=changed\n"))
    install.install(Inventory(inventory.paths), "sysv")  # a new run reads the edited file
    rewritten = {p for p in first if (os.stat(p).st_ino, os.stat(p).st_mtime_ns) != stamps[p]}
    assert rewritten == {p for p in first if os.path.basename(p) == "qemu-db1"}, rewritten


def test_nothing_is_written_from_an_invalid_configuration(inventory):
    (Path(inventory.entries()[0].folder) / "db1-qemud.rc").write_text("NAME=db1\nRAM=lots\n")
    with pytest.raises(ConfigError) as error:
        install.install(inventory, "sysv")
    assert {p.key for p in error.value.problems} >= {"RAM", "TGTARCH"}
    assert not os.path.exists(inventory.paths.initdir)


def test_generate_all_needs_an_output_folder(inventory, tmp_path):
    with pytest.raises(RenderError):
        install.generate(inventory, "all")
    written = install.generate(inventory, "all", str(tmp_path / "out"), ["web1"])
    folders = {os.path.relpath(os.path.dirname(p), tmp_path / "out") for p in written}
    assert folders == {"sysv", "openrc", "bsd", "systemd"}
    # one guest asked for: its services and its bridge's, not the host service
    assert sorted(os.listdir(tmp_path / "out/sysv")) == ["qemu-bridge-br1", "qemu-web1"]


@pytest.mark.parametrize("marks, expected", [
    ({"/run/systemd/system"}, "systemd"),
    ({"/run/openrc/softlevel"}, "openrc"),
    (set(), "sysv"),
])
def test_detect_init(monkeypatch, marks, expected):
    monkeypatch.setattr(os.path, "isdir", lambda p: p in marks)
    monkeypatch.setattr(os.path, "exists", lambda p: p in marks)
    monkeypatch.setattr(sys, "platform", "linux")
    assert install.detect_init() == expected


def test_cli_generate_and_install(inventory, tmp_path):
    root = inventory.paths.root
    out = qi(root, "generate", "--init", "all", "--output", str(tmp_path / "out"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out/systemd/qemud.service").exists() and (tmp_path / "out/bsd/qemu_db1").exists()
    done = qi(root, "install", "--init", "openrc", "--destdir", str(tmp_path / "pkg"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pkg" / root.lstrip("/") / "etc/init.d/qemu-web1").exists()
    bad = qi(root, "generate", "--init", "upstart")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "unknown init system" in bad.stderr


def test_install_takes_back_the_scripts_of_guests_unregistered_since(tmp_path):
    """It keeps a record of what it wrote: the next install removes what it no longer writes,
    and only files that are still its own."""
    root, vms = tmp_path / "root", tmp_path / "vms"
    vms.mkdir()
    for name in ("a1", "b1", "c1"):
        (vms / f"{name}-qemud.rc").write_text(RC.format(name=name, bridge="none", extra=""))
    assert qi(root, "register", str(vms)).returncode == 0
    first = qi(root, "install", "--init", "sysv")
    assert first.returncode == 0, first.stderr
    initd = root / "etc/init.d"
    assert {p.name for p in initd.iterdir()} == {"qemu-a1", "qemu-b1", "qemu-c1", "qemud"}
    (initd / "qemu-c1").write_text("#!/bin/sh\n# the admin's own script now\n")
    for name in ("b1", "c1"):
        assert qi(root, "unregister", name).returncode == 0
    again = qi(root, "install", "--init", "sysv")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"removed {initd}/qemu-b1 (its guest is no longer registered)",
        f"installed {initd}/qemu-a1", f"installed {initd}/qemud"]
    assert {p.name for p in initd.iterdir()} == {"qemu-a1", "qemu-c1", "qemud"}  # c1's is the admin's
    record = (root / "var/lib/qemu-init/installed-sysv").read_text().splitlines()
    assert [l for l in record if l.startswith("/")] == [f"{initd}/qemu-a1", f"{initd}/qemud"]
    assert [json.loads(l[5:])[:2] for l in record if l.startswith("stop ")] == [["stop", "a1"]]


def test_install_warns_when_the_scripts_would_call_into_a_development_tree(tmp_path):
    root, vms = tmp_path / "root", tmp_path / "vms"
    vms.mkdir()
    (vms / "a1-qemud.rc").write_text(RC.format(name="a1", bridge="none", extra=""))
    assert qi(root, "register", str(vms)).returncode == 0
    proc = qi(root, "install", "--init", "sysv")
    tree = install.development_tree(install.sites.helper_command())
    repo = str(Path(__file__).resolve().parents[2])
    if tree is None:  # the tests run from an installed copy, not from the clone
        assert "development tree" not in proc.stderr
        return
    assert tree == repo
    assert proc.stderr.splitlines()[0].startswith(f"qemu-init: warning: the scripts will call ")
    assert f"in the development tree {repo}: they stop working when it moves" in proc.stderr
    assert install.development_tree(["/usr/sbin/qemu-init-helper"]) is None


def test_install_leaves_the_packages_host_service_alone(inventory, monkeypatch):
    """A package's conffile (layout record: packaged_service) is never rewritten, so upgrades
    never ask about it; everything else is installed as usual."""
    paths = inventory.paths
    packaged = Path(paths.initdir) / "qemud"
    packaged.parent.mkdir(parents=True)
    packaged.write_text("#!/bin/sh\n# the package's\n")
    monkeypatch.setattr(install, "read_layout", lambda: Layout(packaged_service="/etc/init.d/qemud"))
    written = install.install(inventory, "sysv")
    assert str(packaged) not in written and packaged.read_text() == "#!/bin/sh\n# the package's\n"
    assert str(Path(paths.initdir) / "qemu-db1") in written
    # systemd's unit lives elsewhere: install keeps it up to date (its timeouts follow the guests)
    assert str(Path(paths.unitdir) / "qemud.service") in install.install(inventory, "systemd")


def test_the_host_service_of_sysv_and_openrc_does_not_depend_on_the_guests(inventory, tmp_path):
    """What a package ships (rendered with no guests) stays right as guests come and go: the
    bridges order themselves before qemud, the guests' services bring their bridges along."""
    install.generate(inventory, "all", str(tmp_path / "with"))
    empty = Inventory(Paths.for_layout(Layout(), str(tmp_path / "empty")))
    install.generate(empty, "all", str(tmp_path / "without"))

    def body(path):  # without the banner, which names the files it was made from, and the root
        text = path.read_text().replace(str(tmp_path / "root"), "ROOT").replace(str(tmp_path / "empty"), "ROOT")
        return [line for line in text.splitlines() if not line.startswith("#") or "INIT INFO" in line
                or line.startswith("# Required")]
    for init in ("sysv", "openrc"):
        assert body(tmp_path / "with" / init / "qemud") == body(tmp_path / "without" / init / "qemud"), init
    assert "X-Start-Before:    qemud" in (tmp_path / "with/sysv/qemu-bridge-br0").read_text()
    assert "before qemud" in (tmp_path / "with/openrc/qemu-bridge-br0").read_text()
