"""`qemu-init …` run in this process, as `python -m qemu_init` runs it: its exit code and what it
wrote on stdout and stderr (file descriptors 1 and 2 included, so a child it starts is heard too).

A fresh interpreter per command (Typer, Click and Jinja imported again each time) was most of
the unit suite's time; the command line's own start-up is tested where it matters
(test_cli_usage.py runs the real `python -m qemu_init`, tests/e2e run the installed commands).
"""

from __future__ import annotations

import contextlib
import io
import os
import runpy
import subprocess
import sys
import tempfile
import warnings
from typing import Sequence


def run(argv: Sequence[str]) -> subprocess.CompletedProcess:
    """``qemu-init ARGV...``; a CompletedProcess as subprocess.run(capture_output=True, text=True)
    would give."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err, \
            open(os.devnull) as stdin, _fds(out, err):
        saved = sys.argv, sys.stdin, sys.stdout, sys.stderr
        sys.argv, sys.stdin = ["qemu-init", *argv], stdin
        sys.stdout, sys.stderr = os.fdopen(os.dup(1), "w", buffering=1), os.fdopen(os.dup(2), "w", buffering=1)
        code = 0
        try:
            with warnings.catch_warnings():  # as a real run: deprecations are the libraries' business
                warnings.simplefilter("ignore", DeprecationWarning)
                runpy.run_module("qemu_init", run_name="__main__", alter_sys=True)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if isinstance(e.code, str):
                sys.stderr.write(e.code + "\n")
        finally:
            sys.stdout.close()
            sys.stderr.close()
            sys.argv, sys.stdin, sys.stdout, sys.stderr = saved
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(["qemu-init", *argv], code, out.read(), err.read())


@contextlib.contextmanager
def _fds(out: io.TextIOBase, err: io.TextIOBase):
    """File descriptors 1 and 2 on ``out`` and ``err`` for the duration."""
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
