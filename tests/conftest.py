"""Fixtures shared by all tests. The machinery lives in tests/guestkit; keep this file small."""

import os
import shutil
import sys
from pathlib import Path

import pytest

# Make `import guestkit` work from every test, whether or not tests/ is a package.
sys.path.insert(0, str(Path(__file__).parent))

import guestkit  # noqa: E402
from guestkit.qemuinit import Root  # noqa: E402


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


@pytest.fixture(scope="session")
def subreaper():
    """From the first test that asks on, this process adopts the daemonized QEMUs and reaps them
    (guestkit.subreaper): this machine's PID 1 reaps lazily."""
    with guestkit.subreaper():
        yield


@pytest.fixture
def sandbox():
    """A short, empty directory (/tmp/qi-…); afterwards every process naming it (QEMUs, helpers,
    hooks) is killed, the QEMUs we adopted are reaped and it is removed, even when the test failed."""
    path = guestkit.short_tempdir()
    try:
        yield path
    finally:
        try:
            guestkit.kill_processes(str(path))
            guestkit.reap_qemu()
        finally:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def qiroot(sandbox, subreaper) -> Root:
    """A qemu-init root in the sandbox, with guests in ROOT/vms (guestkit.qemuinit.Root)."""
    return Root(sandbox)


@pytest.fixture
def netns():
    """A fresh network namespace (guestkit.Netns); its processes are killed and it is deleted
    afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    with guestkit.Netns() as ns:
        yield ns
