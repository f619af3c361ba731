"""The host service ``qemud`` (SPEC §7): start the autostart guests, stop all guests, show them.

qemud decides when, the guests' own services do the work (``owner``): each guest is started
and stopped through its installed service, so boot runs the command line of the installed
script and the init system knows the guest runs (on systemd, in its own unit).

Stopping runs guests in parallel (bounded by PARALLEL), dependents before their dependencies,
so a host shutdown takes about as long as its slowest guest, not the sum of all of them.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Dict, List, Set, Tuple

from . import owner
from .errors import ERROR
from .inventory import Inventory
from .model import Guest
from .registry import Entry

Say = Callable[[str], None]
PROGRESS_EVERY = 5.0  # seconds between "waiting for …" lines


def _say(line: str) -> None:
    print(line, flush=True)


def _valid_guests(inventory: Inventory) -> Tuple[Dict[str, Tuple[Entry, Guest]], Dict[str, str]]:
    """Registered guests that load, by lower-case name; and why the others do not."""
    guests, broken = {}, {}
    for loaded in inventory.load_all():
        errors = [p for p in loaded.problems if p.level == ERROR]
        if loaded.guest is None or errors:
            broken[loaded.entry.name.lower()] = str(errors[0]) if errors else "cannot be loaded"
        else:
            guests[loaded.guest.name.lower()] = (loaded.entry, loaded.guest)
    return guests, broken


def start_order(autostart: List[str], guests: Dict[str, Tuple[Entry, Guest]]) -> List[str]:
    """Autostart order with each guest's DEPENDS pulled in before it (depth first)."""
    order: List[str] = []
    visiting: Set[str] = set()

    def visit(name: str) -> None:
        key = name.lower()
        if key in order or key in visiting:
            return  # done, or a cycle (`check` reports cycles)
        visiting.add(key)
        if key in guests:
            for dep in guests[key][1].depends:
                visit(dep)
        visiting.discard(key)
        order.append(key)

    for name in autostart:
        visit(name)
    return order


def start(inventory: Inventory, say: Say = _say, sleep: Callable[[float], None] = time.sleep) -> int:
    """Start the autostart guests in order; one failing guest does not stop the others."""
    from .runtime import control

    guests, broken = _valid_guests(inventory)
    init = owner.detect_init()
    failed: Dict[str, str] = {}  # lower-case name -> name
    for key in start_order(inventory.registry.autostart(), guests):
        if key not in guests:
            say(f"{key}: not started: {broken.get(key, 'not a registered guest')}")
            failed[key] = key
            continue
        entry, guest = guests[key]
        missing = [d for d in guest.depends if d.lower() in failed]
        if missing:
            say(f"{guest.name}: not started, it depends on {', '.join(missing)}, which failed")
            failed[key] = guest.name
            continue
        if inventory.running(guest.name):
            say(f"{guest.name}: already running")
            continue
        if guest.bootdelay:
            say(f"{guest.name}: waiting {guest.bootdelay} s (BOOTDELAY)")
            sleep(guest.bootdelay)
        try:
            owner.start_guest(inventory.paths, guest.name,
                              lambda: control.start(inventory.control(entry, guest)), say, init,
                              guest.bridges)
            say(f"{guest.name}: started")
        except Exception as exc:  # one guest's trouble never keeps the others from starting
            say(f"{guest.name}: failed to start: {exc}")
            failed[key] = guest.name
    if failed:
        say("failed: " + " ".join(failed.values()))
        return 1
    return 0


def stop(inventory: Inventory, say: Say = _say) -> int:
    """Stop every running registered guest, in parallel, dependents first."""
    from .runtime import control, savestate

    guests, broken = _valid_guests(inventory)
    # Guests whose files went bad are stopped all the same: a host shutdown must not lose them.
    controls = {k: (g.name, inventory.control(e, g), g.depends) for k, (e, g) in guests.items()}
    controls.update({e.name.lower(): (e.name, inventory.bare_control(e.name), ())
                     for e in inventory.entries() if e.name.lower() in broken})
    # Identity is all this needs (pid file and /proc), not a QMP round trip per guest; a guest
    # we cannot look at is tried all the same (its stop will say what is wrong).
    running = {k: v for k, v in controls.items() if inventory.running(v[0])}
    if not running:
        say("no guest is running")
        return 0
    # A guest may stop once every running guest that depends on it is down.
    dependents: Dict[str, Set[str]] = {k: set() for k in running}
    for key, (_, _, depends) in running.items():
        for dep in depends:
            if dep.lower() in running:
                dependents[dep.lower()].add(key)

    workers = inventory.host.parallel or len(running)
    lock = threading.Lock()
    deadlines: Dict[str, float] = {}
    failed: List[str] = []
    last: Dict[str, object] = {}  # key -> the stop's last Transition: was it forced?

    init = owner.detect_init()

    def stop_one(key: str) -> None:
        name, gc = running[key][0], running[key][1]
        with lock:
            deadlines[key] = time.monotonic() + gc.stopdelay
        def progress(step) -> None:  # type: ignore[no-untyped-def]
            last[key] = step
            if step.state == savestate.SAVE:  # saved, or why not (then it is shut down)
                say(f"{name}: {step.plain()}")

        owner.stop_guest(inventory.paths, name, lambda: control.stop(gc, progress=progress),
                         lambda: inventory.running(name), say, init)

    pending = set(running)
    futures: Dict[Future, str] = {}
    last_progress = time.monotonic()
    say(f"stopping {len(running)} guest(s), {workers} at a time: " + " ".join(running[k][0] for k in sorted(running)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while pending or futures:
            # Longest STOPDELAY first: what `check` assumes when it adds up the shutdown time.
            ready = [k for k in sorted(pending, key=lambda k: (-running[k][1].stopdelay, k))
                     if not dependents[k] & (pending | set(futures.values()))]
            if pending and not ready and not futures:
                # Only a DEPENDS cycle (which `check` reports) leaves nothing ready: stop them all
                # rather than hang the host's shutdown.
                say("dependency cycle among " + " ".join(running[k][0] for k in sorted(pending)) + ": stopping them together")
                ready = sorted(pending)
                for key in ready:
                    dependents[key] = set()
            for key in ready[:max(0, workers - len(futures))]:
                pending.discard(key)
                futures[pool.submit(stop_one, key)] = key
            done, _ = wait(list(futures), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                key = futures.pop(future)
                name = running[key][0]
                try:
                    future.result()
                    step = last.get(key)
                    say(f"{name}: {step.plain()}" if getattr(step, "forced", False) else f"{name}: stopped")
                except Exception as exc:  # one guest's trouble never keeps the others running
                    say(f"{name}: could not be stopped: {exc}")
                    failed.append(name)
            if futures and time.monotonic() - last_progress >= PROGRESS_EVERY:
                last_progress = time.monotonic()
                with lock:
                    for key in sorted(futures.values()):
                        left = deadlines.get(key, 0) - time.monotonic()
                        state = f"waiting for the guest to power off, {left:.0f} s left" if left > 0 else "forcing it off"
                        say(f"{running[key][0]}: {state}")
    if failed:
        say("could not stop: " + " ".join(failed))
        return 1
    return 0
