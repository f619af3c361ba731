"""(3) Start overhead: the generated SysV script's ``start`` against QEMU launched by hand.

The floor is the cheapest equivalent a person would run by hand for the same guest: the QEMU
command line the script hands its helper, with the control and monitor sockets made by QEMU
itself at the same paths (``-chardev socket,id=qmp,path=…,server=on,wait=off`` instead of the
descriptors the helper binds and passes), ``-daemonize -pidfile …`` added and ``-sandbox …``
removed (QEMU's sandbox forbids the fork of ``-daemonize``), run as root (no drop to RUNAS);
see scripts.by_hand. The script's QEMU instead runs sandboxed as RUNAS, started by the helper,
which returns once QEMU answers ``qmp_capabilities``.

Main pair: one stubborn guest (BIOS only: nothing to load, so QEMU is ready as fast as it ever
will be and the overhead shows at its largest). Every variant runs until its command returned,
i.e. until QEMU has daemonized (by hand) or answered on QMP (the helper); then the guest is
killed and its pid file and sockets removed, untimed. For context, the same pair for the Linux
test guest (QEMU loads a kernel and an initramfs before it is ready), the helper alone as the
script calls it, the helper as ``make install`` lays it out (/usr/bin/python3, byte-compiled),
and the CLI. All variants run interleaved, rotated each round.
"""

from __future__ import annotations

import os

from kit import Samples, Section, cli, guestkit, release, round_robin, sandbox, say, timed
from scripts import Guests, by_hand, helper_args, script_vars

NAME = "st1"
LINUX = "lx1"
BASE = "QEMU by hand (daemonized, own sockets)"
LINUX_BASE = f"Linux test guest: {BASE}"
SCRIPT = "SysV script start"


def run(section: Section, quick: bool) -> None:
    import helperstart

    repeats = 5 if quick else 12
    box = sandbox("start")
    try:
        g = Guests(box)
        g.add(NAME, rc="RAM=128M\n")
        g.add(LINUX, guestkit.build_test_guest(), rc="RAM=256M\n")
        g.register()
        script = g.sysv_script(NAME)
        linux_script = g.sysv_script(LINUX)
        start_args = helper_args(script, "start")
        script_helper = script_vars(script)["HELPER"]  # exactly what the script runs
        qemu_argv = start_args[start_args.index("--") + 1:]
        if qemu_argv != g.argv(NAME):
            section.notes.append("the script's QEMU command line differs from `show --argv`; the script's was used")
        hand_argv = by_hand(start_args)
        linux_hand_argv = by_hand(helper_args(linux_script, "start"))
        section.notes.append("QEMU by hand: the script's QEMU command line with the QMP and monitor sockets made by "
                             "QEMU at the same paths (not passed as descriptors), `-daemonize -pidfile` added, "
                             "`-sandbox` removed (it forbids `-daemonize`), as root; the script's QEMU runs sandboxed "
                             "as RUNAS and counts as started once it answers `qmp_capabilities`")
        g.rundir().mkdir(parents=True, exist_ok=True)

        def variant(argv, name=NAME, env=None):
            def go() -> float:
                seconds = timed(argv, env=env)
                g.kill(name)
                return seconds
            return go

        variants = {
            BASE: variant(hand_argv),
            SCRIPT: variant([str(script), "start"]),
            "helper start (as the script calls it)": variant([script_helper, *start_args]),
        }
        installed = None
        if os.access(helperstart.SYSTEM_PYTHON, os.X_OK):
            _, installed = helperstart.install_copy(box / "inst", helperstart.SYSTEM_PYTHON)
            variants["installed helper start (make install layout, /usr/bin/python3)"] = variant(
                [str(installed), *start_args], env=helperstart.installed_env())
        variants.update({
            "qemu-init start NAME (CLI)": variant([*cli(), "--root", str(g.root), "start", NAME]),
            "SysV script, unknown action (the shell's part only)": lambda: timed([str(script), "bench-nothing"],
                                                                                 ok=(3,)),
            LINUX_BASE: variant(linux_hand_argv, LINUX),
            "Linux test guest: SysV script start": variant([str(linux_script), "start"], LINUX),
        })
        say(f"  start overhead: {repeats} rounds of {len(variants)} variants")
        samples = Samples()
        round_robin(variants, repeats, samples)
        for name in variants:
            section.measure(name, samples.get(name))
        base = samples.median(BASE)
        section.ratio("SysV script start / QEMU by hand", samples.median(SCRIPT) / base, 1.2)
        section.ratio("SysV script start − QEMU by hand (added time)", samples.median(SCRIPT) - base, unit="s")
        section.ratio("helper start / QEMU by hand", samples.median("helper start (as the script calls it)") / base)
        if installed:
            inst = samples.median("installed helper start (make install layout, /usr/bin/python3)")
            section.ratio("installed helper start / QEMU by hand", inst / base)
            section.ratio("installed helper start − QEMU by hand (added time)", inst - base, unit="s")
        section.ratio("qemu-init start / QEMU by hand", samples.median("qemu-init start NAME (CLI)") / base)
        lbase = samples.median(LINUX_BASE)
        section.ratio("Linux test guest: SysV script start / QEMU by hand",
                      samples.median("Linux test guest: SysV script start") / lbase)
    finally:
        release(box)
