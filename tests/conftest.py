"""Fixtures shared by all tests. The machinery lives in tests/guestkit; keep this file small."""

import os
import shutil
import sys
from pathlib import Path

import pytest

# Make `import guestkit` work from every test, whether or not tests/ is a package.
sys.path.insert(0, str(Path(__file__).parent))

import guestkit  # noqa: E402


def _require_root_and_qemu() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, taps, the guest cache in /var/cache)")
    if shutil.which(guestkit.QEMU) is None:
        pytest.skip(f"{guestkit.QEMU} is not installed (make deps installs it)")


@pytest.fixture(scope="session")
def test_guest() -> guestkit.TestGuest:
    """The test guest's kernel and initramfs, built once and cached (see guestkit)."""
    _require_root_and_qemu()
    return guestkit.build_test_guest()


@pytest.fixture
def sandbox():
    """A short, empty directory (/tmp/qi-…); afterwards every QEMU naming it is killed and it
    is removed, even when the test failed."""
    path = guestkit.short_tempdir()
    try:
        yield path
    finally:
        try:
            guestkit.kill_qemu(str(path))
        finally:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def netns():
    """A fresh network namespace (guestkit.Netns); its processes are killed and it is deleted
    afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    with guestkit.Netns() as ns:
        yield ns
