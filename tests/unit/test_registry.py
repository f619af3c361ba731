"""The registry under concurrent use: nothing lost, no number handed out twice."""

import subprocess
import sys

from qemu_init.paths import Layout, Paths
from qemu_init.registry import Registry


def test_twenty_processes_register_at_once(tmp_path):
    root = tmp_path / "root"
    names = [f"vm{i}a" for i in range(20)]
    for name in names:
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{name}-qemud.rc").write_text(f"NAME={name}\nTGTARCH=qemu-system-x86_64\nBRIDGE=none\n")
    # each process adds one guest through the registry, as `register` does (without the command
    # line's own start-up, ten times the registry's: the race is in the registry's lock)
    add = ("import sys\nfrom qemu_init.paths import Layout, Paths\nfrom qemu_init.registry import Registry\n"
           "Registry(Paths.for_layout(Layout(), sys.argv[1])).add(sys.argv[2], sys.argv[3])\n")
    procs = [subprocess.Popen([sys.executable, "-c", add, str(root), n, str(tmp_path / n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in names]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert all(code == 0 for _, _, code in results), results
    entries = Registry(Paths.for_layout(Layout(), str(root))).entries()
    assert sorted(e.name for e in entries) == sorted(names)
    assert sorted(e.number for e in entries) == list(range(1, 21))


def test_same_name_in_two_cases_races_to_one_winner(tmp_path):
    registry = Registry(Paths.for_layout(Layout(), str(tmp_path)))
    registry.add("web1", "/srv/a")
    assert registry.add("web1", "/srv/a").number == 1  # idempotent
    try:
        registry.add("WEB1", "/srv/b")
    except Exception as exc:
        assert "already registered as web1 in /srv/a" in str(exc)
    else:
        raise AssertionError("a second WEB1 was registered")


def test_numbers_only_grow(tmp_path):
    registry = Registry(Paths.for_layout(Layout(), str(tmp_path)))
    for name in ("a1", "b1", "c1"):
        registry.add(name, f"/srv/{name}")
    registry.remove("c1")
    registry.remove("b1")
    assert registry.add("d1", "/srv/d1").number == 4


def test_registering_many_is_one_write_and_all_or_nothing(tmp_path):
    registry = Registry(Paths.for_layout(Layout(), str(tmp_path)))
    registry.add("a1", "/srv/a1")
    entries = registry.add_all([("b1", "/srv/b1"), ("a1", "/srv/a1"), ("c1", "/srv/c1")])
    assert [(e.name, e.number) for e in entries] == [("b1", 2), ("a1", 1), ("c1", 3)]
    before = (tmp_path / "etc/qemu-init/registered").read_text()
    try:
        registry.add_all([("d1", "/srv/d1"), ("B1", "/srv/other")])
    except Exception as exc:
        assert "B1: name already registered as b1 in /srv/b1" in str(exc)
    else:
        raise AssertionError("a clash in another case was registered")
    assert (tmp_path / "etc/qemu-init/registered").read_text() == before  # d1 neither
