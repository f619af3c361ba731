"""What each registered guest is doing, as `list`, `status --json` and `qemud status` say it: one
vocabulary of states, one record per guest (the --json schema in man/qemu-init.8).

Its own module, not the host service's: `list` and `status` must not pay for importing the
thread pool that `qemud stop` needs.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: ~4 ms of every command
if TYPE_CHECKING:
    from typing import Dict, List, Set

from .errors import ERROR
from .inventory import Inventory
from .registry import Entry

# The states every table and --json says: LSB's status codes, with QEMU's own
# run state for a guest that runs ("paused", "shutting down", "suspended", "crashed …"), and
# "saved" for a stopped guest whose saved state waits for its next start (ONSHUTDOWN=save).
STATES = {0: "running", 1: "dead", 3: "stopped", 4: "unknown"}
SAVED = "saved"  # LSB 3, as stopped


def guest_state(inventory: Inventory, entry: Entry, auto: Set[str]) -> Dict[str, object]:
    """One guest as `list`, `status` and `qemud status` show it (the --json schema in
    man/qemu-init.8): a guest whose files went bad is looked at through its pid file."""
    from .runtime import control

    loaded = inventory.load_entry(entry)
    errors = [p for p in inventory.host_problems + loaded.problems if p.level == ERROR]
    guest = loaded.guest
    invalid = guest is None or bool(errors)
    gc = inventory.bare_control(entry.name) if invalid else inventory.control(entry, guest)
    st = control.status(gc)
    running = st.running
    # QEMU's run state when it runs (paused, …); "saved" for a stopped guest with a saved state
    state = st.state if running or st.state == SAVED else STATES.get(st.code, "unknown")
    return {
        "number": entry.number, "name": entry.name, "folder": entry.folder,
        "description": guest.desc if guest is not None and not invalid else "",
        "autostart": entry.name.lower() in auto, "state": state, "pid": st.pid if running else None,
        "vnc": st.vnc or None, "monitor": st.monitor or None,
        "problem": (str(errors[0]) if errors else "cannot be loaded") if invalid else None,
    }


def states(inventory: Inventory) -> List[Dict[str, object]]:
    """Every registered guest, in registration order (guest_state)."""
    auto = {n.lower() for n in inventory.registry.autostart()}
    return [guest_state(inventory, e, auto) for e in inventory.entries()]
