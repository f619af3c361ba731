"""Packaging as maintainers and admins meet it (issue 8; SPEC §4 layouts, §8 CLI).

`make install` / `make uninstall` in both layouts and for every init system, staged with DESTDIR
so the host is never touched; the Debian package, built from a copy of the tree, linted,
installed on this machine and purged again; the example guests; bash completion of guest names.
"""

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from qemu_init import __version__
from qemu_init.config import default_host, load_host
from qemu_init.keys import HOST_KEYS

REPO = Path(__file__).resolve().parents[2]
# The interpreter `make install` and the packages run qemu-init with: the system's, with the
# distribution's jinja2 and typer (.ci/install-deps installs them).
SYSTEM_PYTHON = "/usr/bin/python3"
# Variables a caller's environment could slip into make's `?=` defaults.
MAKE_VARS = ("PREFIX", "SUFFIX", "LAYOUT", "APPDIR", "DESTDIR", "INITSYS", "PYTHON", "MANIFEST",
             "MKRUNDIR", "STAGE", "QEMU_INIT_ROOT")


def system_python_ready() -> bool:
    return os.access(SYSTEM_PYTHON, os.X_OK) and subprocess.run(
        [SYSTEM_PYTHON, "-c", "import jinja2, typer"], capture_output=True).returncode == 0


needs_system_python = pytest.mark.skipif(not system_python_ready(),
                                         reason=f"{SYSTEM_PYTHON} lacks jinja2/typer (.ci/install-deps)")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARS}
    env.update(extra)
    return env


