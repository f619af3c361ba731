"""The project's own set-up files (issue 14): packaging without warnings, CI that waits for dpkg."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_install_deps_waits_for_the_dpkg_lock_on_every_apt_get():
    """Another apt-get holding the lock must not fail `make test` at once. (Holding the lock for
    real would need a package to install; this checks that every call asks apt to wait.)"""
    script = (REPO / ".ci/install-deps").read_text()
    calls = [l for l in script.splitlines() if re.match(r"\s*apt-get\b", l)]
    assert len(calls) == 2
    assert re.search(r'^wait_lock="-o DPkg::Lock::Timeout=\d+"$', script, re.M)
    assert all(call.split()[1] == "$wait_lock" for call in calls), calls


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
