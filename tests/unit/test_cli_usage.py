"""The command line's own surface, on every Typer setup.cfg allows: plain help with upper-case
metavars, usage errors in one line plus a hint (exit 2), as systemctl prints them.

Both ends of the allowed Typer range run: this venv's (what pip picks) and, when the system
Python has it, Debian's python3-typer (what `make install` and the .deb use)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from qemu_init import cli

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"


def _has_typer(python):
    return os.path.exists(python) and subprocess.run(
        [python, "-c", "import jinja2, typer"], capture_output=True).returncode == 0


PYTHONS = [pytest.param(sys.executable, id="venv")]
if os.path.realpath(SYSTEM_PYTHON) != os.path.realpath(sys.executable):
    PYTHONS.append(pytest.param(SYSTEM_PYTHON, id="system", marks=pytest.mark.skipif(
        not _has_typer(SYSTEM_PYTHON), reason=f"{SYSTEM_PYTHON} lacks jinja2/typer (.ci/install-deps)")))


def run(python, *args, root=None):
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="100")
    env.pop("QEMU_INIT_ROOT", None)
    argv = [python, "-m", "qemu_init"] + (["--root", str(root)] if root else []) + list(args)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=str(REPO))
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def command_paths():
    def walk(command, path):
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, path + [name])
    return list(walk(typer.main.get_command(cli.app), []))


# NAME, PATH..., [NAME|PATH]..., S, DIR, or a list of choices (sysv|openrc|…)
METAVAR = re.compile(r"^\[?([A-Z][A-Z0-9_]*(\|[A-Z][A-Z0-9_]*)*|[a-z0-9]+(\|[a-z0-9]+)+)\]?(\.\.\.)?$")


def metavars(path, help_text):
    """The metavars a help page shows: in the usage line, the Arguments section and the options."""
    lines = help_text.splitlines()
    usage = next(l for l in lines if l.startswith("Usage: ")).split()
    assert usage[1:2 + len(path)] == ["qemu-init"] + path, usage
    found = [w for w in usage[2 + len(path):] if w not in ("[OPTIONS]", "COMMAND", "[ARGS]...")]
    section = None
    for line in lines:
        if line and not line.startswith(" "):
            section = line.rstrip(":")
            continue
        first = re.split(r"\s{2,}", line.strip())[0] if line.strip() else ""
        if section == "Arguments" and first:
            found.append(first)
        elif section == "Options" and first.startswith("-"):
            found += [w for w in first.replace(",", " ").split() if not w.startswith("-")]
    return found


# `qemu-init PATH... --help` of every command in one interpreter (one start instead of one per
# command): each run exactly as `python -m qemu_init` runs, its output and exit code collected.
HELPS = """
import contextlib, io, json, runpy, sys
out = []
for path in json.loads(sys.argv[1]):
    sys.argv = ["qemu-init", *path, "--help"]
    text, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(err):
        try:
            runpy.run_module("qemu_init", run_name="__main__", alter_sys=True)
        except SystemExit as e:
            code = e.code or 0
    out.append([code, text.getvalue(), err.getvalue()])
print(json.dumps(out))
"""


def helps(python, paths):
    """(exit code, stdout, stderr) of `qemu-init PATH... --help` for each of ``paths``."""
    import json
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="100")
    env.pop("QEMU_INIT_ROOT", None)
    proc = subprocess.run([python, "-c", HELPS, json.dumps(paths)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=str(REPO))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("python", PYTHONS)
def test_help_of_every_command_is_plain_with_upper_case_metavars(python):
    paths = command_paths()
    for path, (code, text, err) in zip(paths, helps(python, paths)):
        assert code == 0 and "Traceback" not in err, (path, err)
        assert not set(text) & set("╭╮╰╯│─"), f"{path}: help drawn in boxes:\n{text}"
        assert "<" not in text or "<command line>" in text, f"{path}: type metavars:\n{text}"
        bad = [m for m in metavars(path, text) if not METAVAR.match(m)]
        assert bad == [], f"qemu-init {' '.join(path)} --help: metavars {bad}\n{text}"
    check, monitor = (text for _, text, _ in helps(python, [["check"], ["monitor"]]))
    assert "--init sysv|openrc|bsd|systemd" in check  # the choices, not a bare type
    assert "Usage: qemu-init monitor [OPTIONS] NAME [COMMAND]..." in monitor


USAGE_ERRORS = [
    (["show"], "qemu-init: missing argument 'NAME'", "qemu-init show"),
    (["frob"], "qemu-init: no such command 'frob'", "qemu-init"),
    (["autostart", "db1", "maybe"], "qemu-init: no such command 'db1'", "qemu-init autostart"),
    (["stop", "--timeout", "abc", "web1"],
     "qemu-init: invalid value for '--timeout': not a number of seconds (0 or more): 'abc'", "qemu-init stop"),
    (["stop", "--timeout", "-5", "web1"],
     "qemu-init: invalid value for '--timeout': not a number of seconds (0 or more): '-5'", "qemu-init stop"),
    (["stop", "--timeout", "nan", "web1"],
     "qemu-init: invalid value for '--timeout': not a number of seconds (0 or more): 'nan'", "qemu-init stop"),
    (["status", "a1", "b1"], "qemu-init: got unexpected extra argument (b1)", "qemu-init status"),
    (["show", "--bogus", "web1"], "qemu-init: no such option: --bogus", "qemu-init show"),
    (["check", "--init", "upstart"],
     "qemu-init: invalid value for '--init': 'upstart' is not an init system (use sysv, openrc, bsd, systemd)",
     "qemu-init check"),
]


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("args,line,where", USAGE_ERRORS, ids=[" ".join(a) for a, _, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_and_a_hint_exit_2(python, args, line, where, tmp_path):
    proc = run(python, *args, root=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [line, f"Try '{where} --help'."]


def test_autostart_name_on_off_and_on_off_names(tmp_path):
    root = tmp_path / "root"
    vms = tmp_path / "vms"
    vms.mkdir()
    for name in ("db1", "web1"):
        (vms / f"{name}-qemud.rc").write_text(f"NAME={name}\nTGTARCH=qemu-system-x86_64\nKVM=no\nBRIDGE=none\n")
    assert run(sys.executable, "register", str(vms), root=root).returncode == 0
    proc = run(sys.executable, "autostart", "web1", "on", root=root)  # SPEC §8's order
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "web1: started at host boot\n", "")
    proc = run(sys.executable, "autostart", "on", "db1", "web1", root=root)  # several at once
    assert proc.returncode == 0 and proc.stdout.splitlines() == [
        "db1: started at host boot", "web1: started at host boot"]
    assert run(sys.executable, "autostart", "list", root=root).stdout.split() == ["web1", "db1"]
    proc = run(sys.executable, "autostart", "off", "web1", "nosuch", root=root)  # all or nothing
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["qemu-init: nosuch: not a registered guest (see `qemu-init list`)"]
    assert run(sys.executable, "autostart", "web1", "off", root=root).stdout == "web1: not started at host boot\n"
    assert run(sys.executable, "autostart", "list", root=root).stdout.split() == ["db1"]
