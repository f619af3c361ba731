"""The helper's options are defined once (runtime/helperargs.py): the scripts of all four init
systems, the helper's parser, GuestControl and the install record all follow that one table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import inprocess

from qemu_init import helpercalls, install, quoting, render
from qemu_init.inventory import Inventory
from qemu_init.paths import Layout, Paths
from qemu_init.runtime import control, helper, helperargs

from test_golden import GOLDEN, golden_site

CASES = ["full", "hostile", "minimal", "runas"]
VERBS = ("start", "stop", "status", "pause", "resume", "reset", "monitor")


def _fields(verb: str, values: dict) -> dict:
    """What of ``values`` the helper gets for ``verb``."""
    wanted = {"name"} | {o.field for o, _ in helperargs.options(verb) if o.source is not None}
    out = {k: v for k, v in values.items() if k in wanted}
    if "rcfile" not in wanted:
        out.pop("sources", None)
    if verb == "stop":  # the stop names each tap only: deleting it needs no bridge
        out["taps"] = tuple((tap, "") for tap, _ in out.get("taps", ()))
    return out


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("verb", VERBS)
def test_every_call_a_script_makes_parses_back_to_what_it_was_built_from(case, verb):
    for info in golden_site(GOLDEN / case).guests:
        values = helpercalls.values(info.guest, info.plan)
        words = helperargs.words(verb, values)
        assert "--" not in words
        parsed = helperargs.parse(words)
        expected = _fields(verb, values)
        assert {k: v for k, v in parsed.items() if k in expected} == expected
        if verb == "start":  # with QEMU's command line after "--", through the helper itself
            gc = _through_the_helper(words + ["--", *info.plan.argv])
            # what only a stop takes (--onshutdown, --savetime) keeps its default
            assert gc == control.GuestControl(**_fields("start", values), argv=info.plan.argv)


def _through_the_helper(argv):
    seen = []
    real = control.start
    control.start = lambda gc: seen.append(gc) or 0
    try:
        assert helper.main(argv) == 0
    finally:
        control.start = real
    return seen[0]


def test_the_rcfile_carries_its_digest_instead_of_a_second_source():
    info = next(i for i in golden_site(GOLDEN / "full").guests if i.guest.cfgfile)
    words = helperargs.words("start", helpercalls.values(info.guest, info.plan))
    rc = info.guest.rcfile
    assert f"{rc.path}={rc.sha256}" == words[words.index("--rcfile") + 1]
    sources = [words[i + 1] for i, w in enumerate(words) if w == "--source"]
    assert all(not s.startswith(rc.path + "=") for s in sources) and len(sources) == 1


def test_display_text_stays_out_of_the_command_line():
    for case in CASES:
        for info in golden_site(GOLDEN / case).guests:
            for verb in VERBS:
                words = helperargs.words(verb, helpercalls.values(info.guest, info.plan))
                assert not any("(port" in w or w.startswith(("tcp ", "unix ")) or w == "off" for w in words), words


def test_scripts_made_before_the_rcfile_carried_its_digest_still_parse():
    """Installed scripts outlive an upgrade until the next install: the old words still work."""
    digest = "ab" * 32
    parsed = helperargs.parse(["start", "vm1", "--pidfile", "P", "--qmp", "S", "--lock", "K", "--log", "L",
                               "--runas", "root", "--rcfile", "/g/vm1-qemud.rc", "--source", f"/g/vm1-qemud.rc={digest}",
                               "--vnc", "127.0.0.1:5 (port 5905)", "--monitor", "tcp 127.0.0.1:30320"])
    assert parsed["rcfile"] == "/g/vm1-qemud.rc" and parsed["sources"] == (("/g/vm1-qemud.rc", digest),)
    from qemu_init.runtime.status import monitor_text, vnc_text
    assert vnc_text(parsed["vnc"]) == "127.0.0.1:5 (port 5905)"
    assert monitor_text(parsed["monitor"]) == "tcp 127.0.0.1:30320"


def test_values_starting_with_a_dash_are_one_word():
    lines = helperargs.lines("start", {"name": "vm1", "precmd": "-x", "postcmd": "echo -x"})
    assert ["--precmd=-x"] in lines and ["--postcmd", "echo -x"] in lines
    assert helperargs.parse(helperargs.words("start", {"name": "vm1", "pidfile": "P", "qmp": "S", "lock": "K",
                                                      "log": "L", "runas": "u", "precmd": "-x"}))["precmd"] == "-x"


def test_an_option_added_to_the_table_reaches_all_four_init_systems_and_the_parser(monkeypatch):
    """Acceptance (issue 13): one row, and every script passes it and the helper takes it."""
    row = helperargs.Option("--colour", "desc", ("start", "stop", "status!"), "text", False, "", "C",
                            "a test option", "guest.desc")
    monkeypatch.setattr(helperargs, "OPTIONS", helperargs.OPTIONS + [row])
    site = golden_site(GOLDEN / "full")
    web1 = next(i for i in site.guests if i.guest.name == "Web1")
    assert web1.guest.desc
    for init in render.INIT_SYSTEMS:
        text = next(f.text for f in render.guest_files(site, web1, init))
        found = re.findall(r"^\s*--colour (.*?)(?: \\)?$", text, re.M)
        calls = 2 if init == "systemd" else 3  # a unit has no status verb: ExecStart, ExecStop
        assert len(found) == calls, (init, found)
        assert all(quoting.unit(web1.guest.desc) in f or quoting.sh(web1.guest.desc) in f for f in found)
    parser = helper._parser("status")
    args = parser.parse_args(["status", "vm1", "--pidfile", "P", "--qmp", "S", "--runas", "u", "--colour", "red"])
    assert args.desc == "red"
    with pytest.raises(SystemExit):  # required for status, as its row says
        helper._parser("status").parse_args(["status", "vm1", "--pidfile", "P", "--qmp", "S", "--runas", "u"])
    assert helperargs.parse(["stop", "vm1", "--pidfile", "P", "--qmp", "S", "--lock", "K", "--log", "L",
                             "--runas", "u", "--stopdelay", "5", "--colour", "blue"])["desc"] == "blue"


def test_guest_control_has_a_field_for_every_option_a_script_passes():
    fields = set(control.GuestControl._fields)
    assert {o.field for o in helperargs.OPTIONS if o.source is not None} <= fields
    assert control.GuestControl("vm1").stopdelay == helperargs.control_fields()["stopdelay"]


RC = "NAME={name}\nTGTARCH=qemu-system-x86_64\nKVM=no\n{extra}"


def test_a_guest_whose_files_went_bad_is_stopped_as_its_installed_script_says(tmp_path):
    """bare_control reads the stop command install recorded, through the helper's own parser."""
    vms, root = tmp_path / "vms", tmp_path / "root"
    vms.mkdir()
    rc = vms / "odd1-qemud.rc"
    rc.write_text(RC.format(name="odd1", extra="STOPDELAY=77\nRUNAS=root\nBRIDGE=br9\n"))
    done = inprocess.run(["--root", str(root), "register", str(vms)])
    assert done.returncode == 0, done.stderr
    inventory = Inventory(Paths.for_layout(Layout(), str(root)))
    before = inventory.bare_control("odd1")  # nothing installed yet: the defaults
    assert (before.stopdelay, before.runas, before.taps) == (40, "qemud", ())
    install.install(inventory, "sysv")
    rc.write_text("NAME=odd1\nRAM=lots\n")
    gc = Inventory(inventory.paths).bare_control("odd1")
    assert (gc.stopdelay, gc.runas, gc.taps) == (77, "root", (("qi1n0", ""),))
    assert (gc.pidfile, gc.lock) == (inventory.paths.pidfile("odd1"), inventory.paths.lock("odd1"))
    assert Path(inventory.paths.initdir, "qemu-odd1").exists()


