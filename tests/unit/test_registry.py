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
    procs = [subprocess.Popen([sys.executable, "-m", "qemu_init", "--root", str(root), "register", str(tmp_path / n)],
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
