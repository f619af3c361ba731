"""The Ansible collection (contrib/ansible, issue 17) against real managed hosts.

Three hosts, each a private copy of a boot test root (tests/guestkit/build-root.sh) booted with its
init system as PID 1 under ``systemd-nspawn -b`` and its own hostname: alpha runs systemd, beta
OpenRC (on sysvinit, as Debian runs it), gamma sysvinit. Ansible (PyPI, its own cached venv:
tests/guestkit/ansible.py) reaches alpha and beta with the connection ``community.docker.nsenter``
into each container's PID 1, never the host's, and gamma over plain SSH:

- gamma's root is the sysv root plus openssh-server and make (tests/guestkit/layer.py, cached);
- it boots in a network namespace the test made (``--network-namespace-path``), the other end of
  its veth in a second one, where ansible-playbook runs (``ip netns exec``): 192.0.2.17 is
  reachable there alone, never from the host's network;
- the test makes the client's key pair and gamma's host keys; ssh checks the host key.

The collection's own example playbook (playbooks/site.yml: the host role, then the guests one host
at a time) runs in phases; alpha and beta get the project's Debian package, gamma a copy of the
source tree installed by the role with ``make install`` (PREFIX=/usr/local, INITSYS=sysv):

1. the first run sets up both hosts and starts their guests;
2. a second run changes nothing; a check-mode run after editing one guest's RAM reports that guest
   alone, with the rc-file diff, and changes nothing;
3. the real run of that edit restarts that guest alone;
4. a bad value fails with qemu-init's one line and leaves the host as it was.

The guests are stubborn (no kernel: QEMU sits in its BIOS), STOPDELAY 1 under MINSTOPDELAY 1, so
a restart takes about two seconds. The module fixture runs the phases once; the tests read them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Dict, List

import pytest

from guestkit import Netns, short_tempdir
from guestkit.ansible import ansible_venv
from guestkit.boot import Machine, copy_tree
from guestkit.layer import layered_root

pytestmark = [
    pytest.mark.qemu, pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (systemd-nspawn, namespaces)"),
    pytest.mark.skipif(not (shutil.which("systemd-nspawn") and shutil.which("mmdebstrap")
                            and shutil.which("dpkg-buildpackage") and shutil.which("nsenter")
                            and shutil.which("ssh") and shutil.which("ssh-keygen")),
                       reason="needs systemd-container, mmdebstrap, dpkg-dev, util-linux and openssh-client"
                              " (.ci/install-deps)"),
]

REPO = Path(__file__).resolve().parents[2]
COLLECTION = REPO / "contrib/ansible"
PLAYBOOK = COLLECTION / "playbooks/site.yml"
HOSTS = {"alpha": "systemd", "beta": "openrc", "gamma": "sysv"}
# Each host's guests: the first two start at boot, the third does not.
GUESTS = {host: [f"{host[0]}1", f"{host[0]}2", f"{host[0]}3"] for host in HOSTS}
EDITED = "a1"  # the guest whose RAM the later phases edit
SCRIPT = {"systemd": "/etc/systemd/system/qemu-{}.service", "openrc": "/etc/init.d/qemu-{}",
          "sysv": "/etc/init.d/qemu-{}"}
SSH_HOST = "gamma"  # on plain SSH, qemu-init installed from source
SSH_ADDRESS, CONTROLLER_ADDRESS = "192.0.2.17", "192.0.2.1"  # TEST-NET-1, inside the test's namespaces
SSH_PACKAGES = ("openssh-server", "make")  # SSH_HOST's root: the sysv root plus these
SOURCE = "/usr/local/src/qemu-init"  # the copy of the source tree on SSH_HOST
# Where qemu-init keeps its registry and host settings: the package's /etc, make install's PREFIX/etc.
ETCDIR = {host: "/usr/local/etc/qemu-init" if host == SSH_HOST else "/etc/qemu-init" for host in HOSTS}


def guest_vars(name: str, ram: str = "64M") -> Dict:
    return {"name": name, "autostart": not name.endswith("3"),
            "rc": {"TGTARCH": "qemu-system-x86_64", "KVM": "no", "BRIDGE": "none", "DISPLAY": 0,
                   "RAM": ram, "STOPDELAY": 1, "DESC": f"guest {name} of the Ansible test"}}


def inventory(machines: Dict[str, Machine], deb: Path, workdir: Path, ram: str = "64M") -> Dict:
    """The inventory (YAML's JSON form): EDITED has ``ram``, every other guest 64M."""
    hosts = {}
    for host, machine in machines.items():
        if host == SSH_HOST:
            hosts[host] = {"ansible_connection": "ssh", "ansible_host": SSH_ADDRESS, "ansible_user": "root",
                           "ansible_ssh_private_key_file": str(workdir / "id_ed25519"),
                           "ansible_ssh_common_args": f"-o UserKnownHostsFile={workdir / 'known_hosts'} "
                                                      "-o StrictHostKeyChecking=yes",
                           "host_qemu_init_deb": "", "host_qemu_init_src": SOURCE}
        else:
            hosts[host] = {"ansible_connection": "community.docker.nsenter", "ansible_nsenter_pid": machine.pid1}
        hosts[host].update({"ansible_python_interpreter": "/usr/bin/python3",
                            "qemu_init_guests": [guest_vars(n, ram if n == EDITED else "64M") for n in GUESTS[host]]})
    return {"qemu_hosts": {"hosts": hosts, "vars": {"host_qemu_init_deb": str(deb),
                                                    "host_qemu_init_settings": {"MINSTOPDELAY": 1}}}}


class Fleet:
    """The hosts and a way to run the playbook against them."""

    def __init__(self, workdir: Path, machines: Dict[str, Machine], deb: Path, bin_dir: Path, controller: Netns):
        self.workdir, self.machines, self.deb, self.bin = workdir, machines, deb, bin_dir
        self.controller = controller  # the network namespace Ansible runs in (SSH_HOST's veth)
        self.made = time.monotonic()
        collections = workdir / "collections/ansible_collections/qemu_init"
        collections.mkdir(parents=True)
        (collections / "qemu_init").symlink_to(COLLECTION)
        self.env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(workdir), "LANG": "C.UTF-8",
                    "ANSIBLE_COLLECTIONS_PATH": str(workdir / "collections"),
                    "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_HOST_KEY_CHECKING": "True",
                    "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"), "ANSIBLE_NOCOLOR": "1",
                    "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3", "ANSIBLE_FORKS": "5", "ANSIBLE_PIPELINING": "1"}

    def play(self, *args: str, ram: str = "64M") -> Dict:
        """Run the example playbook; returns its JSON report with ``rc`` and ``took`` added."""
        inv = self.workdir / "inventory.json"
        inv.write_text(json.dumps(inventory(self.machines, self.deb, self.workdir, ram)))
        started = time.monotonic()
        proc = subprocess.run(self.controller.argv([str(self.bin / "ansible-playbook"), "-i", str(inv), str(PLAYBOOK),
                                                    *args]),
                              capture_output=True, text=True, env=self.env, timeout=300, stdin=subprocess.DEVNULL)
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"ansible-playbook {args} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n"
                                 f"{proc.stderr[-4000:]}")
        report["rc"], report["took"], report["stderr"] = proc.returncode, time.monotonic() - started, proc.stderr
        print(f"ansible-playbook {' '.join(args)} (RAM {ram}): {report['took']:.1f} s, exit {proc.returncode}")
        return report

    def adhoc(self, host: str, module: str, args: str) -> subprocess.CompletedProcess:
        """``ansible HOST -m MODULE -a ARGS`` with the same inventory."""
        argv = [str(self.bin / "ansible"), "-i", str(self.workdir / "inventory.json"), host, "-m", module, "-a", args]
        return subprocess.run(self.controller.argv(argv), capture_output=True, text=True,
                              env={**self.env, "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1"},
                              timeout=120, stdin=subprocess.DEVNULL)

    def qemud_status(self, host: str) -> Dict[str, Dict]:
        out = self.machines[host].run("qemu-init", "qemud", "status", "--json", check=None).stdout
        return {g["name"]: g for g in json.loads(out)}

    def pids(self) -> Dict[str, int]:
        return {name: g["pid"] for host in self.machines for name, g in self.qemud_status(host).items()}

    def files(self, host: str) -> Dict[str, tuple]:
        """Each guest's rc-file, cfg-file and script: (text, inode, mtime) - what "as it was" means."""
        machine = self.machines[host]
        found = {}
        etc = ETCDIR[host].lstrip("/")
        paths = [f"{etc}/registered", f"{etc}/autostart"]
        for name in GUESTS[host]:
            paths += [f"srv/vms/{name}/{name}-qemud.rc", f"srv/vms/{name}/{name}-qemu.cfg",
                      SCRIPT[machine.init].format(name).lstrip("/")]
        for rel in paths:
            path = machine.root / rel
            info = path.stat()
            found[rel] = (path.read_text(), info.st_ino, info.st_mtime_ns)
        found["listing"] = tuple(sorted(os.listdir(machine.root / "srv/vms" / GUESTS[host][0])))
        return found


