"""The QEMU command line as a pure function of model, host settings and paths."""

import pytest

from qemu_init.cmdline import plan, qemu_escape
from qemu_init.config import default_host, load_guest
from qemu_init.paths import Layout, Paths

PATHS = Paths.for_layout(Layout(), "/srv/root")


def guest_from(tmp_path, rc, cfg=None, host=default_host()):
    (tmp_path / "web1-qemud.rc").write_text("NAME=web1\nTGTARCH=qemu-system-x86_64\n" + rc)
    if cfg:
        (tmp_path / "web1-qemu.cfg").write_text(cfg)
    guest, problems = load_guest(str(tmp_path / "web1-qemud.rc"), host)
    assert guest, problems
    return guest


def argv(tmp_path, rc="", cfg=None, number=3, host=default_host()):
    return list(plan(guest_from(tmp_path, rc, cfg, host), number, host, PATHS).argv)


def option(args, name):
    return [args[i + 1] for i, a in enumerate(args) if a == name]


def test_defaults(tmp_path):
    """Secure by default: QEMU sandboxed, its control socket and monitor descriptors the helper
    made (root-only), no -daemonize/-pidfile/-runas (the helper does those), taps without scripts."""
    args = argv(tmp_path)
    assert option(args, "-name") == ["web1,process=qemu-web1"]
    assert option(args, "-sandbox") == ["on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]
    assert option(args, "-chardev") == ["socket,id=qmp,fd=3,server=on,wait=off", "socket,id=hmp,fd=4,server=on,wait=off"]
    assert option(args, "-mon") == ["chardev=qmp,mode=control", "chardev=hmp,mode=readline"]
    for gone in ("-daemonize", "-pidfile", "-qmp", "-monitor", "-runas", "-run-with"):
        assert gone not in args
    assert option(args, "-vnc") == ["127.0.0.1:3"]
    assert option(args, "-accel") == ["kvm"] and option(args, "-cpu") == ["host"] and option(args, "-m") == ["2G"]
    assert option(args, "-netdev") == ["tap,id=net0,fd=5"]


def test_plan_says_what_the_helper_makes(tmp_path):
    host = default_host()
    p = plan(guest_from(tmp_path, "", None, host), 3, host, PATHS)
    assert p.runas == "qemud" and p.hmp == "/srv/root/run/qemu-init/web1.mon"
    assert p.taps == (("qi3n0", "br0"),) and p.pidfile == "/srv/root/run/qemu-init/web1.pid"


@pytest.mark.parametrize("rc,runas", [("", "qemud"), ("RUNAS=\n", "qemud"), ("RUNAS=vm\n", "vm"),
                                      ("RUNAS=root\n", "root")])
def test_runas_is_the_system_user_unless_written_out(tmp_path, rc, runas):
    host = default_host()
    assert plan(guest_from(tmp_path, rc, None, host), 3, host, PATHS).runas == runas


@pytest.mark.parametrize("monitor,expected", [
    ("inet", ["-monitor", "tcp:127.0.0.1:30322,server=on,wait=off"]),
    ("ipv6", ["-monitor", "tcp:[::1]:30322,server=on,wait=off"]),
    ("unix", ["-chardev", "socket,id=hmp,fd=4,server=on,wait=off", "-mon", "chardev=hmp,mode=readline"]),
    ("", ["-chardev", "socket,id=hmp,fd=4,server=on,wait=off", "-mon", "chardev=hmp,mode=readline"]),
    ("off", ["-monitor", "none"]), ("0", ["-monitor", "none"])])
def test_monitor(tmp_path, monitor, expected):
    args = argv(tmp_path, f"MONITOR={monitor}\n")
    at = args.index(expected[0], args.index("chardev=qmp,mode=control"))
    assert args[at:at + len(expected)] == expected


def test_not_set_means_not_passed(tmp_path):
    args = argv(tmp_path, "KVM=no\nRAM=0\nDISPLAY=0\nBRIDGE=none\nDAEMON=no\n")
    for gone in ("-accel", "-cpu", "-m", "-vnc", "-netdev", "-daemonize"):
        assert gone not in args
    assert option(args, "-display") == ["none"]


def test_no_bridge_means_no_nic_at_all(tmp_path):
    """QEMU would add a user-mode NIC (outbound NAT) of its own without -nic none."""
    assert option(argv(tmp_path, "BRIDGE=none\n"), "-nic") == ["none"]
    assert "-nic" not in argv(tmp_path, "BRIDGE=none\n", cfg="NIC1=br1\n")


def test_drives_escape_commas_and_keep_spaces(tmp_path):
    args = argv(tmp_path, cfg="DSK1=/srv/a,b c.qcow2\nDSK2=/srv/d.img\nCDR1=/iso/x,y.iso\n")
    assert option(args, "-drive") == ["file=/srv/a,,b c.qcow2,if=virtio,format=qcow2",
                                      "file=/srv/d.img,if=virtio,format=raw",
                                      "file=/iso/x,,y.iso,media=cdrom,readonly=on"]


def test_extra_nic_and_raw_options_come_last(tmp_path):
    args = argv(tmp_path, cfg="NIC1=br1,mac=52:54:00:aa:bb:cc,model=e1000\n-device virtio-rng-pci\n")
    assert args[-2:] == ["-device", "virtio-rng-pci"]
    assert "e1000,netdev=net1,mac=52:54:00:aa:bb:cc" in args
    assert "tap,id=net1,fd=6" in args


def test_explicit_display_and_ports_follow_host_settings(tmp_path):
    host = default_host(monport=40000, vncdisplay=10)
    args = argv(tmp_path, host=host)
    assert option(args, "-vnc") == ["127.0.0.1:12"]
    assert option(argv(tmp_path, "MONITOR=inet\n", host=host), "-monitor") == ["tcp:127.0.0.1:40002,server=on,wait=off"]
    assert option(argv(tmp_path, "DISPLAY=0.0.0.0:7\n"), "-vnc") == ["0.0.0.0:7"]


def test_qemu_escape():
    assert qemu_escape("a,b,,c") == "a,,b,,,,c"
