"""The table (Markdown, printed and written to results/README-table.md) and the JSON copy."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import List, Optional

from kit import Ratio, Section


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True,
                              timeout=10).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        qemu = "unknown"
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "qemu": qemu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "loadavg_at_start": load,
    }


def fmt_time(seconds: Optional[float]) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    if abs(seconds) < 1.0:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_value(value: Optional[float], unit: str) -> str:
    if unit == "s":
        return fmt_time(value)
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.2f}{' ' + unit if unit not in ('', '×') else ''}"


def verdict(r: Ratio) -> str:
    if r.target is None:
        return "(info)"
    return "target met" if r.met else "MISSED"


def section_lines(s: Section) -> List[str]:
    lines = [f"### {s.title}", ""]
    if s.error:
        lines += [f"**ERROR**: {s.error}", ""]
    if s.measures:
        lines += ["| measurement | median | min | max | n |", "|---|---:|---:|---:|---:|"]
        for m in s.measures:
            lo, hi = (min(m.samples), max(m.samples)) if m.samples else (None, None)
            lines.append(f"| {m.name} | {fmt_value(m.median, m.unit)} | {fmt_value(lo, m.unit)} | "
                         f"{fmt_value(hi, m.unit)} | {len(m.samples)} |")
        lines.append("")
    if s.ratios:
        lines += ["| ratio / figure | value | target | |", "|---|---:|---:|---|"]
        for r in s.ratios:
            target = "–" if r.target is None else f"≤ {fmt_value(r.target, r.unit)}"
            lines.append(f"| {r.name} | {fmt_value(r.value, r.unit)} | {target} | {verdict(r)} |")
        lines.append("")
    for note in s.notes:
        lines.append(f"- {note}")
    if s.notes:
        lines.append("")
    return lines


def summary_lines(sections: List[Section]) -> List[str]:
    lines = ["### Targets", "", "| target | value | |", "|---|---:|---|"]
    for s in sections:
        for r in s.ratios:
            if r.target is not None:
                lines.append(f"| {s.key}: {r.name} ≤ {fmt_value(r.target, r.unit)} | {fmt_value(r.value, r.unit)} | "
                             f"{verdict(r)} |")
        if s.error:
            lines.append(f"| {s.key} | – | ERROR |")
    return lines + [""]


def machine_lines(info: dict, args: str, seconds: float) -> List[str]:
    return [
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), {info['qemu']}, Python {info['python']}, "
        f"Linux {info['kernel']}; load average at start {info['loadavg_at_start']}.",
        f"qemu-init: {info.get('qemu-init', 'the venv')}.",
        f"Run: {info['date']}, `bench/run.py{(' ' + args) if args else ''}`, {seconds:.0f} s in all. "
        "Medians of interleaved repeats; ratios are of medians measured side by side in this one run.",
        "",
    ]


def table(sections: List[Section], info: dict, args: str, seconds: float) -> str:
    lines = ["## Benchmarks (`make bench`)", ""] + machine_lines(info, args, seconds)
    for s in sections:
        lines += section_lines(s)
    lines += summary_lines(sections)
    return "\n".join(lines)


def write(results_dir: Path, sections: List[Section], info: dict, args: List[str], seconds: float,
          text: str) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    data = {"machine": info, "args": args, "seconds": seconds, "sections": [s.as_dict() for s in sections]}

    def clean(value):  # NaN is not JSON
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    tmp = results_dir / "latest.json.tmp"
    tmp.write_text(json.dumps(clean(data), indent=1, ensure_ascii=False) + "\n")
    tmp.replace(results_dir / "latest.json")
    tmp = results_dir / "README-table.md.tmp"
    tmp.write_text(text + "\n")
    tmp.replace(results_dir / "README-table.md")


def strip_markdown(text: str) -> str:
    """The table for a terminal: Markdown kept (it reads fine), separator rows dropped."""
    return "\n".join(line for line in text.splitlines() if not re.fullmatch(r"\|[-:|]+\|", line))
