"""How the status line and ``show`` describe a guest's VNC display and human monitor: from the
data the helper is given (``--vnc ADDR:N``, ``--monitor ADDR:PORT``, ``--hmp SOCKET``), so the
command line carries no display text and ``show`` and ``status`` say the same."""

from __future__ import annotations

VNC_BASE_PORT = 5900  # display N is TCP port 5900+N


def vnc_text(vnc: str) -> str:
    """``127.0.0.1:5`` -> ``127.0.0.1:5 (port 5905)``; "" -> "" (no VNC). Text that is no
    ADDR:N (a script generated before the helper got data) is shown as it is."""
    address, sep, number = vnc.rpartition(":")
    if sep and address and number.isdigit() and " " not in vnc:
        return f"{vnc} (port {VNC_BASE_PORT + int(number)})"
    return vnc


def monitor_text(monitor: str, hmp: str = "") -> str:
    """``127.0.0.1:30320`` -> ``tcp 127.0.0.1:30320``; else the unix socket ``hmp``; "" if
    neither (no monitor, or "off"). Older scripts' text ("tcp …") is shown as it is."""
    if monitor:
        return monitor if " " in monitor else f"tcp {monitor}"
    return f"unix {hmp}" if hmp else ""