def _argparse_reads(argv):
    """What the helper's argparse parser makes of ``argv`` (None: it refuses it)."""
    try:
        args, extra = helper._parser(argv[0]).parse_known_args(argv)
    except SystemExit:
        return None
    return None if extra else vars(args)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("verb", helperargs.FAST_VERBS)
def test_the_fast_reading_of_every_scripts_call_is_argparses(case, verb):
    """helperargs.fast reads the scripts' start, stop and status without argparse (~10 ms of
    every helper run): for every call a script makes, what argparse reads, field for field."""
    for info in golden_site(GOLDEN / case).guests:
        words = helperargs.words(verb, helpercalls.values(info.guest, info.plan))
        fast = helperargs.fast(words)
        if any(w.startswith("--") and "=" in w for w in words):  # a value starting with "-"
            assert fast is None
            continue
        assert fast is not None, words
        read = _argparse_reads(words)
        assert {k: read[k] for k in vars(fast)} == vars(fast), words


BASE = ["status", "vm1", "--pidfile", "P", "--qmp", "S", "--runas", "u"]


@pytest.mark.parametrize("argv", [
    BASE[:1] + ["--help"], BASE[:2], BASE[:-2],                 # help; required options missing
    BASE + ["--vnc"], BASE + ["--vnc", "-x"],                     # a value missing, or one like an option
    BASE + ["--pid", "Q"], BASE + ["--pidfile=Q"],                # an abbreviation; --option=VALUE
    BASE + ["--pidfile", "Q"], BASE + ["extra"], BASE + ["--nope", "1"],  # twice; another word; unknown
    ["status", "--pidfile", "P", "vm1", "--qmp", "S", "--runas", "u"],    # an option before NAME
    ["stop", "vm1", "--pidfile", "P", "--qmp", "S", "--lock", "K", "--log", "L", "--runas", "u",
     "--stopdelay", "soon"],                                       # not a number of seconds
    ["stop", "vm1", "--pidfile", "P", "--qmp", "S", "--lock", "K", "--log", "L", "--runas", "u",
     "--stopdelay", "5", "-q", "--force", "--tap", "t0", "--tap", "t1=br0"],   # flags, repeats
    ["monitor", "vm1", "--qmp", "S", "info", "status"], ["pause", "vm1", "--qmp", "S"],  # argparse's verbs
    ["start", "vm1", "--pidfile", "P", "--qmp", "S", "--lock", "K", "--log", "L", "--runas", "u"],  # no optional one
    BASE + ["--agent", "-x"],                                      # a retired option's value like an option
])
def test_the_fast_reading_leaves_to_argparse_what_it_does_not_read_the_same(argv):
    fast = helperargs.fast(argv)
    if fast is not None:
        read = _argparse_reads(argv)
        assert read is not None and {k: read[k] for k in vars(fast)} == vars(fast)
        helperargs.values_of(fast.action, fast)  # and makes GuestControl fields as argparse's does


