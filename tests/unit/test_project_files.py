"""The project's own set-up files (issue 14): CI that waits for dpkg (the wheel: tests/e2e/test_wheel.py)."""

import re
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]


def test_install_deps_waits_for_the_dpkg_lock_on_every_apt_get():
    """Another apt-get holding the lock must not fail `make test` at once. (Holding the lock for
    real would need a package to install; this checks that every call asks apt to wait.)"""
    script = (REPO / ".ci/install-deps").read_text()
    calls = [l for l in script.splitlines() if re.match(r"\s*apt-get\b", l)]
    assert len(calls) == 2
    assert re.search(r'^wait_lock="-o DPkg::Lock::Timeout=\d+"$', script, re.M)
    assert all(call.split()[1] == "$wait_lock" for call in calls), calls


