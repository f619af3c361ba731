"""Facts about this host that the command line and the host checks need.

Each probe is cheap or cached: the QEMU version is asked once per binary and kept in VARDIR,
keyed by the binary's path, size and modification time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Dict, Iterable, Optional, Tuple

from .cmdline import Facts
from .errors import QemuInitError
from .model import Guest
from .paths import Paths
from .trust import read_file

# Magic bytes at offset 0 of the image formats QEMU can probe safely.
_MAGIC = ((b"QFI\xfb", "qcow2"), (b"QED\x00", "qed"), (b"KDMV", "vmdk"), (b"vhdxfile", "vhdx"),
          (b"<<< Oracle VM VirtualBox Disk Image >>>", "vdi"))


def image_format(path: str) -> Optional[str]:
    """The image's format from its header; raw for anything else; None when unreadable."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError:
        return None
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), "raw")


def qemu_binary(tgtarch: str) -> Optional[str]:
    return tgtarch if os.path.isabs(tgtarch) and os.access(tgtarch, os.X_OK) else shutil.which(tgtarch)


def qemu_version(tgtarch: str, paths: Paths) -> Optional[Tuple[int, int]]:
    binary = qemu_binary(tgtarch)
    if binary is None:
        return None
    stat = os.stat(binary)
    key = f"{binary}:{stat.st_size}:{stat.st_mtime_ns}"
    cache_file = os.path.join(paths.vardir, "qemu-versions.json")
    try:  # only a cache root may trust (trust.py); any other is as good as none
        cache: Dict[str, list] = json.loads(read_file(cache_file))
    except (OSError, ValueError, QemuInitError):
        cache = {}
    if key in cache:
        return tuple(cache[key])  # type: ignore[return-value]
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"version (\d+)\.(\d+)", out)
    if not match:
        return None
    version = (int(match.group(1)), int(match.group(2)))
    cache[key] = list(version)
    try:
        from .files import write_atomic
        write_atomic(cache_file, json.dumps(cache, indent=1) + "\n")
    except OSError:
        pass  # a read-only VARDIR only costs a probe next time
    return version


def probe(guests: Iterable[Guest], paths: Paths) -> Dict[str, Facts]:
    """Facts for each guest, by name; each QEMU binary is asked for its version only once."""
    versions: Dict[str, Optional[Tuple[int, int]]] = {}
    result = {}
    for guest in guests:
        if guest.tgtarch not in versions:
            versions[guest.tgtarch] = qemu_version(guest.tgtarch, paths)
        result[guest.name] = Facts(versions[guest.tgtarch])
    return result
