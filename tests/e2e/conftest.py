"""Fixtures more than one end-to-end file needs (the shared ones are in tests/conftest.py)."""

import shutil
import time
from pathlib import Path

import pytest

from guestkit import short_tempdir
from guestkit.boot import build_package

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def deb(request) -> Path:
    """The project's Debian package, built once per test run (dpkg-buildpackage takes minutes on
    a busy machine): the boot tests of every init system and the save-at-shutdown boot tests all
    install this one. In a folder of its own, removed at the end of the run."""
    folder = short_tempdir("qi-deb-")
    try:
        began = time.monotonic()
        path = build_package(REPO, folder)
        plugins = request.config.pluginmanager
        reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():  # said on the terminal, not captured
                reporter.write_line(f"built {path.name} once for this run ({time.monotonic() - began:.0f} s)")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
