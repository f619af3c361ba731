"""(1) Host stop: ``qemud stop`` of 1, 4 and 8 booted graceful guests, all at once (the default)
and one by one (PARALLEL=1).

The guests are the real Linux test guest (tests/guestkit), which powers off on the ACPI power
button in ~0.02 s once it printed QI-BOOTED. They are started with ``qemud start`` and the run
waits until every one printed QI-READY (which comes right after QI-BOOTED) before the stop is
timed: only the stop is measured. STOPDELAY is 30 s, far above what a graceful guest needs, so
no guest is ever forced off. Repeats are interleaved: repeat → size → mode, modes alternating.

A third mode gives the floor: no qemu-init at all, the benchmark itself presses every guest's
power button over QMP at once and waits (pidfd) until every QEMU has exited. On 2 cores, 8
software-emulated guests shutting down at the same time take longer than one, whatever stops
them; ``stop − floor`` is the share of qemu-init (its CLI start-up included).
"""

from __future__ import annotations

import json
import os
import select
import socket
import time

from kit import Samples, Section, guestkit, qi, qi_timed, release, sandbox, say
from scripts import Guests

SIZES = (1, 4, 8)
FLOOR = "floor: QMP power button by hand, no qemu-init"
MODES = {"parallel": "", "PARALLEL=1": "PARALLEL=1\n", FLOOR: ""}
HOST = "MINSTOPDELAY=3\n"
BOOT_TIMEOUT = 300.0


def _qmp(path: str, command: str) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        stream = sock.makefile("rwb")
        stream.readline()  # greeting
        for cmd in ("qmp_capabilities", command):
            stream.write(json.dumps({"execute": cmd}).encode() + b"\n")
            stream.flush()
            while b'"return"' not in (line := stream.readline()) and b'"error"' not in line:
                if not line:
                    raise ConnectionError(f"{path}: QMP closed before answering {cmd}")


def _floor(g: Guests, names) -> float:
    """Power button to every guest at once by hand; seconds until every QEMU exited."""
    fds = [os.pidfd_open(int(g.pidfile(name).read_text())) for name in names]
    try:
        began = time.perf_counter()
        for name in names:
            _qmp(str(g.rundir() / f"{name.lower()}.qmp"), "system_powerdown")
        left = set(fds)
        while left:
            ready = select.select(list(left), [], [], 60)[0]
            if not ready:
                raise TimeoutError("guests did not power off within 60 s")
            left.difference_update(ready)
        return time.perf_counter() - began
    finally:
        for fd in fds:
            os.close(fd)


def _boot(g: Guests, names, samples: Samples, label: str) -> None:
    for name in names:  # an empty console, QEMU's user's (it cannot create files in VMS, root's)
        guestkit.console_file(g.serial(name))
    began = time.monotonic()
    qi(g.root, "qemud", "start", timeout=600)
    samples.add(f"start {label}", time.monotonic() - began)
    for name in names:
        left = max(5.0, BOOT_TIMEOUT - (time.monotonic() - began))
        guestkit.wait_for_line(g.serial(name), "QI-READY", timeout=left)
    samples.add(f"boot {label}", time.monotonic() - began)


def run(section: Section, quick: bool) -> None:
    repeats = 1 if quick else 3
    guest = guestkit.build_test_guest()
    sets = {}
    try:
        for n in SIZES:
            g = Guests(sandbox(f"stop{n}"), HOST)
            names = [f"gr{n}n{i}" for i in range(1, n + 1)]
            for name in names:
                g.add(name, guest, rc="STOPDELAY=30\n")
            g.register()
            for name in names:
                qi(g.root, "autostart", "on", name)
            sets[n] = (g, names)

        samples = Samples()
        leftovers = 0
        for rep in range(repeats):
            for n in SIZES:
                g, names = sets[n]
                modes = list(MODES) if rep % 2 == 0 else list(reversed(MODES))
                for mode in modes:
                    g.host(HOST + MODES[mode])
                    label = f"{n} guest(s), {mode}"
                    say(f"  round {rep + 1}/{repeats}: {label}: booting")
                    _boot(g, names, samples, label)
                    if mode == FLOOR:
                        seconds = _floor(g, names)
                    else:
                        seconds = qi_timed(g.root, "qemud", "stop", timeout=600)
                    samples.add(label, seconds)
                    say(f"  round {rep + 1}/{repeats}: {label}: stopped in {seconds:.2f} s")
                    left = guestkit.qemu_processes(str(g.box))
                    if left:
                        leftovers += len(left)
                    g.kill()  # also the pid files and sockets a hand-stopped QEMU leaves

        for n in SIZES:
            for mode in MODES:
                what = mode if mode == FLOOR else f"qemud stop, {mode}"
                section.measure(f"{n} guest(s): {what}", samples.get(f"{n} guest(s), {mode}"))
        for n in SIZES:
            section.measure(f"(untimed setup) qemud start + boot to QI-READY, {n} guest(s)",
                            [v for mode in MODES for v in samples.get(f"boot {n} guest(s), {mode}")])
        one = samples.median("1 guest(s), parallel")
        section.ratio("stop(8)/stop(1), parallel", samples.median("8 guest(s), parallel") / one, 1.3)
        section.ratio("stop(4)/stop(1), parallel", samples.median("4 guest(s), parallel") / one)
        serial_one = samples.median("1 guest(s), PARALLEL=1")
        section.ratio("stop(8)/stop(1), PARALLEL=1", samples.median("8 guest(s), PARALLEL=1") / serial_one)
        section.ratio("stop(8): PARALLEL=1 / parallel",
                      samples.median("8 guest(s), PARALLEL=1") / samples.median("8 guest(s), parallel"))
        floor1, floor8 = samples.median(f"1 guest(s), {FLOOR}"), samples.median(f"8 guest(s), {FLOOR}")
        section.ratio("floor(8)/floor(1): the guests' own power-off, no qemu-init", floor8 / floor1)
        section.ratio("qemu-init's share, 1 guest: stop − floor", one - floor1, unit="s")
        section.ratio("qemu-init's share, 8 guests: stop − floor",
                      samples.median("8 guest(s), parallel") - floor8, unit="s")
        if leftovers:
            section.notes.append(f"{leftovers} QEMU process(es) were still running after `qemud stop` (killed)")
    finally:
        for g, _ in sets.values():
            release(g.box)
