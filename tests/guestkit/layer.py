"""A boot test root with a few more Debian packages, cached beside it (standard library only).

``layered_root(init, packages)`` gives a copy of ``build_root(init)`` (build-root.sh) with
``packages`` installed, e.g. openssh-server for the Ansible test's SSH host. The base roots stay
as they are (their cache key, the hash of build-root.sh, does not change), and the boot tests
never see these packages: a layer is its own cached folder,
``<base root>+<hash of the base's name, the packages and LAYER_RECIPE>``, built once from the base
with apt (from the base's own apt sources, the mirror mmdebstrap used) and renamed into place when
complete. The layer's key changes with the base, the package list and the recipe.

Host keys and other per-machine secrets a package makes at install are removed: each test makes
its own (``ssh-keygen -A -f ROOT``).
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from . import cache_dir
from .boot import NSPAWN_SETUP, PATH, build_root

# What runs in the copy of the base; its text is part of the cache key. No daemon starts
# (policy-rc.d 101), nothing downloaded stays (the lists, the archives).
LAYER_RECIPE = r"""
set -eu
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
export DEBIAN_FRONTEND=noninteractive
apt-get -q update
apt-get -q -y install --no-install-recommends "$@"
apt-get clean
rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /etc/ssh/ssh_host_*
"""
DONE = ".qemu-init-layer-complete"


def layered_root(init: str, packages: Sequence[str]) -> Path:
    """The cached root ``build_root(init)`` plus ``packages``, built first if need be (a minute, once)."""
    base = build_root(init)
    key = hashlib.sha256("\n".join([base.name, *sorted(packages), LAYER_RECIPE]).encode()).hexdigest()[:12]
    final = cache_dir() / f"{base.name}+{key}"
    if (final / DONE).exists():
        return final
    with open(cache_dir() / ".lock-layer", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / DONE).exists():
            return final
        work = Path(tempfile.mkdtemp(prefix=".build-layer.", dir=cache_dir()))
        try:
            root = work / "root"
            subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True)
            # Not booted, and the host's network (not --private-network): apt reaches the mirror,
            # as mmdebstrap did for the base. Nothing is configured on the host.
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", NSPAWN_SETUP, "sh",
                    "--quiet", "--register=no", "--keep-unit", f"--directory={root}", "--machine=qi-layer",
                    "--pipe", f"--setenv=PATH={PATH}", "--", "sh", "-c", LAYER_RECIPE, "sh", *packages]
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                raise RuntimeError(f"installing {' '.join(packages)} into a copy of {base} failed "
                                   f"({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            (root / DONE).touch()
            shutil.rmtree(final, ignore_errors=True)  # a leftover without the mark
            root.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final
