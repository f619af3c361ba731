"""The QEMU command line as a pure function of model + host facts."""

import pytest

from qemu_init.cmdline import Facts, plan, qemu_escape
from qemu_init.config import load_guest
from qemu_init.model import Host
from qemu_init.paths import Layout, Paths

PATHS = Paths.for_layout(Layout(), "/srv/root")


def guest_from(tmp_path, rc, cfg=None, host=Host()):
    (tmp_path / "web1-qemud.rc").write_text("NAME=web1\nTGTARCH=qemu-system-x86_64\n" + rc)
    if cfg:
        (tmp_path / "web1-qemu.cfg").write_text(cfg)
    guest, problems = load_guest(str(tmp_path / "web1-qemud.rc"), host)
    assert guest, problems
    return guest


def argv(tmp_path, rc="", cfg=None, number=3, facts=Facts(), host=Host()):
    return list(plan(guest_from(tmp_path, rc, cfg, host), number, host, PATHS, facts).argv)


def option(args, name):
    return [args[i + 1] for i, a in enumerate(args) if a == name]


def test_defaults(tmp_path):
    args = argv(tmp_path)
    assert option(args, "-name") == ["web1,process=qemu-web1"]
    assert "-daemonize" in args
    assert option(args, "-pidfile") == ["/srv/root/run/qemu-init/web1.pid"]
    assert option(args, "-qmp") == ["unix:/srv/root/run/qemu-init/web1.qmp,server=on,wait=off"]
    assert option(args, "-monitor") == ["tcp:localhost:30322,server=on,wait=off"]
    assert option(args, "-vnc") == ["127.0.0.1:3"]
    assert option(args, "-runas") == ["qemud"]
    assert option(args, "-accel") == ["kvm"] and option(args, "-cpu") == ["host"] and option(args, "-m") == ["2G"]
    assert option(args, "-netdev") == [
        "tap,id=net0,ifname=qi3n0,script=/srv/root/etc/qemu-init/qemu-ifup-br0,"
        "downscript=/srv/root/etc/qemu-init/qemu-ifdown-br0"]


@pytest.mark.parametrize("monitor,expected", [
    ("inet", "tcp:127.0.0.1:30322,server=on,wait=off"), ("ipv6", "tcp:[::1]:30322,server=on,wait=off"),
    ("unix", "unix:/srv/root/run/qemu-init/web1.mon,server=on,wait=off"), ("off", "none"), ("0", "none")])
def test_monitor(tmp_path, monitor, expected):
    assert option(argv(tmp_path, f"MONITOR={monitor}\n"), "-monitor") == [expected]


def test_not_set_means_not_passed(tmp_path):
    args = argv(tmp_path, "RUNAS=\nKVM=no\nRAM=0\nDISPLAY=0\nBRIDGE=none\nDAEMON=no\n")
    for gone in ("-runas", "-accel", "-cpu", "-m", "-vnc", "-netdev", "-daemonize"):
        assert gone not in args
    assert option(args, "-display") == ["none"]


def test_run_with_on_new_qemu(tmp_path):
    args = argv(tmp_path, "RUNAS=vm\n", facts=Facts(qemu_version=(9, 1)))
    assert option(args, "-run-with") == ["user=vm"] and "-runas" not in args


def test_drives_escape_commas_and_keep_spaces(tmp_path):
    args = argv(tmp_path, cfg="DSK1=/srv/a,b c.qcow2\nDSK2=/srv/d.img\nCDR1=/iso/x,y.iso\n")
    assert option(args, "-drive") == ["file=/srv/a,,b c.qcow2,if=virtio,format=qcow2",
                                      "file=/srv/d.img,if=virtio,format=raw",
                                      "file=/iso/x,,y.iso,media=cdrom,readonly=on"]


def test_extra_nic_and_raw_options_come_last(tmp_path):
    args = argv(tmp_path, cfg="NIC1=br1,mac=52:54:00:aa:bb:cc,model=e1000\n-device virtio-rng-pci\n")
    assert args[-2:] == ["-device", "virtio-rng-pci"]
    assert "e1000,netdev=net1,mac=52:54:00:aa:bb:cc" in args
    assert any(a.startswith("tap,id=net1,ifname=qi3n1,script=/srv/root/etc/qemu-init/qemu-ifup-br1,") for a in args)


def test_explicit_display_and_ports_follow_host_settings(tmp_path):
    host = Host(monport=40000, vncdisplay=10)
    args = argv(tmp_path, host=host)
    assert option(args, "-vnc") == ["127.0.0.1:12"]
    assert option(args, "-monitor") == ["tcp:localhost:40002,server=on,wait=off"]
    assert option(argv(tmp_path, "DISPLAY=0.0.0.0:7\n"), "-vnc") == ["0.0.0.0:7"]


def test_qemu_escape():
    assert qemu_escape("a,b,,c") == "a,,b,,,,c"
