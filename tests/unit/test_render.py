"""Rendering: every value reaches a script through a quoting filter, and the filters quote right."""

from __future__ import annotations

import subprocess
from pathlib import Path

import jinja2
import jinja2.nodes as nodes
import pytest

from qemu_init import quoting, render, services, sites
from qemu_init.checks import FORCED_STEPS
from qemu_init.paths import Layout, Paths
from qemu_init.runtime import helperargs

QUOTING_FILTERS = {"sh", "shjoin", "shlines", "unit", "unitjoin", "unitlines", "unittext", "comment"}
GOLDEN = Path(__file__).resolve().parent.parent / "golden"
# The templates that make scripts and units; new/ makes the rc-file and cfg-file for `new`.
SCRIPT_TEMPLATES = sorted(str(p.relative_to(render.TEMPLATE_DIR)) for p in Path(render.TEMPLATE_DIR).rglob("*.j2")
                          if p.parent.name != "new")
NASTY = ["", "plain", "two words", "$(touch /tmp/qi-canary)", "`touch /tmp/qi-canary`", "it's",
         'say "hi"', "a;b", "a\\", "\\", "%n %% 100%", "$HOME ${x} $$", "tab\there", "*", "~root", "-x", "#"]


@pytest.mark.parametrize("template", SCRIPT_TEMPLATES)
def test_every_value_goes_through_a_quoting_filter(template):
    env = render.environment()
    source = env.loader.get_source(env, template)[0]
    for output in env.parse(source).find_all(nodes.Output):
        for node in output.nodes:
            if isinstance(node, (nodes.TemplateData, nodes.Const)):
                continue  # text of the template itself
            assert isinstance(node, nodes.Filter) and node.name in QUOTING_FILTERS, (
                f"{template}:{node.lineno}: a value printed without a quoting filter")


def test_undefined_values_are_errors_not_empty_text():
    env = render.environment()
    assert env.undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError):
        env.get_template("sysv/bridge.j2").render(summary="x", sources=[], edit=[])


@pytest.mark.parametrize("value", NASTY)
def test_sh_quoting_gives_the_value_back_byte_for_byte(value):
    for shell in ("dash", "sh"):
        out = subprocess.run([shell, "-c", f"printf '%s' {quoting.sh(value)}"], capture_output=True, text=True)
        assert out.stdout == value


def test_shjoin_keeps_word_boundaries():
    out = subprocess.run(["dash", "-c", f"printf '<%s>' {quoting.shjoin(NASTY)}"], capture_output=True, text=True)
    assert out.stdout == "".join(f"<{v}>" for v in NASTY)


@pytest.mark.parametrize("value, expected", [
    ("plain", "plain"),
    ("two words", '"two words"'),
    ("$(x)", "$$(x)"),
    ("100%", "100%%"),
    ('say "hi"', '"say \\"hi\\""'),
    ("a\\b", '"a\\\\b"'),
    ("a;b", '"a;b"'),
    ("", '""'),
])
def test_unit_quoting_follows_systemds_exec_rules(value, expected):
    assert quoting.unit(value) == expected


