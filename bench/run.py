#!/usr/bin/env python3
"""Benchmarks of qemu-init (issues 7, 15): against libvirt, host stop, stubborn stop, start overhead, status latency,
generation throughput and the runtime helper's start-up, measured side by side in one run.

    bench/run.py [--quick] [--only NAME[,NAME…]] [--results DIR]

Prints a Markdown table (and progress on stderr), writes results/latest.json and
results/README-table.md. Every QEMU it starts belongs to a sandbox /tmp/qi-b*-… (its command
line or its output names it); all of them are killed and the sandboxes removed at the end, on
failure and on Ctrl-C. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _use_the_venv() -> None:
    """Run under the project's venv when started with another interpreter (qemu_init must be
    importable, and qemu-init / qemu-init-helper must sit beside the interpreter)."""
    venv_python = REPO / ".venv/bin/python"
    if Path(sys.prefix).resolve() == (REPO / ".venv").resolve() or not venv_python.exists():
        return
    os.execv(str(venv_python), [str(venv_python), str(Path(__file__).resolve()), *sys.argv[1:]])


_use_the_venv()
sys.path.insert(0, str(HERE))

import kit  # noqa: E402
import report  # noqa: E402

# Sections in the order they run and print; key -> (module, title). Cheap, CPU-bound ones first,
# while no guest runs; the heavy QEMU ones last.
SECTIONS = {
    "helper": ("helperstart", "6. Runtime helper start-up against a bare interpreter"),
    "status": ("status", "4. Status latency (50 registered guests, 10 running)"),
    "start": ("startup", "3. Start overhead: generated SysV script against QEMU by hand (stubborn guest)"),
    "generate": ("generation", "5. Generation: `generate --init all` for 100, 1000, 2000 guests"),
    "stubborn": ("stubborn", "2. Stubborn guests: 4 ignoring the power button, STOPDELAY S, stopped together"),
    "hoststop": ("hoststop", "1. Host stop: `qemud stop` of booted graceful Linux guests"),
    "peers": ("peers", "0. Against libvirt and the floors, side by side (issue 15's table)"),
    "scale": ("scale", "7. Scale: 30 and 300 registered guests; qemud stop of 50 stubborn guests"),
}
ORDER = ["helper", "status", "start", "generate", "peers", "scale", "stubborn", "hoststop"]
PRINT_ORDER = ["peers", "hoststop", "stubborn", "start", "status", "generate", "scale", "helper"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="sections: " + ", ".join(ORDER))
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes (~3 min)")
    parser.add_argument("--only", action="append", default=[], metavar="NAME[,NAME]",
                        help="run only these sections (repeatable)")
    parser.add_argument("--venv", action="store_true",
                        help="run the venv's editable qemu-init rather than a make-install copy")
    parser.add_argument("--results", default=str(HERE / "results"), metavar="DIR",
                        help="where latest.json and README-table.md go (default: bench/results)")
    args = parser.parse_args()
    only = [n for item in args.only for n in item.split(",") if n]
    unknown = [n for n in only if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    chosen = [k for k in ORDER if not only or k in only]

    kit.install_signal_handlers()
    info = report.machine()
    kit.bytecode_cache()
    if args.venv:
        kit.VENV.append(True)
    why = "--venv" if args.venv else kit.installable()
    if why:
        info["qemu-init"] = f"the venv's editable install ({why})"
    else:
        info["qemu-init"] = f"make stage, run by {kit.SYSTEM_PYTHON}: {kit.install()}"
    began = time.monotonic()
    sections = []
    interrupted = False
    try:
        for key in chosen:
            module_name, title = SECTIONS[key]
            section = kit.Section(key, title)
            sections.append(section)
            kit.say(f"== {key}: {title}")
            t0 = time.monotonic()
            opened = kit.mark()
            try:
                module = __import__(module_name)
                module.run(section, args.quick)
            except KeyboardInterrupt:
                section.error = "interrupted"
                raise
            except Exception as e:  # one failing section does not stop the others
                section.error = f"{type(e).__name__}: {e}".strip().replace("\n", " / ")[:600]
                kit.say(f"   {key} failed: {section.error}")
            finally:
                problems = kit.cleanup(since=opened)
                if problems:
                    section.notes.append("cleanup: " + "; ".join(problems))
                section.seconds = time.monotonic() - t0
                kit.say(f"   {key}: {section.seconds:.0f} s")
    except KeyboardInterrupt:
        interrupted = True
        kit.say("interrupted: cleaning up")
    finally:
        problems = kit.cleanup()
        if problems:
            kit.say("cleanup problems: " + "; ".join(problems))
    seconds = time.monotonic() - began
    ordered = sorted(sections, key=lambda s: PRINT_ORDER.index(s.key))
    argtext = " ".join(sys.argv[1:])
    text = report.table(ordered, info, argtext, seconds)
    if interrupted:
        text += "\n**interrupted**: incomplete run\n"
    print(report.strip_markdown(text))
    if not interrupted:
        report.write(Path(args.results), ordered, info, sys.argv[1:], seconds, text)
        kit.say(f"wrote {args.results}/latest.json and README-table.md")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
