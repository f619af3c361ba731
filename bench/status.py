"""(4) Status latency: one guest through the helper (as the generated script calls it), through
the script and through the CLI, against ``qemud status`` over 50 registered guests, 10 running.

Stubborn guests (BIOS only, 64 MB): only their QMP socket matters here.
"""

from __future__ import annotations

from kit import Samples, Section, cli, qi, release, round_robin, sandbox, say, timed
from scripts import Guests, helper_args, script_vars

TOTAL, RUNNING = 50, 10


def names(n: int):
    return [f"st{i}a" for i in range(1, n + 1)]  # a name must not end with the digit 0


def run(section: Section, quick: bool) -> None:
    repeats = 4 if quick else 8
    box = sandbox("status")
    try:
        g = Guests(box)
        all_names = names(TOTAL)
        for name in all_names:
            g.add(name, rc="RAM=64M\n")
        g.register()
        running, stopped = all_names[0], all_names[-1]
        for name in all_names[:RUNNING]:
            qi(g.root, "autostart", "on", name)
        say(f"  starting {RUNNING} of {TOTAL} guests (qemud start)")
        qi(g.root, "qemud", "start", timeout=300)
        run_script = g.sysv_script(running)
        stop_script = g.sysv_script(stopped)
        run_args = helper_args(run_script, "status")
        script_helper = script_vars(run_script)["HELPER"]  # exactly what the script runs
        stop_args = helper_args(stop_script, "status")
        cli_base = [*cli(), "--root", str(g.root)]

        variants = {
            "helper status, running guest (as the script calls it)": lambda: timed([script_helper, *run_args]),
            "helper status, stopped guest": lambda: timed([script_helper, *stop_args], ok=(3,)),
            "SysV script status, running guest": lambda: timed([str(run_script), "status"]),
            "qemu-init status NAME (CLI), running guest": lambda: timed([*cli_base, "status", running]),
            f"qemud status ({TOTAL} guests, {RUNNING} running)": lambda: timed([*cli_base, "qemud", "status"]),
        }
        weights = {k: 5 for k in list(variants)[:3]}  # the cheap ones: median of many
        say(f"  status: {repeats} rounds")
        samples = Samples()
        round_robin(variants, repeats, samples, weights=weights)
        for name in variants:
            section.measure(name, samples.get(name))
        one = samples.median("qemu-init status NAME (CLI), running guest")
        many = samples.median(f"qemud status ({TOTAL} guests, {RUNNING} running)")
        section.ratio(f"qemud status ({TOTAL}) / qemu-init status (1)", many / one, 2.0)
        section.ratio("qemud status: time per further guest", (many - one) / (TOTAL - 1), unit="s")
        section.ratio("SysV script status / helper status (running)",
                      samples.median("SysV script status, running guest")
                      / samples.median("helper status, running guest (as the script calls it)"))
        qi(g.root, "qemud", "stop", timeout=300)
    finally:
        release(box)
