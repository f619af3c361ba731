"""Every generated script is POSIX sh that shellcheck, dash and busybox ash accept, and no value
in it ever runs as code.

The scripts linted are the golden files (all cases and init systems, the hostile one included)
and a set generated here with the real helper path and its `python -m` fallback.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import List

import pytest

from guestkit import QEMU, run

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
INITS = ("sysv", "openrc", "bsd", "systemd")
SHELLS = [["dash"], ["busybox", "ash"]]
CANARY = Path("/tmp/qi-canary")  # what the hostile case's values would create if they ran


def golden_scripts() -> List[Path]:
    return sorted(p for case in GOLDEN.iterdir() for init in INITS if (case / init).is_dir()
                  for p in (case / init).iterdir() if not p.name.endswith(".service"))


def lint(script: Path, hostile: bool = False) -> None:
    # In the hostile case, shellcheck's notes SC2016 ("$ does not expand in single quotes") and
    # SC1003 (a backslash before a single quote) fire on values that are single-quoted precisely
    # so that they do not expand. Every other case is held to shellcheck's full default.
    excluded = ["-e", "SC2016,SC1003"] if hostile else []
    result = run("shellcheck", "-s", "sh", "-f", "gcc", *excluded, str(script))
    assert result.returncode == 0, result.stdout
    for shell in SHELLS:
        if shutil.which(shell[0]):
            parsed = run(*shell, "-n", str(script))
            assert parsed.returncode == 0, (shell, parsed.stderr)


needs_shellcheck = pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck")


@needs_shellcheck
@pytest.mark.parametrize("script", golden_scripts(), ids=lambda p: str(p.relative_to(GOLDEN)))
def test_golden_script_is_clean_posix_sh(script):
    lint(script, hostile=script.parent.parent.name == "hostile")


@needs_shellcheck
@pytest.mark.parametrize("helper", ["console script", "python -m"])
def test_scripts_generated_here_are_clean_posix_sh(qiroot, helper):
    from qemu_init import install
    from qemu_init.inventory import Inventory
    from qemu_init.paths import host_paths

    for source in (GOLDEN / "full").glob("*-qemu*"):
        shutil.copy(source, qiroot.vms)
    qiroot.qi("register", qiroot.vms)
    command = None if helper == "console script" else (sys.executable, "-m", "qemu_init.runtime.helper")
    written = install.generate(Inventory(host_paths(qiroot.root)), "all", qiroot.path("out"), helper=command)
    scripts = [Path(p) for p in written if not p.endswith(".service")]
    assert len(scripts) > 15  # two guests and two bridges for three init systems, qemud, the units' scripts
    for script in scripts:
        lint(script)


@pytest.mark.qemu
@pytest.mark.skipif(shutil.which(QEMU) is None, reason="needs QEMU")
@pytest.mark.skipif(os.geteuid() != 0, reason="PRECMD runs only from a root-owned rc-file")
@pytest.mark.parametrize("shell", SHELLS, ids=" ".join)
def test_hostile_values_never_run(qiroot, shell):
    if not shutil.which(shell[0]):
        pytest.skip(f"{shell[0]} not installed")
    CANARY.unlink(missing_ok=True)
    for source in (GOLDEN / "hostile").glob("hostile1-*"):
        shutil.copy(source, qiroot.vms)
    qiroot.qi("register", qiroot.vms)
    qiroot.qi("install", "--init", "sysv")
    script = qiroot.path("etc/init.d/qemu-hostile1")

    def action(name: str):
        return run(*shell, script, name)

    assert action("status").returncode == 3
    started = action("start")
    # PRECMD ran, as the command it is: it printed its hostile words instead of running them
    assert "$(touch /tmp/qi-canary) `touch /tmp/qi-canary` it's; %n" in started.stdout, started.stdout
    # then QEMU refused the disk, whose name arrived byte for byte
    assert started.returncode == 1
    assert "/srv/vm/$(touch /tmp/qi-canary);`touch /tmp/qi-canary`'\"%h.img" in started.stderr, started.stderr
    for name in ("status", "stop", "restart", "try-restart", "force-reload", "stop"):
        action(name)
    assert run(*shell, qiroot.path("etc/init.d/qemud"), "status").returncode in (0, 3)
    assert not CANARY.exists()
