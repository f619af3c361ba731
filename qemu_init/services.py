"""What the init systems are told about each service beyond its script: the unit file names and
the start and stop timeouts, from the helper's own waits (LAUNCH_TIMEOUT, a save's or restore's
time, STOPDELAY and the stop machine's forced steps) and a margin each.
"""

from __future__ import annotations

import math

from .checks import FORCED_STEPS
from .runtime.control import LAUNCH_TIMEOUT

# Seconds systemd waits beyond our own stop sequence before it signals QEMU itself.
STOP_MARGIN = 10
# Seconds systemd allows a guest's start beyond the helper's own wait for QEMU (LAUNCH_TIMEOUT):
# the lock, the checks, PRECMD and POSTCMD.
START_MARGIN = 30


# Service names: owner.guest_service, owner.bridge_service. Guest names are letters and digits; bridge names may hold "." and "-", which
# rc.conf variables (qemu_bridge_<br>_enable) cannot.
def unit_file(name: str) -> str:
    return name + ".service"


def start_timeout(savetime: int = 0) -> int:
    """systemd's TimeoutStartSec for one guest: the helper gives QEMU LAUNCH_TIMEOUT to come up,
    then a saved state ``savetime`` to load (the guest's save budget, runtime/savestate.budget),
    and systemd must not kill the start (and the QEMU with it) before the helper gives up."""
    return math.ceil(LAUNCH_TIMEOUT) + savetime + START_MARGIN


def stop_timeout(stopdelay: int) -> int:
    """systemd's TimeoutStopSec for a guest: the clean shutdown, the forced steps, a margin."""
    return stopdelay + FORCED_STEPS + STOP_MARGIN
