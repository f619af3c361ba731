"""A libvirtd of the benchmark's own (issue 15), to measure qemu-init against libvirt side by side.

Debian's libvirt-daemon, libvirt-clients and libvirt-daemon-system (bench/install-deps, which
starts nothing) are used as installed, but libvirtd runs in a mount and network namespace of its
own: its configuration, state, run and log folders (/etc/libvirt, /var/lib/libvirt, /run/libvirt,
…) are folders of the sandbox bind-mounted over the host's, so it never sees the package's
`default` network nor touches the host's network, and it goes when the namespace holder is
killed. QEMU runs as root without security driver, cgroups or private /dev (the cheapest
libvirt can be: its figures are a floor for libvirt). ``virsh`` talks to it from outside through
its socket in the sandbox; ``libvirt-guests.sh`` runs inside the namespaces (its settings file
is /etc/default/libvirt-guests there).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import List

from kit import guestkit, run

GUESTS_SH = "/usr/lib/libvirt/libvirt-guests.sh"
QEMU_CONF = """user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""
BINDS = {"etc": "/etc/libvirt", "lib": "/var/lib/libvirt", "run": "/run/libvirt", "cache": "/var/cache/libvirt",
         "log": "/var/log/libvirt", "lock": "/run/lock", "default": "/etc/default"}


def available() -> str:
    """"" when libvirt can be measured here, else why not."""
    for path in ("/usr/sbin/libvirtd", "/usr/bin/virsh", GUESTS_SH):
        if not os.path.exists(path):
            return f"{path} missing (run bench/install-deps)"
    return ""


class Libvirt:
    def __init__(self, box: Path):
        self.box = box / "libvirt"
        self.holder = None
        for sub in BINDS:
            (self.box / sub).mkdir(parents=True, exist_ok=True)
        (self.box / "etc/qemu.conf").write_text(QEMU_CONF)
        (self.box / "etc/libvirtd.conf").write_text(f'log_outputs = "3:file:{self.box}/log/libvirtd.log"\n')
        self.socket = self.box / "run/libvirt-sock"
        self.uri = f"qemu:///system?socket={self.socket}"

    def guests_settings(self, text: str) -> None:
        """/etc/default/libvirt-guests as libvirt-guests.sh reads it in the namespaces."""
        (self.box / "default/libvirt-guests").write_text(text)

    def start(self) -> None:
        # a /run of its own first (the host's has no /run/libvirt, and none is made there)
        mounts = "mount -t tmpfs -o mode=0755 qi-bench-run /run && mkdir -p /run/libvirt /run/lock && " + " && ".join(
            f"mount --bind {shlex.quote(str(self.box / sub))} {target}"
            for sub, target in BINDS.items() if target.startswith("/run/") or os.path.isdir(target))
        script = f"set -e; {mounts}; ip link set lo up; exec /usr/sbin/libvirtd --pid-file /run/libvirt/libvirtd.pid"
        # `unshare --mount` makes every mount private first: nothing here reaches the host's tree
        self.holder = subprocess.Popen(["unshare", "--mount", "--net", "--fork", "--kill-child", "sh", "-c", script],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not self.socket.exists() or self.virsh("version", ok=()).returncode != 0:
            if self.holder.poll() is not None:
                raise RuntimeError(f"libvirtd did not start: {self.holder.stderr.read().decode()[-500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("libvirtd did not answer within 60 s")
            time.sleep(0.2)

    def virsh_argv(self, *args: str) -> List[str]:
        return ["virsh", "-q", "-c", self.uri, *args]

    def virsh(self, *args: str, ok=(0,)) -> subprocess.CompletedProcess:
        return run(self.virsh_argv(*args), ok=ok, timeout=120)

    def inside(self, *argv: str) -> List[str]:
        """A command run in libvirtd's namespaces (its /etc/default, /run/libvirt, …)."""
        pid = self._namespace_pid()
        return ["nsenter", "-t", str(pid), "-m", "-n", "--", *argv]

    def _namespace_pid(self) -> int:
        # the holder's child (sh, then libvirtd) is the one inside the namespaces
        children = Path(f"/proc/{self.holder.pid}/task/{self.holder.pid}/children").read_text().split()
        return int(children[0])

    def define(self, name: str, guest: "guestkit.TestGuest | None", serial: Path, ram_mb: int = 256) -> None:
        """A domain as close to qemu-init's test guest as libvirt writes it: TCG, no disk, no
        NIC, no display, ACPI (the power button), the test kernel or only the BIOS."""
        boot = ""
        if guest is not None:
            boot = (f"<kernel>{guest.kernel}</kernel><initrd>{guest.initrd}</initrd>"
                    f"<cmdline>console=ttyS0 panic=-1 qi.name={name}</cmdline>")
        xml = f"""<domain type='qemu'>
  <name>{name}</name><memory unit='MiB'>{ram_mb}</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>{boot}</os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='{serial}'/><target port='0'/></serial>
    <video><model type='none'/></video><memballoon model='none'/>
  </devices>
</domain>
"""
        path = self.box / f"{name}.xml"
        path.write_text(xml)
        self.virsh("define", str(path))

    def pid(self, name: str) -> int:
        return int((self.box / f"run/qemu/{name}.pid").read_text())

    def stop(self) -> None:
        """Destroy what runs, stop libvirtd (SIGTERM, then SIGKILL); its namespaces go with it."""
        if self.holder is None:
            return
        try:
            for name in self.virsh("list", "--name", ok=()).stdout.split():
                self.virsh("destroy", name, ok=())
            os.kill(self._namespace_pid(), signal.SIGTERM)
        except (OSError, ValueError, IndexError, RuntimeError):
            pass
        try:
            self.holder.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.holder.kill()  # --kill-child: libvirtd gets SIGKILL
            self.holder.wait(timeout=15)
        guestkit.kill_qemu(str(self.box))
        self.holder = None
