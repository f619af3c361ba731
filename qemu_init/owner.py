"""One owner per guest: a guest is started and stopped by its installed service.

Whoever starts or stops a guest — the host service ``qemud`` at boot, ``qemu-init start/stop
NAME`` — goes through the service ``qemu-init install`` wrote for it: ``systemctl
start qemu-NAME.service`` on systemd, the script ``/etc/init.d/qemu-NAME`` on SysV and OpenRC,
``/usr/local/etc/rc.d/qemu_NAME onestart`` on FreeBSD. So every start runs the same command line
(the one in plain sight in the script), and the init system's own view stays right: on systemd
the guest runs in its own unit's cgroup and the unit reads active; OpenRC records it started.

A guest without an installed service (registered after the last ``install``, or in a sandbox
root without an init system) is started and stopped directly by the runtime helper, as its
script would do it, with a warning saying so.

``qemud stop`` at shutdown is the one exception: it presses every guest's button first and stops
them itself, with their scripts' own stop, then tells the init system where it must be told
(``record_stopped``); hostsvc.py says why and how the init systems' view stays right.
"""

from __future__ import annotations

import os
import re
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: ~4 ms of every command
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Sequence, Tuple

from .errors import GuestError
from .paths import SYSTEMD_RUNNING, Paths, detect_init

if TYPE_CHECKING:
    Say = Callable[[str], None]


def guest_service(init: str, name: str) -> str:
    """The name of a guest's service (FreeBSD rc.conf variables cannot hold "-")."""
    return f"qemu_{name.lower()}" if init == "bsd" else f"qemu-{name.lower()}"


def bridge_service(init: str, bridge: str) -> str:
    """The name of a bridge's service (bridge names may hold "." and "-", rc.conf variables not)."""
    return "qemu_bridge_" + re.sub(r"[^A-Za-z0-9_]", "_", bridge) if init == "bsd" else f"qemu-bridge-{bridge}"


def _script(paths: Paths, init: str, service: str) -> Optional[str]:
    script = os.path.join(paths.rcddir if init == "bsd" else paths.initdir, service)
    return script if os.access(script, os.X_OK) else None


def service_command(paths: Paths, init: str, name: str, action: str) -> Optional[List[str]]:
    """The command that runs ``action`` (start, stop) through the guest's installed service, or
    None when the init system cannot: the service is not installed, or (systemd) qemu-init
    works in a sandbox root that systemd does not read."""
    service = guest_service(init, name)
    if init == "systemd":
        unit = os.path.join(paths.unitdir, service + ".service")
        if paths.root or not os.path.isdir(SYSTEMD_RUNNING) or not os.path.isfile(unit):
            return None
        return ["systemctl", action, service + ".service"]
    script = _script(paths, init, service)
    if script is None:
        return None
    # FreeBSD: "one" runs the script whether or not qemu_NAME_enable is set; guests are chosen
    # by autostart, not rc.conf.
    return [script, "one" + action if init == "bsd" else action]


def run(command: List[str]) -> Tuple[int, str, str]:
    """Run a service command; its exit status and what it printed on stdout and stderr."""
    import subprocess  # here: a stop or start without an installed service spawns nothing (~7 ms)
    proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    return proc.returncode, proc.stdout.strip(), proc.stderr.strip()


def _report(result: Tuple[int, str, str], service: str, action: str, say: Say, warn: Say) -> None:
    """Pass a service's output on; a failure is a GuestError with the service's own error line."""
    code, out, err = result
    for line in out.splitlines():
        say(line)
    errors = err.splitlines()
    if code == 0:
        for line in errors:
            warn(line)
        return
    for line in errors[:-1]:
        warn(line)
    # The helper's error line already says "qemu-init: GUEST: …": it is passed on as it is.
    last = errors[-1] if errors else f"{service} {action} failed (exit status {code})"
    raise GuestError(last[len("qemu-init: "):] if last.startswith("qemu-init: ") else last, code)


def start(paths: Paths, init: str, name: str) -> Optional[Tuple[int, str, str]]:
    """Start a guest that is not running through its service: (exit status, stdout, stderr),
    or None when it has no installed service."""
    command = service_command(paths, init, name, "start")
    if command is None:
        return None
    if init == "openrc":
        # OpenRC still records "started" after the guest powered itself off, and would answer
        # `start` with "already started": the guest is not running (the caller made sure), so
        # that record is wrong and `zap` forgets it.
        run(command[:-1] + ["zap"])
    return run(command)


def stop(paths: Paths, init: str, name: str) -> Optional[Tuple[int, str, str]]:
    """Stop a guest through its service: (exit status, stdout, stderr), or None without one."""
    command = service_command(paths, init, name, "stop")
    return None if command is None else run(command)


def record_stopped(paths: Paths, init: str, name: str) -> None:
    """Tell the init system that a guest qemud stopped itself (hostsvc) is stopped, where it
    keeps a record the guest's own exit does not change: OpenRC still says "started", so the
    service's stop runs, finds nothing to stop and records it stopped. systemd needs nothing (the
    unit's main process exited: systemd ran its ExecStop and the unit is inactive); SysV and
    FreeBSD keep no state."""
    if init == "openrc":
        stop(paths, init, name)


def start_bridges(paths: Paths, init: str, bridges: Sequence[str], say: Say, warn: Say) -> None:
    """SysV and FreeBSD scripts do not start what they need (OpenRC's `need` and systemd's
    Requires= do): start the guest's bridges' services first, as those would. A bridge that is
    already up is left as it is."""
    if init not in ("sysv", "bsd"):
        return
    for bridge in bridges:
        script = _script(paths, init, bridge_service(init, bridge))
        if script is not None:
            _report(run([script, "onestart" if init == "bsd" else "start"]), bridge_service(init, bridge), "start",
                    say, warn)


def start_guest(paths: Paths, name: str, direct: Callable[[], None], say: Say,
                init: Optional[str] = None, bridges: Sequence[str] = (), warn: Optional[Say] = None) -> None:
    """Start a guest that is not running by its service (its ``bridges``' services first
    where the init system does not); ``direct()`` starts one that has no service. What the
    services print goes to ``say`` (stdout) and ``warn`` (stderr; default ``say``). Raises
    GuestError when a service fails."""
    init = init or detect_init()
    warn = warn or say
    if service_command(paths, init, name, "start") is not None:
        start_bridges(paths, init, bridges, say, warn)
    result = start(paths, init, name)
    if result is None:
        warn(f"{name}: {guest_service(init, name)} is not installed (run qemu-init install): starting it directly")
        direct()
        return
    _report(result, guest_service(init, name), "start", say, warn)


def stop_guest(paths: Paths, name: str, direct: Callable[[], None], running: Callable[[], bool], say: Say,
               init: Optional[str] = None, warn: Optional[Say] = None) -> None:
    """Stop a guest by its service; ``direct()`` stops it when it has none, or when the service
    left it running (it was started outside its service, so the init system took it for
    stopped): a shutdown must never leave a guest to the final kill. Raises GuestError."""
    init = init or detect_init()
    warn = warn or say
    result = stop(paths, init, name)
    if result is not None:
        if not running():
            _report(result, guest_service(init, name), "stop", say, warn)
            return
        code, out, err = result
        for line in (out + "\n" + err).strip().splitlines():
            say(line)
        warn(f"{name}: still running after {guest_service(init, name)} stop: stopping it directly")
    direct()
