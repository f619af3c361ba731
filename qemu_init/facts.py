"""Facts about this host that the host checks need: where a QEMU binary is, an image's format."""

from __future__ import annotations

import os
import shutil
from typing import Optional

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