def task_results(report: Dict, name: str) -> Dict[str, List[Dict]]:
    """host -> the per-item results of the task called ``name`` (all its plays' batches)."""
    found: Dict[str, List[Dict]] = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == name:
                for host, result in task["hosts"].items():
                    found.setdefault(host, []).extend(result.get("results", [result]))
    return found


def changed_tasks(report: Dict) -> List[tuple]:
    """(host, task, item) of everything the run reported changed."""
    changed = []
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                for item in result.get("results", [result]):
                    if item.get("changed"):
                        changed.append((host, task["task"]["name"], (item.get("item") or {}).get("name")))
    return changed


def failures(report: Dict) -> List[tuple]:
    """(host, task, message) of every failure: what an assertion about a run shows."""
    return [(host, task["task"]["name"], item.get("msg"))
            for play in report["plays"] for task in play["tasks"] for host, result in task["hosts"].items()
            for item in result.get("results", [result]) if item.get("failed")]


def boot_finished(machine: Machine) -> bool:
    if machine.init == "systemd":
        return machine.run("systemctl", "is-system-running", check=None).stdout.strip() in ("running", "degraded")
    return (machine.run("runlevel", check=None).stdout.split()[-1:] == ["2"]
            and machine.run("pgrep", "-x", "rc|openrc|startpar", check=None).returncode != 0)


