"""(7) Scale (issue 15): 30 and 300 registered BIOS-only guests, a tenth of them running:
``check``, ``list``, ``qemud status`` and ``generate --init all`` at both sizes, interleaved,
and how each grows (target: at most linearly, 300 ≤ 11 × 30); then ``qemud stop`` of 5 and of
50 running stubborn guests with STOPDELAY S (target: all 50 gone within S + 1 s).

The guests sit in their BIOS (no kernel), 32 MB each: they ignore the power button, so the stop
of 50 is the power button for S seconds, then QMP ``quit`` for every one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time

from kit import Samples, Section, guestkit, qemuinit, qi, qi_timed, release, round_robin, sandbox, say
from scripts import Guests

SIZES = (30, 300)
STOPDELAY = 5
STUBBORN = (5, 50)


class Watch:
    """A second QMP monitor of a guest's QEMU on a socket listened on here (QEMU connects to it
    at start-up): QEMU reports each press of the power button there as a POWERDOWN event with
    its own wall-clock time stamp."""

    def __init__(self, path: str):
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        os.chmod(path, 0o777)  # QEMU runs as the system user
        self.server.listen(1)
        self.presses = []
        threading.Thread(target=self._watch, daemon=True).start()

    def cfg(self) -> str:
        return f"-chardev socket,id=watch,path={self.path}\n-mon chardev=watch,mode=control\n"

    def _watch(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as stream:
                stream.readline()
                stream.write(b'{"execute": "qmp_capabilities"}\n')
                stream.flush()
                for line in stream:
                    message = json.loads(line)
                    if message.get("event") == "POWERDOWN":
                        stamp = message["timestamp"]
                        self.presses.append(stamp["seconds"] + stamp["microseconds"] / 1e6)


def _set(n: int, watches: dict) -> Guests:
    g = Guests(sandbox(f"scale{n}"), f"MINSTOPDELAY={STOPDELAY}\n")
    for i in range(1, n + 1):
        name = f"sc{n}g{i}a"
        cfg = ""
        if n == SIZES[1] and i <= max(STUBBORN):
            watches[name] = Watch(str(g.box / f"{name}.watch"))
            cfg = watches[name].cfg()
        qemuinit.write_guest(g.vms, name, rc=f"RAM=32M\nSTOPDELAY={STOPDELAY}\n", cfg=cfg)
    g.register()
    return g


def _names(n: int, count: int):
    return [f"sc{n}g{i}a" for i in range(1, count + 1)]


def _start(g: Guests, names) -> None:
    qi(g.root, "autostart", "on", *names, timeout=600)
    qi(g.root, "qemud", "start", timeout=900)
    qi(g.root, "autostart", "off", *names, timeout=600)


def run(section: Section, quick: bool) -> None:
    repeats = 2 if quick else 3
    sets = {}
    watches: dict = {}
    try:
        for n in SIZES:
            say(f"  registering {n} guests, starting {n // 10}")
            sets[n] = _set(n, watches)
            _start(sets[n], _names(n, n // 10))

        def generate(g: Guests) -> float:
            out = g.box / "generated"
            shutil.rmtree(out, ignore_errors=True)
            return qi_timed(g.root, "generate", "--init", "all", "--output", str(out), timeout=900)

        commands = {
            "check": lambda g: qi_timed(g.root, "check", ok=(0, 1), timeout=600),
            "list": lambda g: qi_timed(g.root, "list", timeout=600),
            "qemud status": lambda g: qi_timed(g.root, "qemud", "status", ok=(0, 3), timeout=600),
            "generate --init all": generate,
        }
        variants = {f"{what}, {n} guests ({n // 10} running)": (lambda f=f, g=sets[n]: f(g))
                    for what, f in commands.items() for n in SIZES}
        say(f"  commands at 30 and 300 guests: {repeats} rounds")
        samples = Samples()
        round_robin(variants, repeats, samples)
        for name in variants:
            section.measure(name, samples.get(name))
        for what in commands:
            small = samples.median(f"{what}, {SIZES[0]} guests ({SIZES[0] // 10} running)")
            large = samples.median(f"{what}, {SIZES[1]} guests ({SIZES[1] // 10} running)")
            section.ratio(f"{what}: 300 guests / 30 guests", large / small, 11.0)
            section.ratio(f"{what}: time per further guest", (large - small) / (SIZES[1] - SIZES[0]), unit="s")

        g = sets[SIZES[1]]
        qi(g.root, "qemud", "stop", timeout=600)  # the running tenth: the stops below start clean
        stops = Samples()
        for count in STUBBORN:
            names = _names(SIZES[1], count)
            say(f"  starting {count} stubborn guests")
            _start(g, names)
            say(f"  qemud stop of {count} stubborn guests, STOPDELAY {STOPDELAY}")
            for name in names:
                watches[name].presses.clear()
            wall, began = time.time(), time.perf_counter()
            qi(g.root, "qemud", "stop", timeout=600)
            stops.add(str(count), time.perf_counter() - began)
            firsts = [watches[name].presses[0] - wall for name in names if watches[name].presses]
            if len(firsts) == count:
                stops.add(f"first {count}", min(firsts))
                stops.add(f"last {count}", max(firsts))
            else:
                section.notes.append(f"qemud stop of {count}: {count - len(firsts)} guest(s) reported no press")
            left = guestkit.qemu_processes(str(g.box))
            if left:
                section.notes.append(f"{len(left)} QEMU process(es) still running after qemud stop of {count}")
                g.kill()
        for count in STUBBORN:
            section.measure(f"qemud stop of {count} stubborn guests, STOPDELAY {STOPDELAY} s: all gone, command returned",
                            stops.get(str(count)))
        for count in STUBBORN:
            section.measure(f"qemud stop of {count}: first power button pressed (QEMU's POWERDOWN event)",
                            stops.get(f"first {count}"))
            section.measure(f"qemud stop of {count}: last guest's first press", stops.get(f"last {count}"))
        section.ratio("qemud stop of 50 stubborn: time beyond STOPDELAY (target ≤ 1 s)",
                      stops.median("50") - STOPDELAY, 1.0, unit="s")
        section.ratio("qemud stop: 50 stubborn / 5 stubborn", stops.median("50") / stops.median("5"))
    finally:
        for g in sets.values():
            release(g.box)