def test_a_good_start_or_stop_is_read_without_importing_argparse():
    import subprocess
    import sys
    code = ("import sys\nfrom qemu_init.runtime import helperargs\n"
            "read = helperargs.fast(['start', 'vm1', '--pidfile', 'P', '--qmp', 'S', '--lock', 'K', '--log', 'L',"
            " '--runas', 'u', '--stopdelay', '5', '--source', 'F=' + 'a' * 64])\n"
            "print(read is not None, 'argparse' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "True False", done.stdout + done.stderr


def test_a_scripts_status_runs_without_importing_argparse(tmp_path):
    import subprocess
    import sys
    code = ("import sys\nfrom qemu_init.runtime import helper\n"
            f"code = helper.main(['status', 'vm1', '--pidfile', {str(tmp_path / 'vm1.pid')!r}, '--qmp', 'S',"
            " '--runas', 'root'])\nprint(code, 'argparse' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.splitlines()[-1] == "3 False", done.stdout + done.stderr


def test_a_status_from_a_script_installed_before_still_reads_its_retired_agent_option():
    """status asked the guest agent once (--agent); a script installed then passes it until the
    next install: read, and ignored, by both readings."""
    argv = BASE + ["--agent", "/run/qemu-init/vm1.agent"]
    fast, read = helperargs.fast(argv), _argparse_reads(argv)
    assert fast is not None and read is not None
    assert "agent" not in vars(fast) and {k: read[k] for k in vars(fast)} == vars(fast)
    assert "--agent" not in helperargs.words("status", {"name": "vm1", "pidfile": "P", "qmp": "S", "runas": "u",
                                                        "agent": "/run/qemu-init/vm1.agent"})
