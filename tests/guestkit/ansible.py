"""Ansible for the collection's tests (contrib/ansible): its own virtual environment, from PyPI.

Not the project's .venv: ansible-lint pulls in a Click the CLI's range excludes (setup.cfg pins
click<8.2), so Ansible gets a venv of its own, made once per pinned set of versions and cached
beside the boot tests' roots (``cache_dir()/ansible-<hash>``; needs PyPI the first time).
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from . import cache_dir

# ansible 12 bundles ansible-core 2.19 and community.docker (the nsenter connection) and ansible.posix.
REQUIREMENTS = ("ansible==12.3.0", "ansible-lint==26.10.1")


def ansible_venv() -> Path:
    """The cached venv's bin folder (ansible-playbook, ansible-lint), made first if need be."""
    key = hashlib.sha256("\n".join(REQUIREMENTS + (sys.version,)).encode()).hexdigest()[:12]
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / f"ansible-{key}"
    done = venv / ".qemu-init-venv-complete"
    if done.exists():
        return venv / "bin"
    with open(cache / ".lock-ansible", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(venv, ignore_errors=True)  # a leftover without the mark
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            proc = subprocess.run([str(venv / "bin/pip"), "install", "-q", *REQUIREMENTS],
                                  capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise RuntimeError(f"pip install {' '.join(REQUIREMENTS)} failed:\n{proc.stderr[-3000:]}")
            done.touch()
    return venv / "bin"
