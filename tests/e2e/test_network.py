"""Bridged networking end to end (SPEC §1.4, §2 BRIDGE/NIC/MAC, §3 NICn, §5; issue 6).

Everything that touches a network runs inside throw-away network namespaces (``ip netns exec``):
the generated bridge service, the guests' generated SysV scripts (under dash), and so the helper
that makes each tap, attaches it and hands it to the sandboxed QEMU. The host's own interfaces, addresses
and routes are compared before, during and after, and no interface named like ours may appear on
the host at any time.

The picture in the main test::

    namespace "lan"                namespace under test
    qilan0 10.47.11.254 --veth-- qiup0 (UPLINK) --+
                                                  br0 10.47.11.1 (made by qemu-bridge-br0)
             alpha 10.47.11.11 eth0 == qi1n0 -----+
             beta  10.47.11.12 eth0 == qi2n0 -----+

Timings are printed (run with -s to see them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest

import guestkit
from guestkit import wait_for_line
from guestkit.qemuinit import host_conf, qi, qi_in, write_guest

from qemu_init.config import derived_mac

NETNS_MARKS = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, taps)"),
    pytest.mark.skipif(shutil.which("dash") is None or shutil.which("ip") is None
                       or not os.path.exists("/dev/net/tun"), reason="needs dash, ip and /dev/net/tun"),
]


def needs_netns(test):
    """Marks of a test that makes namespaces, bridges and taps."""
    for mark in NETNS_MARKS:
        test = mark(test)
    return test


SUBNET = "10.47.11"
BRIDGE_IP, LAN_IP = f"{SUBNET}.1", f"{SUBNET}.254"
GUESTS = {"alpha": f"{SUBNET}.11", "beta": f"{SUBNET}.12"}  # registered in this order: qi1n0, qi2n0
UPLINK, LAN_END = "qiup0", "qilan0"
# Every interface name this module makes (anywhere): none of them may ever show up on the host.
OURS = re.compile(r"\b(br0|qi\d+n\d+|qiup0|qilan0|qidummy0)\b")


# -- the host's own network ----------------------------------------------------------------------

def _ip(*args: str) -> List[str]:
    out = subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout
    # Lifetimes of DHCP/RA addresses and routes count down by themselves: not a change.
    out = re.sub(r"\s(valid_lft|preferred_lft|expires)\s+\S+", "", out)
    return [line.rstrip() for line in out.splitlines() if line.strip()]


def host_network() -> Dict[str, object]:
    """The host's links, addresses and routes, keyed so that what other suites running at the
    same time may add (interfaces of their own) can be told apart from a change to what was here."""
    links = {}
    for line in _ip("-o", "link"):
        name = line.split(": ", 2)[1].split("@")[0]
        links[name] = line.split(": ", 1)[1]  # without the ifindex
    addrs: Dict[str, List[str]] = {}
    for line in _ip("-o", "addr"):
        name = line.split()[1]
        addrs.setdefault(name, []).append(" ".join(line.split()[1:]))
    routes = _ip("route") + _ip("-6", "route")
    return {"links": links, "addrs": addrs, "routes": routes}


def assert_host_unchanged(before: Dict[str, object]) -> None:
    """Nothing named like ours appeared on the host; every interface that was there has the same
    link line and addresses; no route went, and none came over the host's own interfaces or for
    our names or subnet. (Interfaces that other suites add meanwhile under other names are theirs.)"""
    after = host_network()
    appeared = [n for n in after["links"] if n not in before["links"] and OURS.fullmatch(n)]
    assert not appeared, f"interfaces of this test on the host: {appeared}"
    for name, line in before["links"].items():
        assert after["links"].get(name) == line, f"host interface {name} changed"
        assert after["addrs"].get(name) == before["addrs"].get(name), f"addresses of host interface {name} changed"
    gone = set(before["routes"]) - set(after["routes"])
    assert not gone, f"host routes gone: {gone}"
    came = [r for r in set(after["routes"]) - set(before["routes"])
            if OURS.search(r) or SUBNET in r or any(re.search(rf"\bdev {re.escape(n)}\b", r) for n in before["links"])]
    assert not came, f"host routes added: {came}"


@pytest.fixture
def host_guard():
    """The host's network before the test, checked again once the test is done (a test may check
    it meanwhile too). Asked for first, it is set up before the namespace and sandbox fixtures,
    and so checked after their cleanup as well."""
    before = host_network()
    yield before
    assert_host_unchanged(before)


# -- inside the namespace ----------------------------------------------------------------------

def ns_links(ns: guestkit.Netns) -> Dict[str, str]:
    """name -> `ip -d -o link` line, inside the namespace."""
    out = ns.run(["ip", "-d", "-o", "link"]).stdout
    return {line.split(": ", 2)[1].split("@")[0]: line for line in out.splitlines()}


def master(ns: guestkit.Netns, dev: str) -> str:
    match = re.search(r"\smaster (\S+)", ns_links(ns).get(dev, ""))
    return match.group(1) if match else ""


def mtu(ns: guestkit.Netns, dev: str) -> int:
    return int(re.search(r"\smtu (\d+)", ns_links(ns)[dev]).group(1))


def sh(ns: guestkit.Netns, script: Path, action: str) -> subprocess.CompletedProcess:
    """A generated SysV script, run by dash inside the namespace (never raises)."""
    return ns.run(["dash", str(script), action], check=False, timeout=120)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.args, result.returncode, result.stdout, result.stderr)
    return result


def qemu_mac(root: Path, name: str) -> str:
    """The MAC in the command line of the running QEMU (from its pid file)."""
    pid = int((root / f"run/qemu-init/{name}.pid").read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    devices = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-device" and "mac=" in argv[i + 1]]
    assert len(devices) == 1, devices
    return re.search(r"mac=([0-9a-f:]{17})", devices[0]).group(1)


def monitor_mac(root: Path, name: str) -> str:
    """The MAC the guest's NIC really has, as QEMU's monitor reports it (info network)."""
    text = qi(root, "monitor", name, "info", "network", check=0).stdout
    macs = re.findall(r"macaddr=([0-9a-f:]{17})", text)
    assert len(macs) == 1, text
    return macs[0]


def learned_macs(ns: guestkit.Netns) -> Dict[str, str]:
    """MAC -> port the bridge learned it on: the addresses really seen on the wire."""
    out = ns.run(["bridge", "fdb", "show", "br", "br0"]).stdout
    learned = {}
    for line in out.splitlines():
        words = line.split()
        if "permanent" not in words and "dev" in words:
            learned[words[0]] = words[words.index("dev") + 1]
    return learned


def pid_of(root: Path, name: str) -> int:
    return int((root / f"run/qemu-init/{name}.pid").read_text())


def mac_in_script(script: Path) -> str:
    return re.search(r"-device virtio-net-pci,netdev=net0,mac=([0-9a-f:]{17})", script.read_text()).group(1)


# -- the tests ---------------------------------------------------------------------------------

@needs_netns
@pytest.mark.qemu
@pytest.mark.usefixtures("subreaper")
def test_two_guests_talk_over_the_generated_bridge(host_guard, test_guest, sandbox, netns):
    """Acceptance 1-5: bridge service, taps, pings, stop and cleanup, stable MACs, host untouched."""
    root = sandbox
    timing = {}
    started = time.monotonic()
    host_conf(root, f"MINSTOPDELAY=1\nBRIDGE=br0\nUPLINK={UPLINK}\n")
    for name, address in GUESTS.items():
        peers = [a for n, a in GUESTS.items() if n != name]
        write_guest(root / "vms", name, test_guest, rc="BRIDGE=br0\n",
                    kernel_args=f"qi.ip={address}/24 qi.ping={','.join(peers + [BRIDGE_IP, LAN_IP])}")
        qi(root, "register", str(root / "vms" / f"{name}-qemud.rc"), check=0)
    qi(root, "generate", "--init", "sysv", check=0)  # into the sandbox root: /etc/init.d, ETCDIR
    initd, etc = root / "etc/init.d", root / "etc/qemu-init"
    bridge = initd / "qemu-bridge-br0"
    assert not list(etc.glob("qemu-if*")), "no tap scripts: QEMU's sandbox may not run any; the helper makes the taps"

    # The "LAN" behind the uplink: a veth pair, one end in a namespace of its own with an address.
    with guestkit.Netns() as lan:
        netns.run(["ip", "link", "add", UPLINK, "type", "veth", "peer", "name", LAN_END, "netns", lan.name])
        lan.run(["ip", "addr", "add", f"{LAN_IP}/24", "dev", LAN_END])
        lan.run(["ip", "link", "set", LAN_END, "up"])
        # A smaller MTU on the uplink (a tunnel, say): the bridge takes it, and so must the taps.
        netns.run(["ip", "link", "set", UPLINK, "mtu", "1400"])

        # Before the bridge service ran, check warns (inside the namespace: there is no br0 there).
        warned = qi_in(netns.name, root, "check", check=0)
        assert "BRIDGE: warning: bridge br0 does not exist on this host (yet)" in warned.stdout

        assert sh(netns, bridge, "status").returncode == 3
        ok(sh(netns, bridge, "start"))
        assert re.search(r"\sbridge forward_delay", ns_links(netns)["br0"]), "br0 is a bridge"
        assert master(netns, UPLINK) == "br0", "the host setting UPLINK is enslaved"
        assert (root / "run/qemu-init/bridge-br0.created").exists()
        ok(sh(netns, bridge, "start"))  # again: nothing to do
        # The admin's part (e.g. /etc/network/interfaces): the host's address on the bridge.
        netns.run(["ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", "br0"])
        assert "BRIDGE" not in qi_in(netns.name, root, "check", check=0).stdout
        timing["bridge up"] = time.monotonic() - started

        # 1. Both guests through their generated SysV scripts; the helper attaches their taps.
        for name in GUESTS:
            ok(sh(netns, initd / f"qemu-{name}", "start"))
        for name, tap in (("alpha", "qi1n0"), ("beta", "qi2n0")):
            links = ns_links(netns)
            assert tap in links, links.keys()
            assert "master br0" in links[tap] and "bridge_slave" in links[tap], links[tap]
            assert re.search(r"\bstate UP\b|<[^>]*\bUP\b", links[tap]), links[tap]
            assert master(netns, tap) == "br0"
            assert mtu(netns, tap) == mtu(netns, "br0") == 1400, "the helper gives the tap the bridge's MTU"
        assert {"qi1n0", "qi2n0", UPLINK} <= set(ok(sh(netns, bridge, "status")).stdout.split())
        assert_host_unchanged(host_guard)  # while it all runs: nothing leaked out of the namespace

        # 2. Each guest pings the other, the bridge's address and the LAN behind the uplink.
        for name, address in GUESTS.items():
            wait_for_line(root / "vms" / f"{name}.serial", f"QI-NET-UP {address}/24", timeout=40)
        for name in GUESTS:
            for target in [a for n, a in GUESTS.items() if n != name] + [BRIDGE_IP, LAN_IP]:
                wait_for_line(root / "vms" / f"{name}.serial", f"QI-PING-OK {target}", timeout=40)
        timing["both guests pinged all"] = time.monotonic() - started

        # 4. MACs: the one in the script, in QEMU's command line, in QEMU's monitor and on the wire
        # agree; they are unique, locally administered unicast, and derived from the name.
        macs = {}
        learned = learned_macs(netns)
        for name, tap in (("alpha", "qi1n0"), ("beta", "qi2n0")):
            mac = qemu_mac(root, name)
            assert mac == monitor_mac(root, name) == mac_in_script(initd / f"qemu-{name}") == derived_mac(name, 0)
            assert learned.get(mac) == tap, f"the bridge never saw {mac} on {tap}: {learned}"
            first = int(mac.split(":")[0], 16)
            assert first & 0x02 and not first & 0x01, f"{mac}: not locally administered unicast"
            macs[name] = mac
        assert len(set(macs.values())) == len(macs)

        # The bridge service does not take down a bridge that has guests attached.
        stopped = ok(sh(netns, bridge, "stop"))
        assert "still has qi1n0 attached: left in place" in stopped.stderr + stopped.stdout
        assert master(netns, "qi1n0") == "br0" and master(netns, UPLINK) == "br0"

        # A restart: the same MAC, the tap attached again, and it still reaches beta.
        pid = pid_of(root, "alpha")
        ok(sh(netns, initd / "qemu-alpha", "restart"))
        assert pid_of(root, "alpha") != pid and not guestkit.process_alive(pid)
        assert qemu_mac(root, "alpha") == monitor_mac(root, "alpha") == macs["alpha"]
        assert master(netns, "qi1n0") == "br0"
        wait_for_line(root / "vms" / "alpha.serial", f"QI-PING-OK {GUESTS['beta']}", timeout=40)
        assert (root / "vms" / "alpha.serial").read_text().count("QI-BOOTED") == 1, "a fresh log, a fresh ping"

        # A regeneration (after an unrelated edit of the rc-file): the same MAC again.
        rcfile = root / "vms" / "beta-qemud.rc"
        rcfile.write_text(rcfile.read_text() + "DESC=edited after the first generation\n")
        qi(root, "generate", "--init", "sysv", check=0)
        assert "edited after" in (initd / "qemu-beta").read_text()
        ok(sh(netns, initd / "qemu-beta", "stop"))
        assert "qi2n0" not in ns_links(netns)
        restarted = ok(sh(netns, initd / "qemu-beta", "start"))
        assert "changed since" not in restarted.stderr
        assert qemu_mac(root, "beta") == monitor_mac(root, "beta") == macs["beta"]
        timing["restart and regenerate"] = time.monotonic() - started

        # 3. Stopping the guests removes their taps; the bridge service then removes its bridge.
        for name in GUESTS:
            pid = pid_of(root, name)
            ok(sh(netns, initd / f"qemu-{name}", "stop"))
            assert not guestkit.process_alive(pid)
        assert set(ns_links(netns)) == {"lo", "br0", UPLINK}
        assert sh(netns, bridge, "status").returncode == 0
        ok(sh(netns, bridge, "stop"))
        assert set(ns_links(netns)) == {"lo", UPLINK}, "br0 was made by the service: it is gone"
        assert master(netns, UPLINK) == "", "the uplink is released"
        assert not (root / "run/qemu-init/bridge-br0.created").exists()
        assert sh(netns, bridge, "status").returncode == 3
        ok(sh(netns, bridge, "stop"))  # again: nothing to do
        assert guestkit.qemu_processes(str(root)) == []
        assert netns.pids() == [] and lan.pids() == []
    timing["all stopped"] = time.monotonic() - started
    print("\nTIMING " + "; ".join(f"{k}: {v:.2f} s" for k, v in timing.items()))


def stub_guest(root: Path, name: str = "stub1", rc: str = "BRIDGE=br0\nSTOPDELAY=1\n", cfg: str = "") -> Path:
    """A registered guest that boots nothing (QEMU sits in its BIOS): enough to generate the
    bridge service and tap scripts, and to start QEMU up to its NICs."""
    host_conf(root, "MINSTOPDELAY=1\n")
    rcfile = write_guest(root / "vms", name, rc=rc, cfg=cfg)
    qi(root, "register", str(rcfile), check=0)
    return rcfile


@needs_netns
def test_bridge_service_leaves_alone_what_it_did_not_make_or_what_others_use(host_guard, sandbox, netns):
    """Acceptance 3, the other half: stop never removes a bridge the service did not create, nor
    one that still has members other than the uplink; a br0 that is no bridge is refused."""
    stub_guest(sandbox)
    qi(sandbox, "generate", "--init", "sysv", check=0)
    bridge, marker = sandbox / "etc/init.d/qemu-bridge-br0", sandbox / "run/qemu-init/bridge-br0.created"

    # The admin's own bridge, with the host's address on it: used, never removed.
    netns.run(["ip", "link", "add", "br0", "type", "bridge"])
    netns.run(["ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", "br0"])
    ok(sh(netns, bridge, "start"))
    assert not marker.exists()
    assert "UP" in ns_links(netns)["br0"].split(">")[0], "the service brings it up"
    ok(sh(netns, bridge, "stop"))
    assert "br0" in ns_links(netns)
    assert f"{BRIDGE_IP}/24" in netns.run(["ip", "-o", "addr", "show", "dev", "br0"]).stdout
    netns.run(["ip", "link", "delete", "br0"])

    # Made by the service, but someone else attached a port meanwhile: left in place.
    ok(sh(netns, bridge, "start"))
    assert marker.exists()
    netns.run(["ip", "tuntap", "add", "dev", "qidummy0", "mode", "tap"])  # no dummy module everywhere
    netns.run(["ip", "link", "set", "qidummy0", "master", "br0"])
    stopped = ok(sh(netns, bridge, "stop"))
    assert "bridge br0 still has qidummy0 attached: left in place" in stopped.stderr
    assert master(netns, "qidummy0") == "br0" and marker.exists()
    netns.run(["ip", "link", "delete", "qidummy0"])
    ok(sh(netns, bridge, "stop"))  # now it is the service's own, and empty
    assert set(ns_links(netns)) == {"lo"} and not marker.exists()

    # Something called br0 that is not a bridge: start fails and says so; stop leaves it be.
    netns.run(["ip", "tuntap", "add", "dev", "br0", "mode", "tap"])
    refused = sh(netns, bridge, "start")
    assert refused.returncode != 0 and "br0 exists but is not a bridge" in refused.stderr
    ok(sh(netns, bridge, "stop"))
    assert "br0" in ns_links(netns) and not marker.exists()


@needs_netns
@pytest.mark.qemu
@pytest.mark.usefixtures("subreaper")
def test_start_without_the_bridge_fails_in_one_line_and_leaves_no_tap(host_guard, sandbox, netns):
    """Acceptance 6: check warns about the missing bridge; start (script and CLI) fails in one
    line naming the bridge and its service; no tap, no QEMU, no pid file is left. A tap lives
    exactly as long as its QEMU, also one that ended without a stop."""
    stub_guest(sandbox)
    qi(sandbox, "generate", "--init", "sysv", check=0)
    script = sandbox / "etc/init.d/qemu-stub1"

    warned = qi_in(netns.name, sandbox, "check", check=0)
    rcfile = sandbox / "vms/stub1-qemud.rc"
    line = next(i for i, text in enumerate(rcfile.read_text().splitlines(), 1) if text.startswith("BRIDGE="))
    assert f"{rcfile}:{line}: BRIDGE: warning: bridge br0 does not exist on this host (yet)" in warned.stdout

    expected = "qemu-init: stub1: bridge br0 does not exist; start the service qemu-bridge-br0 first"
    bridge_script = sandbox / "etc/init.d/qemu-bridge-br0"
    for how, result in (("script", lambda: sh(netns, script, "start")),
                        ("cli", lambda: qi_in(netns.name, sandbox, "start", "stub1"))):
        # The CLI starts a SysV guest's bridge service first (as OpenRC's need and systemd's
        # Requires= do): here the bridge has no service installed.
        if how == "cli":
            bridge_script.rename(bridge_script.with_suffix(".aside"))
        failed = result()
        if how == "cli":
            bridge_script.with_suffix(".aside").rename(bridge_script)
        assert failed.returncode == 1, (how, failed.stdout, failed.stderr)
        lines = failed.stderr.splitlines()
        assert lines == [expected], (how, failed.stderr)
        assert set(ns_links(netns)) == {"lo"}, f"{how}: a tap was left behind"
        assert guestkit.qemu_processes(str(sandbox)) == []
        assert not (sandbox / "run/qemu-init/stub1.pid").exists()
        assert sh(netns, script, "status").returncode == 3

    # With the bridge there, the same script starts the guest, and check no longer warns.
    ok(sh(netns, sandbox / "etc/init.d/qemu-bridge-br0", "start"))
    assert "BRIDGE" not in qi_in(netns.name, sandbox, "check", check=0).stdout
    ok(sh(netns, script, "start"))
    assert master(netns, "qi1n0") == "br0"
    ok(sh(netns, script, "stop"))  # the stubborn BIOS: power button ignored, then quit
    assert set(ns_links(netns)) == {"lo", "br0"}
    ok(sh(netns, script, "start"))  # a QEMU that ends by itself (here: killed) takes its tap along
    pid = int((sandbox / "run/qemu-init/stub1.pid").read_text())
    os.kill(pid, 9)
    assert guestkit.wait_gone(pid)
    deadline = time.monotonic() + 5
    while "qi1n0" in ns_links(netns) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(ns_links(netns)) == {"lo", "br0"}
    assert sh(netns, script, "status").returncode == 1  # dead, pid file left
    ok(sh(netns, sandbox / "etc/init.d/qemu-bridge-br0", "stop"))
    assert set(ns_links(netns)) == {"lo"}

    # The CLI (and qemud at boot) start a SysV guest through its script, its bridge's first.
    ok(qi_in(netns.name, sandbox, "start", "stub1"))
    assert master(netns, "qi1n0") == "br0"
    ok(qi_in(netns.name, sandbox, "stop", "stub1"))
    ok(sh(netns, sandbox / "etc/init.d/qemu-bridge-br0", "stop"))
    assert set(ns_links(netns)) == {"lo"}


def test_a_nic_mac_in_a_cfg_file_that_another_guest_uses_is_an_error(tmp_path):
    """Acceptance 6: a NICn's mac= in a cfg-file clashing with another registered guest's MAC
    (here db1's derived one) is an error at the cfg-file's line, found by `check`."""
    root = tmp_path / "root"
    host_conf(root, "MINSTOPDELAY=1\n")
    for name in ("db1", "web1"):
        qi(root, "register", str(write_guest(tmp_path / "vms", name, rc="BRIDGE=br0\n")), check=0)
    assert qi(root, "check", check=0)
    # The admin edits web1's cfg-file after registration: a second NIC with db1's MAC.
    cfgfile = tmp_path / "vms/web1-qemu.cfg"
    taken = derived_mac("db1", 0)
    cfgfile.write_text(cfgfile.read_text() + f"NIC1=br1,mac={taken.upper()}\n")
    line = len(cfgfile.read_text().splitlines())
    proc = qi(root, "check", check=1)
    assert f"{cfgfile}:{line}: NIC1: MAC {taken} is also used by db1 (MAC)" in proc.stdout
    # A mac= of its own is fine.
    cfgfile.write_text(cfgfile.read_text().replace(taken.upper(), "52:54:00:12:34:56"))
    qi(root, "check", check=0)


def test_macs_depend_on_the_name_only(tmp_path):
    """Acceptance 4 without QEMU: the registration order (so the number and the tap) changes,
    the MACs do not; a NIC's index gives it a MAC of its own."""
    shown = {}
    for order in (("alpha", "beta"), ("beta", "alpha")):
        root = tmp_path / "-".join(order)
        host_conf(root, "MINSTOPDELAY=1\n")
        for name in order:
            rcfile = write_guest(root / "vms", name, rc="BRIDGE=br0\n", cfg="NIC1=br1\n")
            qi(root, "register", str(rcfile), check=0)
        for name in order:
            nics = re.findall(r"^nic(\d)\s+(\S+)\s+\S+\s+(\S+)\s+tap\s+(\S+)$", qi(root, "show", name, check=0).stdout,
                              re.M)
            shown[order, name] = nics
    for name in ("alpha", "beta"):
        first, second = shown[("alpha", "beta"), name], shown[("beta", "alpha"), name]
        assert [n[:3] for n in first] == [n[:3] for n in second], "the MACs stay"
        assert [n[3] for n in first] != [n[3] for n in second], "the taps follow the number"
        assert [n[2] for n in first] == [derived_mac(name, 0), derived_mac(name, 1)]
    macs = [mac for nics in shown.values() for (_, _, mac, _) in nics]
    assert len(set(macs)) == 4


def test_freebsd_bridge_service_uses_ifconfig_addm(tmp_path):
    """What can be checked here of FreeBSD's bridge service: its structure, and that it is plain
    sh (dash -n, shellcheck). The guest's rc.d script hands the helper its taps by name."""
    root = tmp_path / "root"
    host_conf(root, "MINSTOPDELAY=1\nUPLINK=em0\n")
    qi(root, "register", str(write_guest(tmp_path / "vms", "web1", rc="BRIDGE=br0\n")), check=0)
    out = tmp_path / "bsd"
    qi(root, "generate", "--init", "bsd", "--output", str(out), check=0)
    assert not list(out.glob("qemu-if*")), "no tap scripts"
    service = (out / "qemu_bridge_br0").read_text()
    assert "ifconfig bridge create" in service and 'ifconfig "$bridge" addm "$uplink"' in service
    assert "\nuplink=em0\n" in service and 'ifconfig "$bridge" destroy' in service
    assert "PROVIDE: qemu_bridge_br0" in service
    assert not re.search(r"^\s*ip\s", service, re.M), "no iproute2 on FreeBSD"
    guest = (out / "qemu_web1").read_text()
    assert "--tap qi1n0=br0" in guest and "-netdev tap,id=net0,fd=8" in guest
    path = out / "qemu_bridge_br0"
    if shutil.which("dash"):
        assert subprocess.run(["dash", "-n", str(path)], capture_output=True).returncode == 0
    if shutil.which("shellcheck"):
        lint = subprocess.run(["shellcheck", "-s", "sh", str(path)], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout
