"""Stand-ins for what only FreeBSD has, because FreeBSD cannot run here (standard library only).

- ``ps`` and ``ifconfig``: executables in this folder, answering in FreeBSD's format (see each);
- ``rc.subr``: a model of FreeBSD's rc.subr(8), see its header; ``real_rc_subr()`` finds a copy of
  FreeBSD's own where one was put for the tests (it is not part of the project);
- ``rcorder()``: a model of rcorder(8); ``real_rcorder()`` finds a build of FreeBSD's own.

``env(state)`` is the environment that makes the runtime helper act as on FreeBSD with them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).parent
MODEL_RC_SUBR = HERE / "rc.subr"
# Where a copy of FreeBSD's libexec/rc/rc.subr may be put for the tests (see real_rc_subr).
REAL_RC_SUBR_VARIABLE = "QI_TEST_FREEBSD_RC_SUBR"
REAL_RC_SUBR_CACHE = Path("/var/cache/qemu-init-tests/freebsd/rc.subr")
# And of FreeBSD's rcorder(8), built for Linux (sbin/rcorder with a shim for libutil's fparseln).
REAL_RCORDER_VARIABLE = "QI_TEST_FREEBSD_RCORDER"
REAL_RCORDER_CACHE = Path("/var/cache/qemu-init-tests/freebsd/rcorder")


def env(state: Path, **extra: str) -> Dict[str, str]:
    """This process's environment with the FreeBSD platform forced and the stand-ins first on PATH;
    ``state`` holds the fake ifconfig's interfaces and log."""
    state.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "PATH": f"{HERE}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "QEMU_INIT_PLATFORM": "freebsd", "FAKE_IFCONFIG_STATE": str(state), **extra}


def real_rc_subr() -> Optional[Path]:
    """FreeBSD's own rc.subr, if a copy was put at $QI_TEST_FREEBSD_RC_SUBR or in the test cache
    (it cannot be fetched during a test run: no network); None otherwise."""
    for candidate in (os.environ.get(REAL_RC_SUBR_VARIABLE), REAL_RC_SUBR_CACHE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def real_rcorder() -> Optional[Path]:
    """FreeBSD's rcorder, if a build was put at $QI_TEST_FREEBSD_RCORDER or in the test cache;
    None otherwise."""
    for candidate in (os.environ.get(REAL_RCORDER_VARIABLE), REAL_RCORDER_CACHE):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def run_rcorder(program: Path, paths: Sequence[Path], keyword: Optional[str] = None) -> List[Path]:
    """What FreeBSD's rcorder ``program`` says of ``paths`` (``-k keyword``)."""
    import subprocess
    args = [str(program)] + (["-k", keyword] if keyword else []) + [str(p) for p in paths]
    done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=30)
    return [Path(line) for line in done.stdout.splitlines()]


def rc_header(path: Path) -> Dict[str, List[str]]:
    """An rc.d script's rcorder lines: PROVIDE, REQUIRE, BEFORE, KEYWORD -> their words."""
    found: Dict[str, List[str]] = {"PROVIDE": [], "REQUIRE": [], "BEFORE": [], "KEYWORD": []}
    for line in path.read_text().splitlines():
        for key in found:
            if line.startswith(f"# {key}:"):
                found[key] += line.split(":", 1)[1].split()
    return found


def rcorder(paths: Sequence[Path], keyword: Optional[str] = None) -> List[Path]:
    """The order rcorder(8) gives ``paths`` (a model: FreeBSD's rcorder cannot be built here):
    whatever a script REQUIREs comes before it, whatever it is BEFORE comes after it, names no
    file provides are ignored, ties keep the files' order; ``keyword`` keeps only the scripts
    that have it (``rcorder -k shutdown``, which rc.shutdown runs backwards). A cycle: ValueError."""
    headers = {p: rc_header(p) for p in paths}
    providers: Dict[str, List[Path]] = {}
    for p, h in headers.items():
        for name in h["PROVIDE"]:
            providers.setdefault(name, []).append(p)
    after: Dict[Path, List[Path]] = {p: [] for p in paths}  # p comes after each of these
    for p, h in headers.items():
        for name in h["REQUIRE"]:
            after[p] += providers.get(name, [])
        for name in h["BEFORE"]:
            for other in providers.get(name, []):
                after[other].append(p)
    order: List[Path] = []
    state: Dict[Path, int] = {}

    def visit(p: Path) -> None:
        if state.get(p) == 1:
            raise ValueError(f"circular dependency at {p.name}")
        if state.get(p) == 2:
            return
        state[p] = 1
        for q in after[p]:
            visit(q)
        state[p] = 2
        order.append(p)

    for p in paths:
        visit(p)
    return [p for p in order if keyword is None or keyword in headers[p]["KEYWORD"]]


def runnable(script: Path, rc_subr: Path, folder: Path) -> Path:
    """A copy of the generated rc.d ``script`` in ``folder`` that reads ``rc_subr`` instead of
    /etc/rc.subr (the only line changed)."""
    text = script.read_text()
    assert text.count("\n. /etc/rc.subr\n") == 1, script
    copy = folder / script.name
    copy.write_text(text.replace("\n. /etc/rc.subr\n", f"\n. {rc_subr}\n"))
    copy.chmod(0o755)
    return copy
