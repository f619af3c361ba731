"""`make install` takes its folders from qemu_init/paths.py (issue 13, acceptance 3): a staged
install, for both layouts, on Linux and for FreeBSD (PLATFORM=freebsd), creates exactly the
folders paths.py names, and nothing outside DESTDIR."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from qemu_init.paths import Layout, Paths, detect_init, install_dirs

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"  # as test_packaging: the interpreter make install runs with
MAKE_VARS = ("PREFIX", "SUFFIX", "LAYOUT", "APPDIR", "DESTDIR", "INITSYS", "PYTHON", "MANIFEST",
             "MKRUNDIR", "STAGE", "PLATFORM", "QEMU_INIT_ROOT")

needs_system_python = pytest.mark.skipif(
    subprocess.run([SYSTEM_PYTHON, "-c", "import jinja2, typer"], capture_output=True).returncode != 0,
    reason=f"{SYSTEM_PYTHON} lacks jinja2/typer (.ci/install-deps)")


def make(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARS}
    return subprocess.run(["make", "-s", "-C", str(REPO), *args], capture_output=True, text=True,
                          timeout=300, env=env)


def folders(dest: Path) -> set:
    return {"/" + os.path.relpath(top, dest) for top, _, _ in os.walk(dest) if top != str(dest)}


def ancestors(path: str) -> set:
    parts = path.strip("/").split("/")
    return {"/" + "/".join(parts[:i]) for i in range(1, len(parts))}


@needs_system_python
@pytest.mark.parametrize("platform", ["", "freebsd"])
@pytest.mark.parametrize("layout", ["fhs", "appdir"])
def test_a_staged_install_makes_exactly_the_folders_paths_py_names(tmp_path, layout, platform):
    dest = tmp_path / "dest"
    done = make("install", f"DESTDIR={dest}", f"STAGE={tmp_path / 'stage'}", f"PYTHON={SYSTEM_PYTHON}",
                f"LAYOUT={layout}", f"PLATFORM={platform}")
    assert done.returncode == 0, done.stderr
    init = detect_init(platform or None)
    named = install_dirs(Layout(kind=layout, prefix="/usr/local"), init, platform or None)
    paths = Paths.for_layout(Layout(kind=layout, prefix="/usr/local"), platform=platform or None)
    assert {named[k] for k in ("ETCDIR", "VARDIR", "RUNDIR", "LOGDIR")} == {
        paths.etcdir, paths.vardir, paths.rundir, paths.logdir}
    if platform == "freebsd":
        assert init == "bsd" and named["SERVICEDIR"] == paths.rcddir
        assert layout == "appdir" or named["RUNDIR"] == "/var/run/qemu-init"  # FreeBSD has no /run
    made = folders(dest)
    assert set(named.values()) <= made, "a folder paths.py names was not made"
    # Everything made is a named folder, one on the way to it, the manual's sections, or inside
    # the package's and the examples' trees.
    allowed = set(named.values()) | {f"{named['MANDIR']}/man5", f"{named['MANDIR']}/man8"}
    allowed |= {a for path in allowed for a in ancestors(path)}
    trees = (named["LIBDIR"] + "/", named["EXAMPLESDIR"] + "/")
    assert sorted(d for d in made if d not in allowed and not d.startswith(trees)) == []
    # The installed package says where it is, and nothing names the staging folder.
    service = Path(f"{dest}{named['SERVICEDIR']}/qemud").read_text()
    assert str(tmp_path) not in service and f"{named['ETCDIR']}/autostart" in service
    assert f"{dest}{named['DATADIR']}/install-manifest" in {str(p) for p in dest.rglob("install-manifest")}


def test_a_wrong_layout_or_init_system_is_one_line_from_paths_py(tmp_path):
    for args, message in ((["LAYOUT=bogus"], "LAYOUT must be fhs or appdir, not 'bogus'"),
                          (["INITSYS=upstart"], "INITSYS must be sysv, openrc, bsd, systemd or none, not 'upstart'")):
        done = make("install", f"DESTDIR={tmp_path / 'dest'}", f"STAGE={tmp_path / 'stage'}", *args)
        assert done.returncode != 0 and message in done.stderr
        assert not (tmp_path / "dest").exists()
