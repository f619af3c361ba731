"""The fast path (qemu_init/fastcli.py) against the Typer app (qemu_init/cli.py): the same words
and exit codes for the same command lines — usage errors included — and no typer, click or jinja2
imported on the fast path. Run as a user runs them: a fresh interpreter per command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from qemu_init import cli, fastcli

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("typer", "click", "jinja2", "rich")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="100")
    env.pop("QEMU_INIT_ROOT", None)
    return dict(env, **extra)


def fast(*args, **env):
    return subprocess.run([sys.executable, "-m", "qemu_init", *args], capture_output=True, text=True,
                          timeout=60, env=_env(**env), cwd=str(REPO))


def typer_path(*args, **env):
    code = "import sys; from qemu_init import cli; sys.exit(cli.run(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60, env=_env(**env), cwd=str(REPO))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("fastcli")
    vms = base / "vms"
    vms.mkdir()
    for name, extra in (("w1", ""), ("w2", "DEPENDS=w1\n")):
        (vms / f"{name}-qemud.rc").write_text(f"NAME={name}\nTGTARCH=qemu-system-x86_64\nKVM=no\nBRIDGE=none\n"
                                              f"DESC=guest {name}\n{extra}")
    root = base / "root"
    proc = fast("--root", str(root), "register", str(vms))
    assert proc.returncode == 0, proc.stderr
    assert fast("--root", str(root), "autostart", "w2", "on").returncode == 0
    # a guest whose files went bad since it was registered
    (vms / "w2-qemud.rc").write_text("NAME=w2\nRAM=lots\n")
    return root


# Command lines the fast path runs itself; none starts a QEMU (no guest runs in this root).
RUNS = [
    ["status", "w1"], ["status", "w1", "--json"], ["status", "--json", "w1"], ["status", "w2"],
    ["status", "nosuch"], ["list"], ["list", "--json"], ["qemud", "status"], ["qemud", "status", "--json"],
    ["stop", "w1"], ["stop", "w1", "--timeout", "5"], ["stop", "--timeout=0.5", "--force", "w1"],
    ["stop", "w2"], ["stop", "nosuch"], ["start", "nosuch"], ["start", "w2"], ["restart", "w2"],
    ["pause", "w1"], ["resume", "w1"], ["reset", "nosuch"], ["monitor", "w1", "info", "status"],
    ["monitor", "w2"], ["qemud", "stop"], ["--debug", "status", "w1"],
]
# Command lines it hands to Typer: help, completion, usage errors, other commands.
HANDED_ON = [
    ["--help"], ["status", "--help"], ["qemud", "--help"], ["--version"], [], ["status"],
    ["status", "w1", "w2"], ["status", "w1", "--bogus"], ["list", "--json=yes"], ["list", "extra"],
    ["stop", "w1", "--timeout", "-1"], ["stop", "w1", "--timeout", "soon"], ["stop", "w1", "--timeout"],
    ["stop", "w1", "--force", "--force"], ["qemud"], ["qemud", "bogus"], ["bogus"], ["monitor"],
    ["monitor", "w1", "info", "-x"], ["--root"], ["-h"], ["autostart", "list"], ["show", "w1"],
    ["check", "w1"],
]


def _same(args, **env):
    a, b = fast(*args, **env), typer_path(*args, **env)
    assert "Traceback" not in a.stderr + b.stderr, (a.stderr, b.stderr)
    assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr), args
    return a


@pytest.mark.parametrize("args", RUNS, ids=" ".join)
def test_fast_path_says_what_typer_says(root, args):
    assert fastcli.parse(["--root", str(root), *args]) is not None, "not on the fast path"
    _same(["--root", str(root), *args])


@pytest.mark.parametrize("args", HANDED_ON, ids=lambda a: " ".join(a) or "(none)")
def test_everything_else_goes_to_typer(root, args):
    argv = ["--root", str(root), *args] if args[:1] not in (["--root"], ["-h"]) else args
    assert fastcli.parse(argv) is None
    proc = _same(argv)
    if args in (["status"], ["status", "w1", "--bogus"], ["bogus"], ["stop", "w1", "--timeout", "-1"]):
        assert proc.returncode == 2 and proc.stderr.count("\n") == 2, proc.stderr  # one line and a hint


def test_root_from_the_environment_and_a_missing_root(root, tmp_path):
    assert fast("status", "w1", QEMU_INIT_ROOT=str(root)).returncode == 3
    _same(["status", "w1"], QEMU_INIT_ROOT=str(root))
    missing = str(tmp_path / "nosuch")
    assert fastcli.parse(["--root", missing, "status", "w1"]) is None  # Typer's usage error
    assert _same(["--root", missing, "status", "w1"]).returncode == 2


@pytest.mark.parametrize("args", [[], ["status", "w1"]], ids=["as-the-shell-asks", "with-a-command-line"])
def test_completion_comes_from_typer(root, args):
    # as contrib/completion/_qemu-init asks; the environment, not the command line, says so
    env = {"_QEMU_INIT_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "qemu-init st",
           "QEMU_INIT_ROOT": str(root)}
    proc = _same(args, **env)
    assert "status" in proc.stdout and "stop" in proc.stdout, proc


PROBE = """
import json, sys
from qemu_init import fastcli
codes = [fastcli.run(["--root", sys.argv[1], *args.split()]) for args in sys.argv[2:]]
print(json.dumps({"codes": codes, "modules": sorted(sys.modules)}))
"""


def _probe(root, lines):
    proc = subprocess.run([sys.executable, "-c", PROBE, str(root), *lines], capture_output=True, text=True,
                          timeout=60, env=_env(), cwd=str(REPO))
    return json.loads(proc.stdout.splitlines()[-1])


def test_fast_path_imports_neither_typer_click_nor_jinja(root):
    lines = ["status w1", "status w1 --json", "list", "list --json", "qemud status", "stop w1",
             "stop w1 --force", "pause w1", "monitor w1 info status", "qemud stop", "start w2"]
    result = _probe(root, lines)
    assert result["codes"] == [3, 3, 0, 0, 3, 0, 0, 1, 1, 0, 1]
    heavy = [m for m in result["modules"] if m.split(".")[0] in HEAVY]
    assert heavy == [], f"the fast path pulled in {heavy}"


def test_status_and_list_import_only_what_they_use(root):
    # nor what only `check` and rendering need, nor dataclasses (with inspect) and typing: ~15 ms
    result = _probe(root, ["status w1", "list", "qemud status", "stop w1", "start w2"])
    assert not {"qemu_init.checks", "qemu_init.render", "dataclasses", "inspect", "typing"} & set(result["modules"])
def test_the_table_agrees_with_the_typer_app():
    """Every command the fast path runs is the Typer app's, with the same arguments, and takes
    no option Typer does not (Typer may have more: those command lines go to Typer)."""
    group = typer.main.get_command(cli.app)
    for path, command in fastcli.COMMANDS.items():
        typed = group
        for word in path:
            typed = typed.commands[word]
        options = {opt: ("flag" if p.is_flag else "value") for p in typed.params
                   if p.param_type_name == "option" for opt in p.opts}
        arguments = [p for p in typed.params if p.param_type_name == "argument"]
        assert set(command.options.items()) <= set(options.items()), path
        assert [a.nargs for a in arguments] == [1] * command.names + ([-1] if command.rest else []), path
