"""Shared machinery of the benchmarks: sandboxes that are always cleaned up, timed commands,
statistics and the result records the table and the JSON copy are made from.

Standard library only (plus tests/guestkit, which is standard library too).
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import guestkit  # noqa: E402
from guestkit import qemuinit  # noqa: E402,F401  (re-exported to scripts.py)

BIN = Path(sys.executable).parent  # the venv's bin: qemu-init, qemu-init-helper
PY = sys.executable
SYSTEM_PYTHON = "/usr/bin/python3"
_INSTALLED: List[Path] = []  # the bin folder of install(), once it ran


def install() -> Path:
    """qemu-init as a host runs it, once per run: ``make stage`` (what ``make install`` copies:
    the package in a private folder, byte-compiled with checked hashes, the launchers) into a
    sandbox, run by the system's python3 with the system's jinja2 and typer, PREFIX=/usr as a
    distribution package has it. The venv's editable install costs every Python start there
    ~15 ms more (its import hook, loaded by site), which no installed host pays. From then on
    cli() and helper() — and so the scripts the bench generates — are this installation's."""
    box = sandbox("inst")
    stage = box / "stage"
    run(["make", "-s", "-C", str(REPO), "stage", f"PYTHON={SYSTEM_PYTHON}", f"STAGE={stage}", "INITSYS=none",
         "PREFIX=/usr", f"LIBDIR={stage / 'lib'}", f"BINDIR={stage / 'bin'}"])
    _INSTALLED.append(stage / "bin")
    return stage / "bin"


