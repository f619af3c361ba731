"""The host service ``qemud`` (SPEC §7): start the autostart guests, stop all guests, show them.

Starting: qemud decides when, the guests' own services do the work (``owner``): each guest is
started through its installed service, so boot runs the command line of the installed script
and the init system knows the guest runs (on systemd, in its own unit).

Stopping (issue 15): qemud presses every power button first, then waits. A host shutdown is as
short as its slowest guest's own power-off only when every guest hears its button at once; going
through each guest's service first (a shell script or systemctl, then a helper, per guest) put
~100 ms of start-up per guest before the first press and the waits. So qemud stops the guests
itself, with the same stop as their scripts (the helper's stop machine, run in this process on
the GuestControl their scripts were made from, under the same per-guest lock): it presses the
button of every running guest that no running guest depends on, all in a row over QMP, then
waits for all of them at once (a thread each; STOPDELAY counts from the press, so a stubborn
guest is forced off on time), and presses a guest's button once its last running dependent is
gone. PARALLEL still bounds how many are stopped at once. On systemd the guests' own units
stop at the same host shutdown (nothing orders them after qemud), so there each stop presses
its button itself, under the guest's lock: a press from outside it would race a unit's stop.

The init system's view stays right (issue 12, one owner per guest): a guest stopped this way
ends as one that powered itself off does — on systemd its unit's main process exits, systemd
runs the unit's ExecStop (which finds it gone and cleans up) and the unit reads inactive, not
failed (QEMU exits 0 after a power-off, `quit` or SIGTERM; only a QEMU that needed SIGKILL
leaves its unit failed, which is then true); SysV and FreeBSD keep no state; OpenRC still
records the service started, so once the guest is gone qemud runs its service's stop, which
finds nothing to stop and records it stopped (``owner.record_stopped``). Those are the only
subprocesses, and they come after the guest is gone.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Dict, List, Set, Tuple

from . import owner
from .errors import ERROR
from .inventory import Inventory, runs
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
        if runs(inventory.control(entry, guest)):
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


PRESS_TIMEOUT = 0.5  # seconds for qemud's first press; a guest that misses it is pressed by its stop


def stop(inventory: Inventory, say: Say = _say) -> int:
    """Stop every running registered guest: every power button first, then the waits, in
    parallel, dependents first (see the module's docstring)."""
    from .runtime import button, control, onstop, savestate

    # Only a guest with a pid file can be running (its start writes it, its stop removes it):
    # the others' files are not even read, so 300 registered guests of which 20 run cost 20.
    controls = {}
    for entry in inventory.entries():
        if not os.path.exists(inventory.paths.pidfile(entry.name)):
            continue
        loaded = inventory.load_entry(entry)
        if loaded.guest is not None and not any(p.level == ERROR for p in inventory.host_problems + loaded.problems):
            guest = loaded.guest
            controls[guest.name.lower()] = (guest.name, inventory.control(entry, guest), guest.depends)
        else:  # files gone bad are stopped all the same: a host shutdown must not lose them
            controls[entry.name.lower()] = (entry.name, inventory.bare_control(entry.name), ())

    running = {k: v for k, v in controls.items() if runs(v[1])}  # a guest we cannot look at is tried all the same
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

    def stop_one(key: str, pressed: bool) -> None:
        name, gc = running[key][0], running[key][1]
        def progress(step) -> None:  # type: ignore[no-untyped-def]
            last[key] = step
            if step.state == savestate.SAVE:  # saved, or why not (then it is shut down)
                say(f"{name}: {step.plain()}")

        control.stop(gc, progress=progress, pressed=pressed)
        owner.record_stopped(inventory.paths, init, name)

    pending = set(running)
    futures: Dict[Future, str] = {}
    last_progress = time.monotonic()
    say(f"stopping {len(running)} guest(s), {workers} at a time: " + " ".join(running[k][0] for k in sorted(running)))
    # The presses run side by side too: each waits for its QEMU's greeting and answer, and
    # one after another 50 of them took ~0.6 s on a busy machine.
    with ThreadPoolExecutor(max_workers=workers) as pool, ThreadPoolExecutor(max_workers=workers) as pool_press:
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
            batch = ready[:max(0, workers - len(futures))]
            # Every button of the batch first, then the waits: no guest's power-off waits for
            # another guest's stop to get going.
            # A guest whose stop will save (ONSHUTDOWN=save, or a pending `qemu-init stop
            # --save`) is not pressed: the press would power it off, or go into its state.
            # (onstop.next_mode looks at the request without using it up: it is its stop's.)
            # On systemd the guests' own units stop at the same time (no order ties them to
            # qemud): a press outside the guest's stop lock would race the unit's stop machine,
            # which would then find QEMU on its way out and call it forced. There each stop
            # presses under the lock.
            buttons = [] if init == "systemd" else [
                key for key in batch
                if onstop.next_mode(running[key][1].statefile, running[key][1].onshutdown) != "save"]
            pressed = dict.fromkeys(batch, False)
            presses = pool_press.map(lambda gc: button.press(gc, PRESS_TIMEOUT), [running[key][1] for key in buttons])
            pressed.update(zip(buttons, presses))
            for key in batch:
                pending.discard(key)
                with lock:
                    deadlines[key] = time.monotonic() + running[key][1].stopdelay
                futures[pool.submit(stop_one, key, pressed[key])] = key
            done, _ = wait(list(futures), timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                key = futures.pop(future)
                name = running[key][0]
                try:
                    future.result()
                    step = last.get(key)
                    say(f"{name}: {step.plain()}" if getattr(step, "forced", False) else f"{name}: stopped")
                except Exception as exc:  # one guest's trouble never keeps the others running
                    said = str(exc)
                    say(f"{name}: could not be stopped: {said[len(name) + 2:] if said.startswith(name + ': ') else said}")
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
