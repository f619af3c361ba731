"""A wheel builds without packaging warnings and ships every template (issue 14). Here, not among
the unit tests: pip builds the project from scratch (setuptools, a copy of the tree), some ten
seconds on a busy host."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_a_wheel_builds_without_packaging_warnings_and_ships_every_template(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), str(REPO)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "No matching distribution" in proc.stdout + proc.stderr:
        pytest.skip("no package index to fetch setuptools from")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert "Package would be ignored" not in out and "is absent from the `packages` configuration" not in out
    wheel, = tmp_path.glob("qemu_init-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("qemu_init/templates/")}
    templates = {"qemu_init/" + str(p.relative_to(REPO)) for p in (REPO / "templates").rglob("*.j2")}
    assert shipped == templates
