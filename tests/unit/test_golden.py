"""Golden files: each case under tests/golden/ pairs configuration with what qemu-init makes of it.

A case folder holds the inputs (``<name>-qemud.rc``, optional ``<name>-qemu.cfg``, optional
``qemu-init.conf``; header comments ``# TEST:`` say what it shows, ``# EXPECT_ERROR:
FILE:LINE: KEY: message`` (the whole line, FILE relative to the case) makes it a case that
must fail the checks) and the expected outputs: ``<name>.argv`` (the QEMU command line, one
option with its value a line, sh-quoted) and ``<init>/<file>`` for every file generated for
each init system.

A mismatch fails with a unified diff; a missing expected file fails, and so does one that is no
longer generated. ``pytest --update-golden`` (``make golden``) rewrites them all: review the diff.

Paths are stable: guests render as if their files were in /srv/qi-golden/guests/<case>, with the
sandbox root /srv/qi-golden and a fixed helper path. Nothing is written there.
"""

from __future__ import annotations

import atexit
import difflib
import functools
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List

import pytest

from qemu_init import quoting, records, render, sites
from qemu_init.cmdline import plan
from qemu_init.config import load_guest, load_host
from qemu_init.errors import ERROR
from qemu_init.inventory import Inventory
from qemu_init.model import Source
from qemu_init.paths import Layout, Paths
from qemu_init.runtime import helperargs

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
ROOT = "/srv/qi-golden"
HELPER = ("/usr/bin/qemu-init-helper",)
COMMAND = ("/usr/bin/qemu-init", "--root", ROOT)
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
HEADER = re.compile(r"#\s*(TEST|EXPECT_ERROR):\s?(.*)")


def headers(case: Path) -> Dict[str, List[str]]:
    found: Dict[str, List[str]] = {"TEST": [], "EXPECT_ERROR": []}
    for rc in sorted(case.glob("*-qemud.rc")):
        for line in rc.read_text().splitlines():
            match = HEADER.fullmatch(line.strip())
            if match:
                found[match.group(1)].append(match.group(2).strip())
    return found


_COPIES = tempfile.mkdtemp(prefix="qi-golden-")
atexit.register(shutil.rmtree, _COPIES, True)


@functools.lru_cache(maxsize=None)
def inputs(case: Path) -> Path:
    """A copy of the case's input files that qemu-init trusts (qemu_init/trust.py): the checkout
    itself may belong to another user than the one running the tests, or be group-writable."""
    copy = Path(_COPIES) / case.name
    copy.mkdir()
    for source in case.iterdir():
        if source.is_file() and not source.name.endswith(".argv"):
            shutil.copyfile(source, copy / source.name)
            os.chmod(copy / source.name, 0o644)
    return copy


def problems(case: Path, tmp_path: Path) -> List[str]:
    """``file:line: KEY: message`` of every error ``check`` finds in the case, as a user would
    see it, with the file named relative to the case folder."""
    case = inputs(case)
    paths = Paths.for_layout(Layout(), str(tmp_path / "root"))
    os.makedirs(paths.etcdir)
    if (case / "qemu-init.conf").exists():
        (Path(paths.host_conf)).write_bytes((case / "qemu-init.conf").read_bytes())
    found = Inventory(paths).check([str(rc) for rc in sorted(case.glob("*-qemud.rc"))])
    # the whole line a user reads, the case's file named as in the case folder
    return [str(p).replace(str(case) + os.sep, "", 1) for p in found if p.level == ERROR]


def stable(path: str, case: Path) -> str:
    """``path`` as if the case folder were /srv/qi-golden/guests/<case>."""
    prefix = str(case) + os.sep
    return f"{ROOT}/guests/{case.name}/{path[len(prefix):]}" if path.startswith(prefix) else path