def installable() -> str:
    """Why install() cannot run here ("" if it can): the system python3 needs jinja2 and typer."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON}"
    found = subprocess.run([SYSTEM_PYTHON, "-c", "import jinja2, typer"], capture_output=True)
    return "" if found.returncode == 0 else f"{SYSTEM_PYTHON} lacks jinja2 or typer"


def installed_bin() -> Optional[Path]:
    """The bin folder of install(), None before it ran."""
    return _INSTALLED[0] if _INSTALLED else None


VENV: List[bool] = []  # run.py --venv: cli() and helper() are the venv's, whatever install() made


def _bin() -> Path:
    return BIN if VENV else installed_bin() or BIN


def cli() -> List[str]:
    """How a user runs qemu-init: the installation's launcher (install()), else the venv's."""
    script = _bin() / "qemu-init"
    return [str(script)] if os.access(script, os.X_OK) else [PY, "-m", "qemu_init"]


def helper() -> List[str]:
    """The runtime helper as the generated scripts call it (see sites.helper_command)."""
    script = _bin() / "qemu-init-helper"
    return [str(script)] if os.access(script, os.X_OK) else [PY, "-m", "qemu_init.runtime.helper"]


# -- sandboxes -------------------------------------------------------------------------------

_SANDBOXES: List[Path] = []


def sandbox(tag: str) -> Path:
    """A new short directory /tmp/qi-b<tag>-XXXX; every QEMU of it is killed and it is removed by
    cleanup(), also after Ctrl-C or a failure. A QEMU is the sandbox's when guestkit.processes()
    finds it: its command line names the sandbox, or its output goes to a file there (the
    helper's QEMU gets its sockets as descriptors: its command line may name no file of it)."""
    path = guestkit.short_tempdir(prefix=f"qi-b{tag}-")
    _SANDBOXES.append(path)
    return path


def release(path: Path) -> None:
    """Kill what runs in one sandbox and remove it (early, to keep the machine quiet)."""
    try:
        guestkit.kill_qemu(str(path))
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if path in _SANDBOXES:
            _SANDBOXES.remove(path)


def mark() -> int:
    """For cleanup(since=…): the sandboxes opened from now on."""
    return len(_SANDBOXES)


def cleanup(since: int = 0) -> List[str]:
    """Kill every QEMU of every sandbox still open (those opened after mark ``since``) and remove
    the sandboxes; returns problems."""
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
    problems = []
    try:
        for path in list(reversed(_SANDBOXES[since:])):
            try:
                release(path)
            except Exception as e:  # keep cleaning the others
                problems.append(f"{path}: {e}")
    finally:
        signal.signal(signal.SIGINT, old)
    return problems


def _terminate(signum, frame):  # type: ignore[no-untyped-def]
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the finally blocks clean up."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)


def bytecode_cache() -> Path:
    """Give every child a warm, private bytecode cache.

    A shell with PYTHONDONTWRITEBYTECODE=1 (as in this project's sessions) and a tree whose
    __pycache__ is missing or stale (modules edited since) makes each qemu-init run compile its
    modules from source again: tens of ms that an installed host, byte-compiled by make install,
    never pays. So children write and read their bytecode under a sandbox (PYTHONPYCACHEPREFIX),
    which the warm-up round fills; nothing is written into the source tree or the venv.
    """
    prefix = sandbox("pyc")
    os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return prefix


# -- running and timing ----------------------------------------------------------------------

class CommandFailed(RuntimeError):
    pass


def run(argv: Sequence[str], timeout: float = 300, ok: Sequence[int] = (0,), env: Optional[Dict[str, str]] = None,
        cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(map(str, argv)), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)
    if ok and proc.returncode not in ok:
        raise CommandFailed(f"{' '.join(map(str, argv))[:300]} exited {proc.returncode}:\n{proc.stderr[-2000:]}"
                            f"\n{proc.stdout[-1000:]}")
    if "Traceback" in proc.stderr:
        raise CommandFailed(f"{' '.join(map(str, argv))[:300]} printed a traceback:\n{proc.stderr[-3000:]}")
    return proc


def timed(argv: Sequence[str], **kwargs) -> float:
    """Wall-clock seconds of one command, from fork to its exit (output captured, not printed)."""
    began = time.perf_counter()
    run(argv, **kwargs)
    return time.perf_counter() - began


def qi(root: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return run([*cli(), "--root", str(root), *args], **kwargs)


def qi_timed(root: Path, *args: str, **kwargs) -> float:
    return timed([*cli(), "--root", str(root), *args], **kwargs)


# -- results ---------------------------------------------------------------------------------

@dataclass
class Measure:
    name: str
    samples: List[float]
    unit: str = "s"
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    def as_dict(self) -> dict:
        s = self.samples
        return {"name": self.name, "unit": self.unit, "median": self.median, "min": min(s) if s else None,
                "max": max(s) if s else None, "n": len(s), "samples": s, "note": self.note}


@dataclass
class Ratio:
    name: str
    value: float
    target: Optional[float] = None  # value must be <= target; None: informational
    note: str = ""
    unit: str = "×"  # "×" for a ratio, "s" for a difference in seconds

    @property
    def met(self) -> Optional[bool]:
        return None if self.target is None else self.value <= self.target

    def as_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "unit": self.unit, "target": self.target,
                "met": self.met, "note": self.note}


@dataclass
class Section:
    key: str
    title: str
    measures: List[Measure] = field(default_factory=list)
    ratios: List[Ratio] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0  # how long the section ran

    def measure(self, name: str, samples: List[float], unit: str = "s", note: str = "") -> Measure:
        m = Measure(name, list(samples), unit, note)
        self.measures.append(m)
        return m

    def ratio(self, name: str, value: float, target: Optional[float] = None, note: str = "",
              unit: str = "×") -> Ratio:
        r = Ratio(name, value, target, note, unit)
        self.ratios.append(r)
        return r

    def as_dict(self) -> dict:
        return {"key": self.key, "title": self.title, "measures": [m.as_dict() for m in self.measures],
                "ratios": [r.as_dict() for r in self.ratios], "notes": self.notes, "error": self.error,
                "seconds": self.seconds}


class Samples:
    """Interleaved repeats: ``add(name, seconds)`` in any order; ``get(name)`` the list."""

    def __init__(self) -> None:
        self.by_name: Dict[str, List[float]] = {}

    def add(self, name: str, value: float) -> None:
        self.by_name.setdefault(name, []).append(value)

    def get(self, name: str) -> List[float]:
        return self.by_name.get(name, [])

    def median(self, name: str) -> float:
        values = self.get(name)
        return statistics.median(values) if values else float("nan")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def round_robin(variants: Dict[str, Callable[[], float]], repeats: int, samples: Samples,
                warmup: int = 1, weights: Optional[Dict[str, int]] = None) -> None:
    """Run every variant ``repeats`` times, interleaved (A B C A B C …) so that the noise of a
    shared machine hits them alike; the first ``warmup`` rounds are not recorded. ``weights``
    runs cheap variants several times per round (median of many)."""
    names = list(variants)
    weights = weights or {}
    for i in range(warmup + repeats):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:  # rotated: no variant always runs first
            for _ in range(weights.get(name, 1)):
                value = variants[name]()
                if i >= warmup:
                    samples.add(name, value)
