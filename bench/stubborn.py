"""(2) Stubborn guests: 4 guests that ignore the power button (QEMU in its BIOS), STOPDELAY S,
stopped together by ``qemud stop``. The stop sequence is: power button (resent) until S, then
QMP quit; the total should be S plus a little, not 4 × S.
"""

from __future__ import annotations

from kit import Samples, Section, guestkit, qi, qi_timed, release, sandbox, say
from scripts import Guests

COUNT = 4
DELAY = 5


def run(section: Section, quick: bool) -> None:
    repeats = 1 if quick else 2
    g = Guests(sandbox("stub"), "MINSTOPDELAY=1\n")
    try:
        names = [f"sb{i}a" for i in range(1, COUNT + 1)]
        for name in names:
            g.add(name, rc=f"RAM=64M\nSTOPDELAY={DELAY}\n")
        g.register()
        for name in names:
            qi(g.root, "autostart", "on", name)
        samples = Samples()
        for rep in range(repeats):
            qi(g.root, "qemud", "start", timeout=300)
            seconds = qi_timed(g.root, "qemud", "stop", timeout=300)
            samples.add("stop", seconds)
            say(f"  round {rep + 1}/{repeats}: {COUNT} stubborn guests stopped in {seconds:.2f} s (S = {DELAY} s)")
            if guestkit.qemu_processes(str(g.box)):
                section.notes.append("QEMU still running after `qemud stop` (killed)")
                g.kill()
        section.measure(f"qemud stop, {COUNT} stubborn guests, STOPDELAY S = {DELAY} s", samples.get("stop"))
        total = samples.median("stop")
        section.ratio("total − S", total - DELAY, 3.0, unit="s")
        section.ratio("total / S", total / DELAY)
    finally:
        release(g.box)
