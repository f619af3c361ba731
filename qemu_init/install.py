"""Writing rendered scripts: ``generate`` into a folder for review, ``install`` where they belong.

Everything is rendered before anything is written, so a configuration error writes nothing; then
each file replaces its old version by an atomic rename, so an interrupted install leaves every
script either old and whole or new and whole, never half written.
"""

from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

from . import render
from .errors import RenderError
from .files import sync_folder_of, write_atomic
from .inventory import Inventory
from .owner import detect_init
from .paths import Paths, read_layout

ALL = "all"


def _inits(init: Optional[str]) -> List[str]:
    if init is None:
        return [detect_init()]
    if init == ALL:
        return list(render.INIT_SYSTEMS)
    if init not in render.INIT_SYSTEMS:
        raise RenderError(f"unknown init system {init!r} (use {', '.join(render.INIT_SYSTEMS)} or {ALL})")
    return [init]


def _write_all(files: Sequence[Tuple[str, str, int]]) -> List[str]:
    folders = {}
    for path, text, mode in files:
        write_atomic(path, text, mode, root_owned=True, sync_folder=False)
        folders.setdefault(os.path.dirname(path), path)
    for path in folders.values():  # each folder once, not once per file
        sync_folder_of(path)
    return [path for path, _, _ in files]


def generate(inventory: Inventory, init: Optional[str] = None, output_dir: Optional[str] = None,
             names: Sequence[str] = (), *, helper: Optional[Sequence[str]] = None) -> List[str]:
    """Render the scripts of ``names`` (default: every registered guest, and then the host
    service too) with their bridges' services and tap scripts.

    Into ``output_dir`` (one subfolder per init system with ``init="all"``), else where
    ``install`` puts them. Returns the paths written.
    """
    inits = _inits(init)
    if output_dir is None and len(inits) > 1:
        raise RenderError("--init all needs --output: the init systems' scripts would overwrite each other")
    site = render.site(inventory, names, helper=helper)
    files = []
    for each in inits:
        for item in render.render_site(site, each, qemud=not names):
            if output_dir is None:
                folder = getattr(inventory.paths, item.folder)
            else:
                folder = os.path.join(output_dir, each) if len(inits) > 1 else output_dir
            files.append((os.path.join(folder, item.path), item.text, item.mode))
    return _write_all(files)


def install(inventory: Inventory, init: Optional[str] = None, destdir: Optional[str] = None, *,
            helper: Optional[Sequence[str]] = None) -> List[str]:
    """Install every registered guest's service, the bridges' services and tap scripts and the
    host service where the init system looks for them, under ``destdir`` if given (packaging).
    Returns the paths written."""
    inits = _inits(init)
    if len(inits) > 1:
        raise RenderError("install takes one init system; use generate --init all --output DIR to see them all")
    site = render.site(inventory, helper=helper)
    packaged = packaged_service(inventory.paths)
    files = []
    for item in render.render_site(site, inits[0]):
        path = os.path.join(getattr(inventory.paths, item.folder), item.path)
        if path == packaged:
            continue  # the package's own file: rewriting it would make every upgrade ask
        if destdir:
            path = os.path.join(destdir, path.lstrip("/"))
        files.append((path, item.text, item.mode))
    return _write_all(files)


def packaged_service(paths: Paths) -> Optional[str]:
    """The host service a package installed as its own file (``packaged_service`` in the
    layout record), under the sandbox root if there is one; None without one."""
    packaged = read_layout().packaged_service
    if not packaged:
        return None
    return os.path.join(paths.root, packaged.lstrip("/")) if paths.root else packaged


# How to enable what install wrote, by init system: the host service only. It starts the
# autostart guests at boot through their own services (which bring their bridges up) and stops
# every running guest at shutdown; a guest's own service is not enabled, or it would start
# outside the autostart order.
ENABLE_HINTS = {
    "sysv": "enable at boot: update-rc.d qemud defaults (only qemud: it starts the autostart guests)",
    "openrc": "enable at boot: rc-update add qemud default (only qemud: it starts the autostart guests)",
    "bsd": "enable at boot: sysrc qemud_enable=YES (only qemud: it starts the autostart guests)",
    "systemd": "then: systemctl daemon-reload; enable at boot: systemctl enable qemud.service"
               " (only qemud: it starts the autostart guests)",
}