@pytest.mark.parametrize("char, escape", [
    ("\r", "\\r"), ("\n", "\\n"), ("\t", "\\t"), ("\x00", "\\x00"), ("\x1b", "\\x1b"),
    ("\x7f", "\\x7f"), ("\x85", "\\u0085"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"),
])
def test_unit_words_c_escape_every_non_printable_character(char, escape):
    """systemd ends a unit line at \\r and NUL as well as \\n: no value may start a line of its own."""
    word = quoting.unit(f"a{char}ExecStartPre=/bin/evil")
    assert word == f'"a{escape}ExecStartPre=/bin/evil"'  # one quoted word, unescaped by systemd
    assert word.isprintable()
    text = quoting.unittext(f"a{char}ExecStartPre=/bin/evil")
    assert text.isprintable() and text.endswith("ExecStartPre=/bin/evil")


def test_unit_settings_and_comments_stay_on_their_line():
    assert quoting.unittext("50% off\nnext line \\") == "50%% off next line"
    assert quoting.comment("a\nb\r\nc \\\\") == "a b c"


def test_argv_lines_pair_each_option_with_its_value():
    argv = ["qemu", "-name", "a", "-daemonize", "-m", "1G", "-device", "x", "y", "-nodefaults"]
    assert helperargs.argv_lines(argv) == [["qemu"], ["-name", "a"], ["-daemonize"], ["-m", "1G"],
                                       ["-device", "x"], ["y"], ["-nodefaults"]]


def test_service_names():
    assert render.guest_service("sysv", "Web1") == "qemu-web1"
    assert render.guest_service("bsd", "Web1") == "qemu_web1"
    assert render.bridge_service("openrc", "br-dmz.7") == "qemu-bridge-br-dmz.7"
    # rc.conf variables (qemu_bridge_..._enable) allow letters, digits and _ only
    assert render.bridge_service("bsd", "br-dmz.7") == "qemu_bridge_br_dmz_7"


def test_systemd_start_timeouts_cover_the_helpers_own_launch_timeout():
    from qemu_init.runtime.control import LAUNCH_TIMEOUT
    assert services.start_timeout() > LAUNCH_TIMEOUT


def test_systemd_stop_timeout_covers_stopdelay_and_the_forced_steps():
    for stopdelay in (1, 40, 300):
        assert services.stop_timeout(stopdelay) >= stopdelay + FORCED_STEPS


def test_helper_is_found_where_the_installation_put_it(monkeypatch, tmp_path):
    python = tmp_path / "venv/bin/python3"
    python.parent.mkdir(parents=True)
    monkeypatch.setattr("sys.executable", str(python))
    monkeypatch.setattr(sites, "read_layout", lambda: Layout())
    assert sites.helper_command() == (str(python), "-m", "qemu_init.runtime.helper")
    helper = python.parent / "qemu-init-helper"
    helper.write_text("#!/bin/sh\n")
    helper.chmod(0o755)
    assert sites.helper_command() == (str(helper),)  # a venv's console script
    # `make install` records its BINDIR: the package itself is in a private folder there
    monkeypatch.setattr(sites, "read_layout", lambda: Layout(prefix="/usr/local", bindir="/usr/local/bin"))
    assert sites.helper_command() == ("/usr/local/bin/qemu-init-helper",)
    assert sites.cli_command(Paths.for_layout(Layout(), "/srv/x")) == (
        "/usr/local/bin/qemu-init", "--root", "/srv/x")


@pytest.mark.parametrize("script", sorted(GOLDEN.glob("*/bsd/*")), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_freebsd_rcd_structure(script):
    """The shape the FreeBSD rc-scripting article asks for (linted in tests/e2e/test_scripts_lint.py;
    run under a model of rc.subr, and FreeBSD's own where a copy is at hand, in tests/e2e/test_freebsd.py)."""
    lines = script.read_text().splitlines()
    if script.name.startswith("qemu-if"):  # tap scripts QEMU runs, not rc.d services
        return
    head = [line for line in lines if line.startswith("# ") and ":" in line]
    provide = [line.split(": ", 1)[1] for line in head if line.startswith("# PROVIDE: ")]
    assert provide == [script.name]
    assert any(line.startswith("# REQUIRE: ") for line in head)
    assert "# KEYWORD: shutdown" in lines
    code = [line for line in lines if line and not line.startswith("#")]
    assert code[0] == ". /etc/rc.subr"
    assert f"name={script.name}" in code and f"rcvar={script.name}_enable" in code
    for cmd in ("start_cmd", "stop_cmd", "status_cmd"):
        assert any(line.startswith(cmd + "=") for line in code), cmd
    load = code.index('load_rc_config "$name"')
    default = code.index(f': "${{{script.name}_enable:=NO}}"')
    assert load < default, "defaults come after load_rc_config, so rc.conf wins"
    guest = "qemu_helper() {" in code  # a guest's script, not qemud's or a bridge's
    assert code[-1] == ('run_rc_command "$@"' if guest else 'run_rc_command "$1"')  # monitor's words
    assert not any("command_args" in line for line in code), "rc.subr evals command_args"
    extra = [w for line in code if line.startswith("extra_commands=") for w in line.split("=", 1)[1].strip('"').split()]
    if guest:
        assert {"monitor", "powerdown", "pause", "resume", "reset"} <= set(extra)
    assert "status" in extra  # rc.subr before FreeBSD 14 offers status only so (or with procname)
    for word in set(extra) - {"status"}:  # rc.subr runs ${word}_cmd for each: each names a function of the script
        assert f'{word}_cmd="${{name}}_{word}"' in code and f"{script.name}_{word}() {{" in code, word
