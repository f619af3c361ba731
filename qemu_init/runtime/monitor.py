"""The human monitor of a running guest: one command and its answer, or an interactive session.

Both go through QMP's ``human-monitor-command``, a connection per command: a session must not
lock out the stop or status that run meanwhile. No lock is taken (as status).
"""

from __future__ import annotations

import os
import sys

from ..errors import GuestError, QMPConnectError, QMPError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import Optional, TextIO

MONITOR_TIMEOUT = 30.0


def _hmp(qmp: str, command: str, timeout: float) -> str:
    from .qmp import QMP
    with QMP(qmp, timeout) as q:
        text = q.human(command)
    return text.replace("\r\n", "\n")


def monitor(gc, command: Optional[str] = None, timeout: float = MONITOR_TIMEOUT,  # type: ignore[no-untyped-def]
            stdin: Optional[TextIO] = None, stdout: Optional[TextIO] = None) -> int:
    """One human monitor command (its answer printed), or an interactive session without one.
    ``gc`` is anything with ``name`` and ``qmp`` (a control.GuestControl).

    In the session, ``exit`` or end of input leaves; everything else goes to QEMU, including
    ``quit``, which powers the guest off hard (asked for confirmation on a terminal)."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    if command is not None:
        try:
            text = _hmp(gc.qmp, command, timeout)
        except QMPConnectError as e:
            if os.path.exists(gc.qmp):
                raise GuestError(f"its control socket does not answer (is it running?): {e}", 1) from None
            raise GuestError("not running (no control socket)", 1) from None
        if text.startswith("unknown command:"):  # HMP's only way to say so: a line of text
            sys.stderr.write(f"qemu-init: {gc.name}: {text}")
            return 1
        stdout.write(text)
        return 0
    tty = stdin.isatty()
    if tty:
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
        stdout.write(f"{gc.name}: QEMU monitor. 'exit' or Ctrl-D leaves; "
                     "'quit' powers the guest off hard.\n")
    while True:
        if tty:
            try:
                line = input("(qemu) ")
            except EOFError:
                stdout.write("\n")
                return 0
        else:
            line = stdin.readline()
            if not line:
                return 0
        line = line.strip()
        if not line:
            continue
        if line == "exit":
            return 0
        quitting = line.split()[0] in ("quit", "q")
        if quitting and tty:
            answer = input(f"'quit' stops {gc.name} at once, like pulling the plug. Really? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                continue
        try:
            stdout.write(_hmp(gc.qmp, line, timeout))
            stdout.flush()
        except QMPConnectError as e:
            if quitting:
                return 0  # QEMU may close the connection before answering quit
            print(f"qemu-init: {gc.name}: {e}", file=sys.stderr)
            return 1
        except QMPError as e:
            print(f"qemu-init: {gc.name}: {e}", file=sys.stderr)
        if quitting:
            return 0
