"""systemd: `systemd-analyze verify` accepts the generated units, and their stop timeouts leave the
helper its whole stop sequence.

No systemd runs as PID 1 here, so the units are checked, not started: verify loads each unit as
systemd would (syntax, Exec*= quoting and specifiers, dependencies among them, executables).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List

import pytest

from guestkit import run
from qemu_init import quoting
from qemu_init.checks import FORCED_STEPS, shutdown_time
from qemu_init.runtime.control import LAUNCH_TIMEOUT

ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="needs systemd-analyze")
GOLDEN = Path(__file__).resolve().parent.parent / "golden"


def settings(unit: Path) -> Dict[str, List[str]]:
    """KEY -> values of a unit file, continuation lines joined (the sections do not matter here)."""
    found: Dict[str, List[str]] = {}
    text = unit.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def install(box, *cases: str) -> List[Path]:
    """Register the golden cases' guests in the test root and install their units; the scripts the
    units run land in its ETCDIR, so every executable they name exists."""
    for case in cases:
        for source in (GOLDEN / case).glob("*-qemu*"):
            shutil.copy(source, box.vms)
    if (GOLDEN / cases[0] / "qemu-init.conf").exists():
        shutil.copy(GOLDEN / cases[0] / "qemu-init.conf", box.path("etc/qemu-init/qemu-init.conf"))
    box.qi("register", box.vms)
    box.qi("install", "--init", "systemd")
    return sorted(Path(box.path("etc/systemd/system")).glob("*.service"))


@pytest.mark.parametrize("cases", [("full",), ("minimal", "qemu91"), ("hostile",)], ids="+".join)
def test_systemd_analyze_verify_accepts_the_units(qiroot, cases):
    units = install(qiroot, *cases)
    assert units
    result = run(ANALYZE, "verify", "--man=no", *map(str, units))
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_stop_timeouts_cover_stopdelay_and_the_forced_steps(qiroot):
    units = {u.name: settings(u) for u in install(qiroot, "full")}
    delays = {}
    for name, unit in units.items():
        stop = " ".join(unit.get("ExecStop", []))
        if " stop " in stop and "--stopdelay" in stop:
            delay = int(stop.split("--stopdelay ", 1)[1].split()[0])
            delays[name] = delay
            assert unit["Type"] == ["forking"] and unit["PIDFile"], name
            assert int(unit["TimeoutStopSec"][0]) >= delay + FORCED_STEPS, name
    assert delays == {"qemu-web1.service": 120, "qemu-db1.service": 40}
    # the host service stops them with PARALLEL=2 from the host settings
    assert int(units["qemud.service"]["TimeoutStopSec"][0]) >= shutdown_time(list(delays.values()), 2)
    assert units["qemu-web1.service"]["Requires"] == [
        "qemu-bridge-br0.service qemu-bridge-br-dmz.service qemu-db1.service"]
    assert set(units["qemu-web1.service"]["After"][0].split()) >= {
        "qemu-bridge-br0.service", "qemu-bridge-br-dmz.service", "qemu-db1.service"}


def test_start_timeouts_and_kill_modes_never_cut_a_guest_short(qiroot):
    units = {u.name: settings(u) for u in install(qiroot, "full")}
    guests = [name for name in units if name.startswith("qemu-") and "bridge" not in name]
    assert guests
    for name in guests:
        assert int(units[name]["TimeoutStartSec"][0]) > LAUNCH_TIMEOUT, name
        # systemd signals the cgroup only after ExecStop (or TimeoutStopSec, checked above)
        assert units[name]["KillMode"] == ["control-group"], name
    # the host service: the helper's launch timeout a guest on top of the BOOTDELAYs, and QEMUs
    # in its cgroup are never signalled by systemd when `qemud start` fails or times out
    qemud = units["qemud.service"]
    assert int(qemud["TimeoutStartSec"][0]) >= len(guests) * LAUNCH_TIMEOUT
    assert qemud["KillMode"] == ["process"]
    assert qemud["Type"] == ["oneshot"] and qemud["RemainAfterExit"] == ["yes"]


NASTY = ["x\rBogusKey=1", "y\x1fBogusKey=2", "z\x7f\x85\u2028BogusKey=3\u2029", "tab\there", "$HOME 100%"]


def test_no_value_can_start_a_unit_line_of_its_own(tmp_path):
    """Every character systemd could end a line at is escaped: verify finds no extra key (and
    would, as the raw control shows: it warns about the unknown BogusKey)."""
    def verify(words):
        unit = tmp_path / "nasty.service"
        unit.write_bytes((f"[Unit]\nDescription={quoting.unittext(NASTY[0])}\n[Service]\nType=oneshot\n"
                          f"ExecStart=/bin/echo {words}\n").encode())
        return run(ANALYZE, "verify", "--man=no", str(unit))

    result = verify(quoting.unitjoin(NASTY))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    raw = verify(" ".join(NASTY))
    assert "BogusKey" in raw.stderr


def test_verify_catches_a_broken_unit(qiroot):
    """The check above can fail: a unit naming a missing executable is refused."""
    units = install(qiroot, "minimal")
    bad = Path(qiroot.path("bad.service"))
    bad.write_text(units[0].read_text().replace("ExecStart=/", "ExecStart=/no/such/", 1))
    result = run(ANALYZE, "verify", "--man=no", str(bad))
    assert result.returncode != 0 or result.stderr