def run(argv, check=True, timeout=300, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check:
        assert proc.returncode == 0, f"{argv} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def make(target, dest, stage, **variables):
    args = [f"{k}={v}" for k, v in {"DESTDIR": dest, "STAGE": stage, "PYTHON": SYSTEM_PYTHON,
                                     **variables}.items()]
    return run(["make", "-s", "-C", str(REPO), target, *args], env=clean_env())


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def tree(dest: Path):
    """Every file and folder under dest, as target paths ("/usr/...")."""
    files, dirs = set(), set()
    for top, subdirs, names in os.walk(dest):
        rel = "/" + os.path.relpath(top, dest) if top != str(dest) else ""
        dirs.update(f"{rel}/{d}" for d in subdirs)
        files.update(f"{rel}/{n}" for n in names)
    return files, dirs


LAYOUTS = {
    "fhs": dict(
        vars={},
        libdir="/usr/local/lib/qemu-init", examples="/usr/local/share/qemu-init/examples",
        manifest="/usr/local/share/qemu-init/install-manifest",
        dirs={"etcdir": ("/usr/local/etc/qemu-init", 0o755), "vardir": ("/var/lib/qemu-init", 0o750),
              "rundir": ("/run/qemu-init", 0o755), "logdir": ("/var/log/qemu-init", 0o750)},
        # Every file lives in one of these.
        areas=("/usr/local/bin/", "/usr/local/lib/qemu-init/", "/usr/local/share/", "/usr/local/etc/qemu-init/",
               "/etc/init.d/"),
    ),
    "appdir": dict(
        vars={"LAYOUT": "appdir"},
        libdir="/var/lib/qemud/lib", examples="/var/lib/qemud/dat/examples",
        manifest="/var/lib/qemud/dat/install-manifest",
        dirs={"etcdir": ("/var/lib/qemud/etc", 0o755), "vardir": ("/var/lib/qemud/var", 0o750),
              "rundir": ("/var/lib/qemud/var/run", 0o755), "logdir": ("/var/lib/qemud/var", 0o750)},
        areas=("/usr/local/bin/", "/var/lib/qemud/", "/usr/local/share/man/", "/usr/local/share/bash-completion/",
               "/usr/local/share/zsh/", "/usr/local/share/fish/", "/etc/init.d/"),
    ),
}
COMMON_FILES = {
    "/usr/local/bin/qemu-init": 0o755,
    "/usr/local/bin/qemu-init-helper": 0o755,
    "/etc/init.d/qemud": 0o755,
    "/usr/local/share/man/man5/qemu-init.5": 0o644,
    "/usr/local/share/man/man8/qemu-init.8": 0o644,
    "/usr/local/share/man/man8/qemud.8": 0o644,
    "/usr/local/share/man/man8/qemu-init-helper.8": 0o644,
    "/usr/local/share/bash-completion/completions/qemu-init": 0o644,
    "/usr/local/share/zsh/site-functions/_qemu-init": 0o644,
    "/usr/local/share/fish/vendor_completions.d/qemu-init.fish": 0o644,
}


def staged_tool(dest: Path, libdir: str, *args, sandbox: Path):
    """The installed qemu-init, run from the staging tree (its package found via PYTHONPATH)."""
    return run([SYSTEM_PYTHON, f"{dest}/usr/local/bin/qemu-init", "--root", str(sandbox), *args],
               check=False, env=clean_env(PYTHONPATH=f"{dest}{libdir}"))


@needs_system_python
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_make_install_tree_modes_and_exact_uninstall(tmp_path, layout):
    spec = LAYOUTS[layout]
    dest, stage = tmp_path / "dest", tmp_path / "stage"
    make("install", dest, stage, INITSYS="sysv", **spec["vars"])
    files, dirs = tree(dest)
    etcdir = spec["dirs"]["etcdir"][0]
    libdir, examples = spec["libdir"], spec["examples"]

    expected = dict(COMMON_FILES)
    expected.update({
        f"{libdir}/qemu_init/cli.py": 0o644,
        f"{libdir}/qemu_init/runtime/helper.py": 0o644,
        f"{libdir}/qemu_init/layout.conf": 0o644,
        f"{libdir}/qemu_init/templates/new/guest-qemud.rc.j2": 0o644,
        f"{etcdir}/qemu-init.conf": 0o644,
        f"{etcdir}/template-qemu.cfg": 0o644,
        f"{examples}/minimal/minimal-qemud.rc": 0o644,
        f"{examples}/storage/storage-qemu.cfg": 0o644,
        spec["manifest"]: 0o644,
    })
    expected.update({path: m for path, m in spec["dirs"].values()})
    wrong = {p: (oct(m), oct(mode(f"{dest}{p}")) if os.path.lexists(f"{dest}{p}") else "missing")
             for p, m in expected.items() if not os.path.lexists(f"{dest}{p}") or mode(f"{dest}{p}") != m}
    assert wrong == {}, "path: (expected mode, found)"
    strays = sorted(f for f in files if not f.startswith(spec["areas"]))
    assert strays == [], f"files outside the {layout} layout's places"

    # The installed package knows its layout, and paths.py agrees with the folders made for it.
    layout_conf = Path(f"{dest}{libdir}/qemu_init/layout.conf").read_text()
    assert f"kind={layout}\n" in layout_conf and "prefix=/usr/local\n" in layout_conf
    probe = ("import json, sys; sys.path.insert(0, sys.argv[1]); from qemu_init.paths import host_paths; "
             "p = host_paths(); print(json.dumps([p.etcdir, p.vardir, p.rundir, p.logdir, p.initdir]))")
    found = run([SYSTEM_PYTHON, "-c", probe, f"{dest}{libdir}"], env=clean_env()).stdout
    assert found.strip() == '["%s", "%s", "%s", "%s", "/etc/init.d"]' % tuple(
        spec["dirs"][k][0] for k in ("etcdir", "vardir", "rundir", "logdir"))

    # The installed tool works, templates included, and its host service calls it by its place.
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()  # --root must name a folder that exists
    assert staged_tool(dest, libdir, "--version", sandbox=sandbox).stdout.strip() == f"qemu-init {__version__}"
    checked = staged_tool(dest, libdir, "check", f"{dest}{examples}/minimal", sandbox=sandbox)
    assert checked.returncode == 0, checked.stderr
    made = staged_tool(dest, libdir, "new", "fresh1", "--dir", str(tmp_path / "vms"), sandbox=sandbox)
    assert made.returncode == 0, made.stderr
    qemud = Path(f"{dest}/etc/init.d/qemud").read_text()
    assert "/usr/local/bin/qemu-init" in qemud and f"{etcdir}/autostart" in qemud

    # Relocatable: nothing installed names the staging or build folders (byte code included).
    for path in files:
        data = Path(f"{dest}{path}").read_bytes()
        assert str(dest).encode() not in data and str(stage).encode() not in data, path

    # The host settings: every key, commented, with its default; as shipped and uncommented,
    # they mean exactly the defaults.
    conf = Path(f"{dest}{etcdir}/qemu-init.conf")
    text = conf.read_text()
    for key in HOST_KEYS.values():
        assert f"\n#{key.name}={key.default or ''}\n" in text, key.name
    for variant in (text, re.sub(r"^#([A-Z]+=)", r"\1", text, flags=re.M)):
        conf.write_text(variant)
        host, problems = load_host(str(conf))
        assert problems == [] and host == default_host(path=str(conf))
    conf.write_text(text)

    # The manifest lists exactly what is there (a fresh DESTDIR: every folder is ours) ...
    listed = Path(f"{dest}{spec['manifest']}").read_text().splitlines()
    assert {l.split(" ", 1)[1] for l in listed if l[0] == "d"} == dirs
    assert {l.split(" ", 1)[1] if l[0] == "f" else l.split(" ", 2)[2] for l in listed if l[0] in "fc"} == files
    # ... so uninstall leaves nothing.
    make("uninstall", dest, stage, **spec["vars"])
    assert list(dest.iterdir()) == []

    # Again, with a folder that was there before, an edited host settings file, a registry and
    # a reinstall on top: uninstall removes only its own files, never the admin's.
    (dest / "usr/local/bin").mkdir(parents=True)
    (dest / "usr/local/bin/other-tool").write_text("not ours\n")
    make("install", dest, stage, INITSYS="sysv", **spec["vars"])
    with conf.open("a") as handle:
        handle.write("BRIDGE=br7\n")
    Path(f"{dest}{etcdir}/registered").write_text("1 web1 /srv/vm/web1\n")
    make("install", dest, stage, INITSYS="sysv", **spec["vars"])
    assert conf.read_text().endswith("BRIDGE=br7\n"), "make install replaced an edited configuration file"
    make("uninstall", dest, stage, **spec["vars"])
    left, _ = tree(dest)
    assert left == {"/usr/local/bin/other-tool", f"{etcdir}/qemu-init.conf", f"{etcdir}/registered"}


@needs_system_python
def test_scripts_generated_by_an_installed_qemu_init_call_its_own_commands(tmp_path):
    """`qemu-init install` on a host installed from source must name PREFIX/bin/qemu-init-helper:
    the package lives in a private folder, so `python3 -m qemu_init...` cannot find it at boot."""
    dest, stage, sandbox = tmp_path / "dest", tmp_path / "stage", tmp_path / "sandbox"
    make("install", dest, stage, INITSYS="sysv")
    libdir = LAYOUTS["fhs"]["libdir"]
    assert staged_tool(dest, libdir, "register", str(REPO / "contrib/examples/minimal"), sandbox=sandbox).returncode == 0
    out = tmp_path / "out"
    made = staged_tool(dest, libdir, "generate", "--init", "sysv", "--output", str(out), sandbox=sandbox)
    assert made.returncode == 0, made.stderr
    assert "\nHELPER=/usr/local/bin/qemu-init-helper\n" in (out / "qemu-minimal").read_text()
    assert "\nQEMU_INIT=/usr/local/bin/qemu-init\n" in (out / "qemud").read_text()


@needs_system_python
@pytest.mark.parametrize("initsys, place, mode_, first", [
    ("openrc", "/etc/init.d/qemud", 0o755, "#!/sbin/openrc-run"),
    ("bsd", "/usr/local/etc/rc.d/qemud", 0o755, "#!/bin/sh"),
    ("systemd", "/etc/systemd/system/qemud.service", 0o644, "# qemud: QEMU guests of qemu-init"),
])
def test_host_service_for_each_init_system(tmp_path, initsys, place, mode_, first):
    dest, stage = tmp_path / "dest", tmp_path / "stage"
    make("install", dest, stage, INITSYS=initsys)
    service = dest / place.lstrip("/")
    assert mode(service) == mode_
    text = service.read_text()
    assert text.startswith(first + "\n") and "/usr/local/bin/qemu-init" in text
    make("uninstall", dest, stage)
    assert list(dest.iterdir()) == []


@needs_system_python
def test_reinstall_drops_what_the_new_install_no_longer_has(tmp_path):
    dest, stage = tmp_path / "dest", tmp_path / "stage"
    make("install", dest, stage, INITSYS="sysv")
    assert (dest / "etc/init.d/qemud").exists()
    make("install", dest, stage, INITSYS="none")
    assert not (dest / "etc/init.d").exists()
    assert "/etc/init.d" not in (dest / "usr/local/share/qemu-init/install-manifest").read_text()
    make("uninstall", dest, stage)
    assert list(dest.iterdir()) == []


@needs_system_python
def test_package_mode_leaves_the_file_list_to_the_package_manager(tmp_path):
    """What contrib/alpine/APKBUILD and the FreeBSD port run: no manifest, no folder in /run."""
    dest, stage = tmp_path / "dest", tmp_path / "stage"
    make("install", dest, stage, PREFIX="/usr", INITSYS="openrc", MANIFEST="", MKRUNDIR="no")
    files, dirs = tree(dest)
    assert not any("install-manifest" in f for f in files)
    assert not any(d.startswith("/run") for d in dirs)
    assert {"/usr/bin/qemu-init", "/etc/init.d/qemud", "/etc/qemu-init/qemu-init.conf"} <= files
    assert "prefix=/usr\n" in (dest / "usr/lib/qemu-init/qemu_init/layout.conf").read_text()


def qi(root, *args, check=0):
    proc = run([sys.executable, "-m", "qemu_init", "--root", str(root), *args], check=False,
               env=clean_env())
    assert proc.returncode == check, (args, proc.stdout, proc.stderr)
    return proc.stdout


def test_example_guests_are_valid_and_show_what_they_are_for(tmp_path):
    examples = REPO / "contrib/examples"
    assert {"minimal", "storage", "twonics", "depends"} <= {p.name for p in examples.iterdir()}
    root = tmp_path / "root"
    root.mkdir()  # an empty host: --root must name a folder that exists
    for folder in sorted(examples.iterdir()):
        qi(root, "check", str(folder))
        qi(root, "register", str(folder))
    storage = qi(root, "show", "--argv", "storage").splitlines()
    assert sum(a.startswith("file=") and "media=cdrom" not in a for a in storage) == 2
    assert sum("media=cdrom" in a for a in storage) == 1
    assert qi(root, "show", "--argv", "twonics").splitlines().count("-netdev") == 2
    assert re.search(r"^depends\s+db1$", qi(root, "show", "web1"), re.M)
    minimal = (examples / "minimal/minimal-qemud.rc").read_text()
    assert [l for l in minimal.splitlines() if l and not l.startswith("#")] == \
        ["NAME=minimal", "TGTARCH=qemu-system-x86_64"]


def test_versions_agree_across_packaging():
    changelog = (REPO / "contrib/debian/changelog").read_text().splitlines()[0]
    assert changelog.startswith(f"qemu-init ({__version__})")
    assert f"\npkgver={__version__}\n" in (REPO / "contrib/alpine/APKBUILD").read_text()
    assert re.search(rf"^DISTVERSION=\s+{re.escape(__version__)}$",
                     (REPO / "contrib/freebsd/sysutils/qemu-init/Makefile").read_text(), re.M)


# --- shell completion --------------------------------------------------------------------------

COMPLETION = REPO / "contrib/completion"


def test_completion_files_are_what_the_cli_emits():
    for shell, name in (("bash", "qemu-init.bash"), ("fish", "qemu-init.fish"), ("zsh", "_qemu-init")):
        emitted = run([sys.executable, "-m", "qemu_init"],
                      env=clean_env(_QEMU_INIT_COMPLETE=f"source_{shell}")).stdout
        assert (COMPLETION / name).read_text().startswith(emitted), f"{name} is stale: run `make completion`"


def complete(script: Path, env: dict, *words: str):
    """What bash offers for the last of ``words``, through the function the script registers."""
    program = r"""
source "$1"; shift
spec=$(complete -p qemu-init) || exit 2
fn=$(printf '%s\n' "$spec" | sed -n 's/.* -F \([^ ]*\) .*/\1/p')
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()
"$fn" qemu-init "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""
    proc = run(["bash", "-c", program, "complete", str(script), *words], env=env, timeout=60)
    return sorted(line for line in proc.stdout.splitlines() if line)


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_loads_and_completes_guest_names(tmp_path):
    root = tmp_path / "root"
    qi(root, "register", str(REPO / "contrib/examples/depends"), str(REPO / "contrib/examples/minimal"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # The completion script calls `qemu-init` by name: this one runs the code under test.
    (bindir / "qemu-init").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m qemu_init "$@"\n')
    (bindir / "qemu-init").chmod(0o755)
    env = clean_env(PATH=f"{bindir}:{os.environ['PATH']}", QEMU_INIT_ROOT=str(root), PYTHONPATH=str(REPO))
    script = COMPLETION / "qemu-init.bash"
    assert complete(script, env, "qemu-init", "show", "") == ["db1", "minimal", "web1"]
    assert complete(script, env, "qemu-init", "start", "w") == ["web1"]
    assert complete(script, env, "qemu-init", "autostart", "on", "d") == ["db1"]
    assert {"start", "status", "stop"} <= set(complete(script, env, "qemu-init", "st"))


# --- the Debian package --------------------------------------------------------------------------

def copy_tree(dest: Path) -> None:
    """The work tree as git sees it (tracked and new files, nothing ignored): no build output."""
    listing = run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    for rel in filter(None, listing.split("\0")):
        src, dst = REPO / rel, dest / rel
        if not os.path.lexists(src):
            continue  # deleted in the work tree, not yet in git
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


def installed_packages():
    return set(run(["dpkg-query", "-W", "-f", "${Package}\\n"]).stdout.split())


def system_user(name: str) -> bool:
    return subprocess.run(["getent", "passwd", name], capture_output=True).returncode == 0


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="installs a package: needs root")
@pytest.mark.skipif(not (shutil.which("dpkg-buildpackage") and shutil.which("lintian") and shutil.which("apt-get")),
                    reason="needs dpkg-dev, debhelper, dh-python and lintian (.ci/install-deps)")
def test_debian_package_builds_lints_installs_and_purges(tmp_path):
    if "qemu-init" in installed_packages():
        pytest.skip("a qemu-init package is installed on this host: not touching it")
    src = tmp_path / "qemu-init"
    copy_tree(src)
    shutil.copytree(src / "contrib/debian", src / "debian")
    # A clean environment, as in a build chroot: no virtualenv or pyenv interpreter on PATH.
    build_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=build_env, timeout=900)
    deb = tmp_path / f"qemu-init_{__version__}_all.deb"
    assert deb.exists()

    lint = run(["lintian", "--no-tag-display-limit", str(deb)], check=False, env=build_env, timeout=600)
    complaints = [line for line in lint.stdout.splitlines() if line.startswith(("E:", "W:"))]
    assert complaints == [], lint.stdout + lint.stderr

    before = installed_packages()
    user_existed = system_user("qemud")
    apt_env = dict(build_env, DEBIAN_FRONTEND="noninteractive")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()  # an empty host for `check`: --root must name a folder that exists
    try:
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", str(deb)], env=apt_env, timeout=600)
        helped = run(["/usr/bin/qemu-init", "--help"], env=build_env)
        assert "register" in helped.stdout and "qemud" in helped.stdout
        for folder in ("minimal", "storage", "twonics", "depends"):
            run(["/usr/bin/qemu-init", "--root", str(sandbox), "check",
                 f"/usr/share/doc/qemu-init/examples/{folder}"], env=build_env)
        run(["/usr/bin/qemu-init", "--root", str(sandbox), "new", "fresh1", "--dir", str(tmp_path / "vms")],
            env=build_env)
        init = Path("/etc/init.d/qemud")
        assert init.exists() and mode(init) == 0o755
        assert "QEMU_INIT=/usr/bin/qemu-init" in init.read_text()
        run([str(init), "status"], env=build_env)  # the packaged script drives the packaged tool
        assert system_user("qemud")
        assert "prefix=/usr\n" in Path("/usr/lib/python3/dist-packages/qemu_init/layout.conf").read_text()
        run(["bash", "-c", "source /usr/share/bash-completion/completions/qemu-init && complete -p qemu-init"])
    finally:
        run(["apt-get", "purge", "-y", "-q", "qemu-init"], check=False, env=apt_env, timeout=600)
        pulled = sorted(installed_packages() - before)
        if pulled:  # dependencies this test brought in go again: the host is left as found
            run(["apt-get", "purge", "-y", "-q", *pulled], check=False, env=apt_env, timeout=600)
        if not user_existed and system_user("qemud"):
            run(["deluser", "--system", "qemud"], check=False, env=build_env)
        if subprocess.run(["getent", "group", "qemud"], capture_output=True).returncode == 0 and not user_existed:
            run(["delgroup", "--system", "qemud"], check=False, env=build_env)

    assert "qemu-init" not in installed_packages()
    for gone in ("/usr/bin/qemu-init", "/etc/init.d/qemud", "/etc/qemu-init", "/var/lib/qemu-init",
                 "/usr/lib/python3/dist-packages/qemu_init"):
        assert not os.path.lexists(gone), f"{gone} survived the purge"
    assert not list(Path("/etc").glob("rc?.d/*qemud")), "the qemud boot links survived the purge"
