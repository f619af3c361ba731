"""Stand-ins for what only FreeBSD has, because FreeBSD cannot run here (standard library only).

- ``ps`` and ``ifconfig``: executables in this folder, answering in FreeBSD's format (see each);
- ``rc.subr``: a model of FreeBSD's rc.subr(8), see its header; ``real_rc_subr()`` finds a copy of
  FreeBSD's own where one was put for the tests (it is not part of the project).

``env(state)`` is the environment that makes the runtime helper act as on FreeBSD with them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional

HERE = Path(__file__).parent
MODEL_RC_SUBR = HERE / "rc.subr"
# Where a copy of FreeBSD's libexec/rc/rc.subr may be put for the tests (see real_rc_subr).
REAL_RC_SUBR_VARIABLE = "QI_TEST_FREEBSD_RC_SUBR"
REAL_RC_SUBR_CACHE = Path("/var/cache/qemu-init-tests/freebsd/rc.subr")


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
