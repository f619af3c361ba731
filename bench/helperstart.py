"""(6) The runtime helper's own start-up against a bare interpreter.

Two set-ups side by side:

* installed: qemu_init laid out as ``make install`` does (``make stage``: a copy of the package
  in a private folder, byte-compiled with ``--invalidation-mode checked-hash``, the launchers),
  run by the system's ``/usr/bin/python3``: what a host runs, and what every other section runs
  (kit.install());
* venv: ``.venv/bin/qemu-init-helper``, the tree's editable install (``make venv``). The venv's
  interpreter also loads the editable-install finder at every start (site), which costs
  ~10 ms more than a bare interpreter even for ``-c pass``.

Plus ``python -X importtime`` of the installed helper's ``status`` (median per module over
several runs) and an in-process split: imports vs the rest of ``main()``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import kit
from kit import PY, SYSTEM_PYTHON, Samples, Section, cli, guestkit, release, round_robin, sandbox, say, timed

SPLIT = """
import json, sys, time
t0 = time.perf_counter()
from qemu_init.runtime.helper import main
t1 = time.perf_counter()
import io, contextlib
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
t2 = time.perf_counter()
sys.stderr.write(json.dumps([t1 - t0, t2 - t1, code]) + "\\n")
"""


def installed_env() -> Dict[str, str]:
    """The environment of a host: no pyc prefix, bytecode used as shipped."""
    env = dict(os.environ)
    env.pop("PYTHONPYCACHEPREFIX", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def install_copy() -> Tuple[Path, Path]:
    """qemu_init as make install lays it out (kit.install(), made once per run): (LIBDIR, the
    qemu-init-helper launcher)."""
    bindir = kit.installed_bin() or kit.install()
    return bindir.parent / "lib", bindir / "qemu-init-helper"


def parse_importtime(text: str) -> List[Tuple[str, int, int, int]]:
    """(module, self µs, cumulative µs, depth) per ``-X importtime`` line."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:"):].split("|")
        self_us, cum_us, raw = int(parts[0]), int(parts[1]), parts[2]
        stripped = raw.lstrip(" ")
        depth = (len(raw) - len(stripped) - 1) // 2
        rows.append((stripped.strip(), self_us, cum_us, depth))
    return rows


def importtime(argv: List[str], baseline: List[str], runs: int, env: Dict[str, str]) -> Dict[str, Dict[str, List[float]]]:
    """Self and cumulative import time per module (seconds, one value per run), for modules not
    already imported by ``baseline`` (the bare interpreter); key "(total)" sums the top-level ones."""
    base = {m for m, *_ in parse_importtime(subprocess.run(baseline, capture_output=True, text=True,
                                                              env=env).stderr)}
    per: Dict[str, Dict[str, List[float]]] = {}
    for _ in range(runs):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        rows = [r for r in parse_importtime(proc.stderr) if r[0] not in base]
        total = sum(cum for _, _, cum, depth in rows if depth == 0) / 1e6
        per.setdefault("(total)", {"self": [], "cum": []})
        per["(total)"]["self"].append(total)
        per["(total)"]["cum"].append(total)
        for name, self_us, cum_us, _ in rows:
            entry = per.setdefault(name, {"self": [], "cum": []})
            entry["self"].append(self_us / 1e6)
            entry["cum"].append(cum_us / 1e6)
    return per


def run(section: Section, quick: bool) -> None:
    repeats = 6 if quick else 12
    box = sandbox("helper")
    try:
        # --runas: the default RUNAS, as a generated script passes it
        status_args = ["status", "benchx", "--pidfile", str(box / "benchx.pid"), "--qmp", str(box / "benchx.qmp"),
                       "--runas", guestkit.GUEST_USER]
        have_system = not kit.installable()
        env_inst = installed_env()
        variants = {}
        if have_system:
            lib, launcher = install_copy()
            variants.update({
                "python3 -c pass (/usr/bin/python3)": lambda: timed([SYSTEM_PYTHON, "-c", "pass"], env=env_inst),
                "installed helper: status of a stopped guest": lambda: timed([str(launcher), *status_args], ok=(3,),
                                                                              env=env_inst),
                "installed helper: --help": lambda: timed([str(launcher), "--help"], env=env_inst),
            })
        else:
            section.notes.append(f"{kit.installable()}: the installed-layout rows were skipped")
        variants.update({
            "venv python -c pass": lambda: timed([PY, "-c", "pass"]),
            "venv qemu-init-helper status of a stopped guest": lambda: timed([str(kit.BIN / "qemu-init-helper"),
                                                                                *status_args], ok=(3,)),
            "venv python -m qemu_init.runtime.helper --help": lambda: timed([PY, "-m", "qemu_init.runtime.helper",
                                                                             "--help"]),
            "qemu-init --version (the Typer CLI, for comparison)": lambda: timed([*cli(), "--version"]),
        })
        say(f"  helper start-up: {repeats} rounds of {len(variants)} variants (×3)")
        samples = Samples()
        round_robin(variants, repeats, samples, weights={k: 3 for k in variants})
        for name in variants:
            section.measure(name, samples.get(name))
        if have_system:
            bare = samples.median("python3 -c pass (/usr/bin/python3)")
            status = samples.median("installed helper: status of a stopped guest")
            section.ratio("installed helper status (stopped) / python3 -c pass", status / bare)
            section.ratio("installed helper status (stopped) − python3 -c pass", status - bare, unit="s")
            section.ratio("installed helper --help / python3 -c pass",
                          samples.median("installed helper: --help") / bare)
        vbare = samples.median("venv python -c pass")
        section.ratio("venv helper status (stopped) / venv python -c pass",
                      samples.median("venv qemu-init-helper status of a stopped guest") / vbare)
        section.ratio("venv helper --help / venv python -c pass",
                      samples.median("venv python -m qemu_init.runtime.helper --help") / vbare)

        if have_system:
            # where the time goes: imports (by module) and the rest of main()
            runs = 5 if quick else 9
            times = importtime([SYSTEM_PYTHON, "-X", "importtime", str(launcher), *status_args],
                               [SYSTEM_PYTHON, "-X", "importtime", "-c", "pass"], runs, env_inst)
            total = times.pop("(total)")
            section.measure("-X importtime: all imports of the installed helper's status", total["cum"])
            watch = ["qemu_init.runtime.helper", "qemu_init.errors", "dataclasses", "inspect", "typing",
                     "qemu_init.runtime.control", "qemu_init.runtime.proc", "argparse", "shutil"]
            for name in watch:
                if name in times:
                    section.measure(f"-X importtime: {name} (cumulative)", times[name]["cum"])
            own = {m: statistics.median(v["self"]) for m, v in times.items()}
            top = sorted(own.items(), key=lambda kv: kv[1], reverse=True)[:8]
            section.notes.append("`-X importtime` inflates every figure (it times itself); read them "
                                 "relative to each other. Installed helper `status`, imports by own (self) "
                                 f"time, medians of {runs} runs: " + ", ".join(f"{m} {v * 1000:.1f} ms" for m, v in top))
            split_imp, split_main = [], []
            for _ in range(runs):
                proc = subprocess.run([SYSTEM_PYTHON, "-c", SPLIT, *status_args], capture_output=True, text=True,
                                      env={**env_inst, "PYTHONPATH": str(lib)})
                imp, main, _ = json.loads(proc.stderr.strip().splitlines()[-1])
                split_imp.append(imp)
                split_main.append(main)
            section.measure("in process: import qemu_init.runtime.helper", split_imp)
            section.measure("in process: main(status …) after the import (its command line read, the probe)", split_main)
    finally:
        release(box)
