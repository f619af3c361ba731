"""(5) Generation throughput: ``qemu-init generate --init all --output DIR`` over 100, 1000 and
2000 registered guests (4 init systems: a script per guest and init system, plus the host
service). Time per guest, and the growth 2000/1000 (linear: 2.0).

The guests are small but complete (rc-file and cfg-file, as tests/guestkit writes them). Their
registration and a ``check`` of all of them are timed too, for information. Repeats interleave
the sizes; the output folder is removed between runs, untimed. A breakdown timed in this process
shows which phase grows how (generate itself also writes and fsyncs every file).
"""

from __future__ import annotations

import shutil
import time

from kit import Samples, Section, qi_timed, release, sandbox, say
from scripts import Guests

SIZES = (100, 1000, 2000)


def _breakdown(section: Section, sets) -> None:
    """Where generate's time goes, timed in this process (no file written): loading, checking and
    planning every guest (sites.site), then rendering the four init systems. Uses qemu_init's
    internal API: skipped with a note if that changed."""
    try:
        from qemu_init import render, sites
        from qemu_init.inventory import Inventory
        from qemu_init.paths import host_paths
        phases = {}
        for n in (1000, 2000):
            inventory = Inventory(host_paths(str(sets[n].root)))
            began = time.perf_counter()
            site = sites.site(inventory)
            loaded = time.perf_counter()
            for init in render.INIT_SYSTEMS:
                render.render_site(site, init)
            done = time.perf_counter()
            section.measure(f"(in process) {n} guests: render.site() — load, check, plan", [loaded - began])
            section.measure(f"(in process) {n} guests: render_site() × 4 init systems", [done - loaded])
            phases[n] = (loaded - began, done - loaded)
        section.ratio("(in process) growth render.site() 2000/1000", phases[2000][0] / phases[1000][0])
        section.ratio("(in process) growth render_site() 2000/1000", phases[2000][1] / phases[1000][1])
    except Exception as e:  # internal API: informational only
        section.notes.append(f"in-process breakdown skipped: {type(e).__name__}: {e}")


def run(section: Section, quick: bool) -> None:
    repeats = 1 if quick else 2
    sets = {}
    try:
        samples = Samples()
        written = {}
        for n in SIZES:
            g = Guests(sandbox(f"gen{n}"))
            for i in range(1, n + 1):
                g.add(f"gen{i}a", rc="RAM=512M\nSMP=2\nDESC=benchmark guest\n")
            began = time.monotonic()
            g.register()
            samples.add(f"register {n}", time.monotonic() - began)
            say(f"  registered {n} guests in {time.monotonic() - began:.1f} s")
            sets[n] = g
        for rep in range(repeats):
            for n in SIZES if rep % 2 == 0 else reversed(SIZES):
                g = sets[n]
                out = g.box / "out"
                seconds = qi_timed(g.root, "generate", "--init", "all", "--output", str(out), timeout=1200)
                files = sum(1 for p in out.rglob("*") if p.is_file())
                shutil.rmtree(out)
                samples.add(f"generate {n}", seconds)
                say(f"  round {rep + 1}/{repeats}: generate --init all, {n} guests: {seconds:.2f} s ({files} files)")
                samples.add(f"check {n}", qi_timed(g.root, "check", timeout=1200, ok=(0, 1)))
                written[n] = files
        section.notes.append("files written per run: " + ", ".join(f"{n} guests → {written[n]}" for n in SIZES))
        for n in SIZES:
            section.measure(f"generate --init all, {n} guests", samples.get(f"generate {n}"))
        for n in SIZES:
            per = [s / n for s in samples.get(f"generate {n}")]
            section.measure(f"  per guest, {n} guests", per)
        for n in SIZES:
            section.measure(f"(info) check, {n} guests", samples.get(f"check {n}"))
        for n in SIZES:
            section.measure(f"(info, setup) register FOLDER, {n} guests", samples.get(f"register {n}"))
        t1, t2 = samples.median("generate 1000"), samples.median("generate 2000")
        section.ratio("growth generate(2000)/generate(1000)", t2 / t1, 2.2)
        section.ratio("growth generate(1000)/generate(100)", t1 / samples.median("generate 100"))
        section.ratio("marginal time per guest, 1000→2000", (t2 - t1) / 1000, unit="s")
        section.ratio("growth register(2000)/register(1000)",
                      samples.median("register 2000") / samples.median("register 1000"))
        _breakdown(section, sets)
    finally:
        for g in sets.values():
            release(g.box)