def golden_site(case: Path) -> sites.Site:
    case = inputs(case)
    paths = Paths.for_layout(Layout(), ROOT)
    conf = case / "qemu-init.conf"
    host, host_problems = load_host(str(conf))
    assert not host_problems, host_problems
    infos = []
    for number, rc in enumerate(sorted(case.glob("*-qemud.rc")), 1):
        guest, found = load_guest(str(rc), host)
        assert guest is not None, found

        def moved(source: Source) -> Source:
            return Source(stable(source.path, case), source.sha256)

        guest = records.replace(
            guest, folder=stable(guest.folder + os.sep, case).rstrip("/"), rcfile=moved(guest.rcfile),
            cfgfile=moved(guest.cfgfile) if guest.cfgfile else None,
            drives=tuple(records.replace(d, file=stable(d.file, case)) for d in guest.drives))
        infos.append(sites.GuestInfo(number, guest, plan(guest, number, host, paths)))
    host_source = sites.file_source(str(conf))
    return sites.Site(paths=paths, host=host, guests=tuple(infos), helper=HELPER, command=COMMAND,
                       host_source=Source(paths.host_conf, host_source.sha256) if host_source else None)


def expected_outputs(case: Path) -> Dict[str, str]:
    """Relative path in the case folder -> the text qemu-init makes now."""
    site = golden_site(case)
    outputs = {f"{info.guest.name.lower()}.argv": argv_text(info.plan.argv) for info in site.guests}
    for init in render.INIT_SYSTEMS:
        for item in render.render_site(site, init):
            outputs[f"{init}/{item.path}"] = item.text
    return outputs


def argv_text(argv) -> str:
    """The QEMU command line as a golden file holds it: the program, then one option with its
    value a line (as Proxmox's cfg2cmd tests), each word quoted as sh would need it."""
    return "".join(quoting.shjoin(words) + "\n" for words in helperargs.argv_lines(argv))


def stored_outputs(case: Path) -> Dict[str, Path]:
    stored = {p.name: p for p in case.glob("*.argv")}
    for init in render.INIT_SYSTEMS:
        if (case / init).is_dir():
            stored.update({f"{init}/{p.name}": p for p in (case / init).iterdir()})
    return stored


def compare(case: Path, outputs: Dict[str, str], update: bool) -> List[str]:
    """Every difference between ``outputs`` and the stored files, as readable text; with
    ``update``, the stored files are made to match instead."""
    stored = stored_outputs(case)
    failures = []
    for rel, text in sorted(outputs.items()):
        path = case / rel
        if rel not in stored:
            failures.append(f"{path}: missing (run pytest --update-golden, then review it)")
        elif path.read_text() != text:
            diff = difflib.unified_diff(path.read_text().splitlines(keepends=True), text.splitlines(keepends=True),
                                        f"{path} (stored)", f"{path} (made now)")
            failures.append("".join(diff))
        else:
            continue
        if update:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    for rel in sorted(set(stored) - set(outputs)):
        failures.append(f"{case / rel}: stored, but no longer made")
        if update:
            stored[rel].unlink()
    if update:
        for init in render.INIT_SYSTEMS:
            if (case / init).is_dir() and not any((case / init).iterdir()):
                (case / init).rmdir()
    return failures


@pytest.mark.parametrize("case", CASES)
def test_golden(case, tmp_path, request):
    folder = GOLDEN / case
    info = headers(folder)
    assert info["TEST"], f"{folder}: say what the case shows in a '# TEST:' header"
    errors = problems(folder, tmp_path)
    assert sorted(errors) == sorted(info["EXPECT_ERROR"]), (
        f"{folder}: check found {errors}, the case expects {info['EXPECT_ERROR']}")
    outputs = {} if info["EXPECT_ERROR"] else expected_outputs(folder)
    update = request.config.getoption("--update-golden")
    failures = compare(folder, outputs, update)
    if failures and not update:
        pytest.fail("\n".join(failures), pytrace=False)


def test_every_script_template_has_a_golden_case(monkeypatch):
    """A template no case renders would change unseen: each one needs a golden case."""
    used = set()
    original = render.render

    def recording(template, **context):
        used.add(template)
        return original(template, **context)

    monkeypatch.setattr(render, "render", recording)
    for case in CASES:
        if not headers(GOLDEN / case)["EXPECT_ERROR"]:
            expected_outputs(GOLDEN / case)
    templates = {str(p.relative_to(render.TEMPLATE_DIR)) for p in Path(render.TEMPLATE_DIR).rglob("*.j2")
                 if p.parent.name not in ("new", "common") and not p.name.startswith("functions")}
    assert templates - used == set()
