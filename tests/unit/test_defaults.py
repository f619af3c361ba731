"""Every default lives in the key table (qemu_init/keys.py): the model, the helper and the
generated files take theirs from it (issue 13, acceptance 2)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from qemu_init import checks, config, keys, records
from qemu_init.cmdline import plan
from qemu_init.inventory import Inventory
from qemu_init.model import Host
from qemu_init.paths import Layout, Paths
from qemu_init.runtime import control, defaults, helper, helperargs
from qemu_init.runtime.stop import Timing

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "contrib"))
import mkfiles  # noqa: E402

FIELDS = {f.name.upper(): f.name for f in records.fields(Host) if f.name != "path"}


def _changed(monkeypatch, table, name, default):
    monkeypatch.setitem(table, name, records.replace(table[name], default=default))


def test_every_host_setting_is_a_key_and_takes_the_tables_default(tmp_path):
    assert set(FIELDS) == set(keys.HOST_KEYS)
    host = config.default_host()
    for key, field in FIELDS.items():
        assert getattr(host, field) == keys.default(keys.HOST_KEYS, key, getattr(host, field))
    missing, problems = config.load_host(str(tmp_path / "none.conf"))
    assert problems == [] and missing == records.replace(host, path=str(tmp_path / "none.conf"))


@pytest.mark.parametrize("with_conf", [False, True])
def test_a_host_default_changed_in_the_key_table_changes_everywhere(monkeypatch, tmp_path, with_conf):
    _changed(monkeypatch, keys.HOST_KEYS, "MONPORT", "40000")
    _changed(monkeypatch, keys.HOST_KEYS, "SYSUSR", "vmrunner")
    _changed(monkeypatch, keys.HOST_KEYS, "MINSTOPDELAY", "55")
    conf = tmp_path / "qemu-init.conf"
    if with_conf:
        conf.write_text("BRIDGE=br7\n")  # a file that sets something else
    host, problems = config.load_host(str(conf))
    assert problems == []
    assert (host.monport, host.sysusr, host.minstopdelay) == (40000, "vmrunner", 55)
    assert host.bridge == ("br7" if with_conf else "br0")

    rc = tmp_path / "vm1-qemud.rc"
    rc.write_text("NAME=vm1\nTGTARCH=qemu-system-x86_64\nMONITOR=inet\n")
    guest, problems = config.load_guest(str(rc), host)
    assert guest is not None, problems
    assert (guest.runas, guest.stopdelay) == ("vmrunner", 55)  # RUNAS and STOPDELAY follow the host
    paths = Paths.for_layout(Layout(), str(tmp_path / "root"))
    the_plan = plan(guest, 1, host, paths)
    assert "tcp:127.0.0.1:40000,server=on,wait=off" in the_plan.argv and the_plan.stopdelay == 55
    assert "#MONPORT=40000" in mkfiles.host_conf().splitlines()  # the installed, commented file

    Path(paths.etcdir).mkdir(parents=True, exist_ok=True)
    if with_conf:
        Path(paths.host_conf).write_text(conf.read_text())
    bare = Inventory(paths).bare_control("vm2")  # a guest seen without its files
    assert (bare.runas, bare.stopdelay) == ("vmrunner", 55)


def test_stopdelay_has_one_default_for_the_key_table_the_helper_and_guest_control():
    assert keys.default(keys.RC_KEYS, "STOPDELAY") == defaults.STOPDELAY
    assert control.GuestControl("vm1").stopdelay == defaults.STOPDELAY
    args = helper._parser("start").parse_args(["start", "vm1", "--pidfile", "P", "--qmp", "S", "--lock", "K",
                                               "--log", "L", "--runas", "u"])
    assert args.stopdelay == defaults.STOPDELAY
    assert helperargs.control_fields()["stopdelay"] == defaults.STOPDELAY


def test_an_rc_default_changed_in_the_key_table_reaches_the_guest(monkeypatch, tmp_path):
    _changed(monkeypatch, keys.RC_KEYS, "RAM", "3G")
    _changed(monkeypatch, keys.RC_KEYS, "MONITOR", "off")
    rc = tmp_path / "vm1-qemud.rc"
    rc.write_text("NAME=vm1\nTGTARCH=qemu-system-x86_64\nMONITOR=\n")  # set empty: the default too
    guest, problems = config.load_guest(str(rc), config.default_host())
    assert guest is not None, problems
    assert (guest.ram, guest.monitor) == ("3G", "off")


def test_minstopdelay_is_applied_by_one_rule():
    assert keys.stopdelay(10, 40) == 40 and keys.stopdelay(90, 40) == 90


def test_the_forced_steps_are_the_stop_machines_own():
    assert checks.FORCED_STEPS == math.ceil(Timing().forced)