def _boot(machine: Machine) -> Machine:
    machine.boot()
    deadline = time.monotonic() + 120
    while not boot_finished(machine):
        assert time.monotonic() < deadline, machine.console_text()[-3000:]
        time.sleep(0.3)
    return machine


def _setup_ssh_host(machine: Machine, workdir: Path, controller: Netns, inside: Netns) -> None:
    """SSH_HOST before it boots: its veth, its host keys, the client's key, the source tree."""
    controller.run(["ip", "link", "add", "qi-ssh0", "type", "veth", "peer", "name", "host0", "netns", inside.name])
    controller.run(["ip", "address", "add", f"{CONTROLLER_ADDRESS}/24", "dev", "qi-ssh0"])
    controller.run(["ip", "link", "set", "qi-ssh0", "up"])
    inside.run(["ip", "address", "add", f"{SSH_ADDRESS}/24", "dev", "host0"])
    inside.run(["ip", "link", "set", "host0", "up"])
    subprocess.run(["ssh-keygen", "-q", "-A", "-f", str(machine.root)], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "qi-ansible-test",
                    "-f", str(workdir / "id_ed25519")], check=True)
    dot_ssh = machine.root / "root/.ssh"
    dot_ssh.mkdir(mode=0o700, exist_ok=True)
    (dot_ssh / "authorized_keys").write_text((workdir / "id_ed25519.pub").read_text())
    (dot_ssh / "authorized_keys").chmod(0o600)
    host_key = (machine.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    (workdir / "known_hosts").write_text(" ".join([SSH_ADDRESS, *host_key]) + "\n")
    copy_tree(REPO, machine.root / SOURCE.lstrip("/"))  # as an administrator's checkout would be


def _machine(host: str, workdir: Path, inside: Netns) -> Machine:
    if host != SSH_HOST:
        return Machine(HOSTS[host], workdir / host, name=host)
    return Machine(HOSTS[host], workdir / host, name=host, source=layered_root(HOSTS[host], SSH_PACKAGES),
                   network=[f"--network-namespace-path=/run/netns/{inside.name}"])


@pytest.fixture(scope="module")
def fleet(deb):
    workdir = short_tempdir("qi-ansible-")
    started = time.monotonic()
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        # Closed after the machines: whatever is left inside (ssh's control masters) is killed.
        token = secrets.token_hex(3)
        controller = stack.enter_context(Netns(f"qi-ssh-ctl-{token}"))
        inside = stack.enter_context(Netns(f"qi-ssh-{SSH_HOST}-{token}"))
        with ThreadPoolExecutor(5) as pool:  # the venv (once) and the root copies at once; the package: conftest's
            venv = pool.submit(ansible_venv)
            for host in HOSTS:
                (workdir / host).mkdir()
            copies = {host: pool.submit(_machine, host, workdir, inside) for host in HOSTS}
            machines = {}
            for host, future in copies.items():
                machines[host] = stack.enter_context(future.result())
            for machine in machines.values():
                (machine.root / "etc/hostname").write_text(machine.name + "\n")
            _setup_ssh_host(machines[SSH_HOST], workdir, controller, inside)
            list(pool.map(_boot, machines.values()))
            fleet = Fleet(workdir, machines, deb, venv.result(), controller)
            print(f"the package, the venv and the booted hosts: {time.monotonic() - started:.1f} s")
        yield fleet


@pytest.fixture(scope="module")
def phases(fleet):
    """Every phase of the module's docstring, in order: what each left."""
    record: Dict = {}
    print(f"set-up: {time.monotonic() - fleet.made:.1f} s")
    record["first"] = fleet.play()
    record["status"] = {host: fleet.qemud_status(host) for host in HOSTS}
    record["pids"] = fleet.pids()
    record["second"] = fleet.play()
    before = {host: fleet.files(host) for host in HOSTS}
    record["check"] = fleet.play("--check", "--diff", ram="128M")
    record["after_check"] = {host: fleet.files(host) for host in HOSTS}
    record["before_check"] = before
    record["pids_after_check"] = fleet.pids()
    record["edit"] = fleet.play("--diff", ram="128M")
    record["pids_after_edit"] = fleet.pids()
    record["after_edit"] = {host: fleet.files(host) for host in HOSTS}
    record["show"] = fleet.machines["alpha"].run("qemu-init", "show", EDITED, "--json").stdout
    record["bad"] = fleet.play(ram="lots")
    record["after_bad"] = {host: fleet.files(host) for host in HOSTS}
    record["pids_after_bad"] = fleet.pids()
    # state=absent, twice: the second changes nothing
    record["absent"] = [fleet.adhoc("beta", "qemu_init.qemu_init.guest", "name=b3 state=absent") for _ in range(2)]
    record["after_absent"] = fleet.qemud_status("beta")
    record["pids_after_absent"] = fleet.pids()
    return record


def test_first_run_sets_up_every_host_as_the_inventory_says(phases):
    first = phases["first"]
    assert first["rc"] == 0, (failures(first), first["stderr"][-3000:])
    for host, guests in GUESTS.items():
        status = phases["status"][host]
        assert list(status) == guests, status
        for name in guests:
            assert status[name]["state"] == "running" and status[name]["pid"], status[name]
            assert status[name]["autostart"] == (not name.endswith("3")), status[name]
            assert status[name]["description"] == f"guest {name} of the Ansible test"
            assert status[name]["problem"] is None
        assert first["stats"][host]["failures"] == 0 and first["stats"][host]["changed"] > 0


def test_the_role_enables_only_the_host_service_for_the_init_system(fleet, phases):
    for host, machine in fleet.machines.items():
        if machine.init == "systemd":
            assert machine.run("systemctl", "is-enabled", "qemud.service", check=None).stdout.strip() == "enabled"
            enabled = machine.run("sh", "-c", "systemctl list-unit-files 'qemu-*' --state=enabled --no-legend",
                                  check=None).stdout
            assert enabled.strip() == "", enabled  # the guests start through qemud, not on their own
        elif machine.init == "openrc":
            assert (machine.root / "etc/runlevels/default/qemud").is_symlink()
            assert not list((machine.root / "etc/runlevels/default").glob("qemu-*"))
        else:
            assert list((machine.root / "etc/rc2.d").glob("S*qemud"))
            assert not list((machine.root / "etc/rc2.d").glob("S*qemu-*"))
        assert machine.run("id", "-u", "qemud", check=None).returncode == 0
        assert "MINSTOPDELAY=1" in (machine.root / ETCDIR[host].lstrip("/") / "qemu-init.conf").read_text()


def test_second_run_changes_nothing(phases):
    second = phases["second"]
    assert second["rc"] == 0, failures(second)
    assert {host: s["changed"] for host, s in second["stats"].items()} == {host: 0 for host in HOSTS}, \
        changed_tasks(second)


def test_check_mode_reports_the_edited_guest_alone_with_its_diff_and_changes_nothing(phases):
    check = phases["check"]
    assert check["rc"] == 0, (failures(check), check["stderr"][-3000:])
    assert changed_tasks(check) == [("alpha", "Guest", EDITED)]
    result = next(r for r in task_results(check, "Guest")["alpha"] if r["item"]["name"] == EDITED)
    diffs = result["diff"]
    assert [d["after_header"] for d in diffs] == [f"/srv/vms/{EDITED}/{EDITED}-qemud.rc"], diffs
    assert "RAM=64M" in diffs[0]["before"] and "RAM=128M" in diffs[0]["after"]
    assert phases["after_check"] == phases["before_check"]
    assert phases["pids_after_check"] == phases["pids"]


def test_the_edit_restarts_that_guest_alone_and_rewrites_no_other_script(phases):
    edit = phases["edit"]
    assert edit["rc"] == 0, (failures(edit), edit["stderr"][-3000:])
    assert changed_tasks(edit) == [("alpha", "Guest", EDITED)]
    before, after = phases["pids"], phases["pids_after_edit"]
    assert after[EDITED] != before[EDITED]
    assert {n: p for n, p in after.items() if n != EDITED} == {n: p for n, p in before.items() if n != EDITED}
    assert json.loads(phases["show"])["memory"] in ("128M", "128")
    old, new = phases["before_check"], phases["after_edit"]
    changed = {(host, rel) for host in HOSTS for rel in old[host] if old[host][rel] != new[host][rel]}
    # the rc-file; its script too only if its text depends on RAM (then it alone is rewritten)
    script = SCRIPT["systemd"].format(EDITED).lstrip("/")
    assert changed - {("alpha", script)} == {("alpha", f"srv/vms/{EDITED}/{EDITED}-qemud.rc")}, changed


def test_a_bad_value_fails_with_qemu_inits_line_and_leaves_the_host_as_it_was(phases):
    bad = phases["bad"]
    assert bad["rc"] != 0
    failed = [r for r in task_results(bad, "Guest")["alpha"] if r.get("failed")]
    assert [r["item"]["name"] for r in failed] == [EDITED]
    msg = failed[0]["msg"]
    assert msg.startswith(f"/srv/vms/{EDITED}/{EDITED}-qemud.rc:") and ": RAM: " in msg, msg
    assert len(msg.splitlines()) == 1 and "Traceback" not in msg, msg
    assert phases["after_bad"] == phases["after_edit"]  # files, scripts, registry; no temporary left
    assert phases["pids_after_bad"] == phases["pids_after_edit"]


def test_absent_unregisters_the_guest_and_removes_its_script_and_files(fleet, phases):
    first, second = phases["absent"]
    assert first.returncode == 0 and "CHANGED" in first.stdout, first.stdout + first.stderr
    assert second.returncode == 0 and "CHANGED" not in second.stdout, second.stdout + second.stderr
    assert list(phases["after_absent"]) == ["b1", "b2"]
    root = fleet.machines["beta"].root
    assert not (root / SCRIPT["openrc"].format("b3").lstrip("/")).exists()
    assert os.listdir(root / "srv/vms/b3") == []
    assert {n: p for n, p in phases["pids_after_absent"].items()} == {
        n: p for n, p in phases["pids_after_bad"].items() if n != "b3"}


def test_the_ssh_host_is_reached_over_ssh_on_its_veth_alone(fleet, phases):
    """gamma's tasks ran through sshd, from the controller's namespace; the host's network has no such address."""
    proc = fleet.adhoc(SSH_HOST, "ansible.builtin.command", "printenv SSH_CONNECTION")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{CONTROLLER_ADDRESS} " in proc.stdout and f" {SSH_ADDRESS} 22" in proc.stdout, proc.stdout
    ours = subprocess.run(["ip", "-o", "address"], capture_output=True, text=True, check=True).stdout
    assert SSH_ADDRESS not in ours and CONTROLLER_ADDRESS not in ours
    assert phases["first"]["stats"][SSH_HOST]["failures"] == 0


def test_the_source_host_runs_what_make_install_put_there(fleet, phases):
    """No package on gamma: qemu-init, its layout and the host service come from make install
    (INITSYS=sysv); that service stops every guest and starts the autostart ones again."""
    machine = fleet.machines[SSH_HOST]
    assert machine.run("dpkg-query", "-W", "qemu-init", check=None).returncode != 0
    assert machine.run("sh", "-c", "command -v qemu-init").stdout.strip() == "/usr/local/bin/qemu-init"
    layout = (machine.root / "usr/local/lib/qemu-init/qemu_init/layout.conf").read_text()
    assert "kind=fhs" in layout and "prefix=/usr/local" in layout, layout
    manifest = (machine.root / "usr/local/share/qemu-init/install-manifest").read_text()
    assert "/etc/init.d/qemud" in manifest and "/usr/local/bin/qemu-init" in manifest
    assert list((machine.root / "etc/rc2.d").glob("S*qemud"))
    before = fleet.qemud_status(SSH_HOST)
    assert [n for n, g in before.items() if g["state"] == "running"] == GUESTS[SSH_HOST], before
    machine.run("/etc/init.d/qemud", "stop", timeout=60)
    assert {n: g["state"] for n, g in fleet.qemud_status(SSH_HOST).items()} == {n: "stopped" for n in GUESTS[SSH_HOST]}
    machine.run("/etc/init.d/qemud", "start", timeout=60)
    after = fleet.qemud_status(SSH_HOST)
    assert {n: g["state"] for n, g in after.items()} == {"g1": "running", "g2": "running", "g3": "stopped"}, after
    assert all(after[n]["pid"] != before[n]["pid"] for n in ("g1", "g2"))


def test_ansible_lint_is_clean_on_the_collection(fleet):
    proc = subprocess.run([str(fleet.bin / "ansible-lint"), "--offline", "--nocolor"], cwd=COLLECTION,
                          capture_output=True, text=True, env=fleet.env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
