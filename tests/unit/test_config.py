"""Reading rc-files and cfg-files: every rule of SPEC §1.2, §2 and §3, every problem located."""


import pytest

from qemu_init.config import default_host, derived_mac, load_guest, load_host

HOST = default_host()
VALID = "NAME=web1\nTGTARCH=qemu-system-x86_64\n"


def write(folder, name, rc, cfg=None):
    rc_path = folder / f"{name}-qemud.rc"
    rc_path.write_bytes(rc if isinstance(rc, bytes) else rc.encode())
    if cfg is not None:
        (folder / f"{name}-qemu.cfg").write_bytes(cfg if isinstance(cfg, bytes) else cfg.encode())
    return str(rc_path)


def problems_of(tmp_path, rc, cfg=None, name="web1"):
    guest, problems = load_guest(write(tmp_path, name, rc, cfg), HOST)
    return guest, [str(p) for p in problems]


def test_minimal_guest_takes_every_default(tmp_path):
    guest, problems = problems_of(tmp_path, VALID)
    assert problems == []
    assert (guest.name, guest.ram, guest.daemon, guest.kvm, guest.cpu) == ("web1", "2G", True, True, "host")
    assert guest.stopdelay == 40 and guest.runas == "qemud" and guest.display_auto
    assert [(n.bridge, n.model, n.mac) for n in guest.nics] == [("br0", "virtio-net-pci", derived_mac("web1", 0))]


def test_quotes_comments_and_not_set(tmp_path):
    rc = VALID + "DESC='say \"hi\" # not a comment'\nRAM=0\nSMP=  # nothing\nCPU=\"qemu64\"  # a comment\nKVM=off\n"
    guest, problems = problems_of(tmp_path, rc)
    assert problems == []
    assert guest.desc == 'say "hi" # not a comment'
    assert guest.ram == "" and guest.smp == "" and guest.cpu == "qemu64" and guest.kvm is False


def test_nothing_is_expanded(tmp_path):
    rc = VALID + "DESC=$(touch /tmp/x) `id` ${HOME} ; rm -rf /\n"
    guest, problems = problems_of(tmp_path, rc)
    assert problems == [] and guest.desc == "$(touch /tmp/x) `id` ${HOME} ; rm -rf /"


@pytest.mark.parametrize("name,rc,where", [
    ("web1", "NAME=web.1\nTGTARCH=qemu-system-x86_64\n", ":1: NAME: letters and digits only"),
    ("web1", "NAME=web-1\nTGTARCH=qemu-system-x86_64\n", ":1: NAME: letters and digits only"),
    ("a" * 41, f"NAME={'a' * 41}\nTGTARCH=qemu-system-x86_64\n", ":1: NAME: at most 40 characters"),
    ("web10", "NAME=web10\nTGTARCH=qemu-system-x86_64\n", ":1: NAME: must not end with the digit 0"),
    ("web1", "NAME=web2\nTGTARCH=qemu-system-x86_64\n", ":1: NAME: 'web2' does not match the file name"),
    ("web1", "TGTARCH=qemu-system-x86_64\n", ": NAME: missing, must be set"),
    ("web1", "NAME=\nTGTARCH=qemu-system-x86_64\n", ":1: NAME: must be set, not empty or 0"),
    ("web1", "NAME=web1\n", ": TGTARCH: missing, must be set"),
    ("web1", "NAME=web1\nTGTARCH=''\n", ":2: TGTARCH: must be set, not empty or 0"),
    ("web1", "NAME=web1\nTGTARCH=bash\n", ":2: TGTARCH: not a QEMU system emulator"),
    ("web1", VALID + "RAMM=2G\n", ":3: RAMM: unknown key (did you mean RAM?)"),
    ("web1", VALID + "RAM=1G\nRAM=2G\n", ":4: RAM: duplicate key, already set at line 3"),
    ("web1", VALID + "RAM=lots\n", ":3: RAM: not a memory size"),
    ("web1", VALID + "SMP=-1\n", ":3: SMP: not a CPU count"),
    ("web1", VALID + "MAC=52:54:00:zz:00:01\n", ":3: MAC: not a MAC address"),
    ("web1", VALID + "MAC=01:54:00:00:00:01\n", ":3: MAC: a multicast MAC"),
    ("web1", VALID + "KVM=maybe\n", ":3: KVM: not a boolean"),
    ("web1", VALID + "MONITOR=telnet\n", ":3: MONITOR: not a monitor kind"),
    ("web1", VALID + "STOPDELAY=soon\n", ":3: STOPDELAY: not a number of seconds"),
    ("web1", VALID + "STOPDELAY=-5\n", ":3: STOPDELAY: not a number of seconds"),
    ("web1", VALID + "DESC='open\n", ":3: DESC: unterminated quote"),
    ("web1", VALID + "DESC=\"a\" b\n", ":3: DESC: text after the closing quote"),
    ("web1", VALID + "just words\n", ":3: not KEY=VALUE"),
    ("web1", VALID + "DEPENDS=db1 db-2\n", ":3: DEPENDS: 'db-2' is not a guest name"),
    ("web1", VALID + "BRIDGE=averyveryverylongbridge\n", ":3: BRIDGE: not a network interface name"),
    ("web1", VALID + "DISPLAY=here\n", ":3: DISPLAY: not a VNC display"),
])
def test_rc_rule_breaks(tmp_path, name, rc, where):
    guest, problems = problems_of(tmp_path, rc, name=name.lower())
    assert guest is None
    assert any(where in p for p in problems), problems


def test_non_utf8_is_located(tmp_path):
    guest, problems = problems_of(tmp_path, VALID.encode() + b"DESC=caf\xe9\n")
    assert guest is None and problems == [f"{tmp_path}/web1-qemud.rc:3: not UTF-8 text (byte 0xe9)"]


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    rc = "NAME=web1\nTGTARCH=bash\nRAM=x\nSMP=y\nFOO=1\n"
    _, problems = problems_of(tmp_path, rc)
    assert [p.split(": ", 2)[1] for p in problems] == ["TGTARCH", "RAM", "SMP", "FOO"]


@pytest.mark.parametrize("cfg,where", [
    ("DSK1=a.img\nDSK3=c.img\n", ":2: DSK3: numbered with a gap: DSK2 is missing"),
    ("DSK2=a.img\n", ":1: DSK2: numbered with a gap: DSK1 is missing"),
    ("CDR1=a.iso\nCDR1=b.iso\n", ":2: CDR1: duplicate, already set at line 1"),
    ("DSK1=\n", ":1: DSK1: must not be empty"),
    ("-name other\n", ":1: -name: qemu-init sets this option itself"),
    ("-m 1G -daemonize\n", ":1: -daemonize: qemu-init sets this option itself"),
    ("--pidfile /tmp/x\n", ":1: -pidfile: qemu-init sets this option itself"),
    ("-qmp tcp:0:4444\n-monitor stdio\n", ":2: -monitor: qemu-init sets this option itself"),
    ("-runas nobody\n", ":1: -runas: qemu-init sets this option itself"),
    ("-run-with user=nobody\n", ":1: -run-with: qemu-init sets this option itself"),
    ("-sandbox off\n", ":1: -sandbox: qemu-init sets this option itself"),
    ("-drive 'file=a.img\n", ":1: unterminated quote"),
    ("NIC1=br1,speed=10\n", ":1: NIC1: unknown NIC property"),
    ("NIC1=br1,mac=xx\n", ":1: NIC1: not a MAC address"),
    ("NIC1=br/1\n", ":1: NIC1: not a network interface name"),
    ("NIC1=averyveryverylongbridge\n", ":1: NIC1: not a network interface name"),
    (b"-device caf\xc3\x28\n", ":1: not UTF-8 text"),
])
def test_cfg_rule_breaks(tmp_path, cfg, where):
    guest, problems = problems_of(tmp_path, VALID, cfg)
    assert guest is None
    assert any(where in p and p.startswith(f"{tmp_path}/web1-qemu.cfg:") for p in problems), problems


def test_cfg_shorthands_and_raw_options(tmp_path):
    cfg = "# disks\nDSK1=a.qcow2\nDSK2=/srv/my,disk.img\nCDR1=/iso/x.iso\nNIC1=br1,model=e1000\n" \
          "-device virtio-rng-pci  # entropy\n-drive 'file=/srv/data disk.img,if=virtio'\n"
    guest, problems = problems_of(tmp_path, VALID, cfg)
    assert problems == []
    assert [(d.kind, d.index, d.file) for d in guest.drives] == [
        ("disk", 1, f"{tmp_path}/a.qcow2"), ("disk", 2, "/srv/my,disk.img"), ("cdrom", 1, "/iso/x.iso")]
    assert [(n.index, n.bridge, n.model) for n in guest.nics] == [(0, "br0", "virtio-net-pci"), (1, "br1", "e1000")]
    assert guest.raw == ("-device", "virtio-rng-pci", "-drive", "file=/srv/data disk.img,if=virtio")


def test_stopdelay_is_raised_to_the_host_minimum(tmp_path):
    guest, _ = problems_of(tmp_path, VALID + "STOPDELAY=5\n")
    assert guest.stopdelay == 40
    guest, _ = load_guest(write(tmp_path, "web1", VALID + "STOPDELAY=5\n"), default_host(minstopdelay=3))
    assert guest.stopdelay == 5


def test_mac_is_stable_and_locally_administered():
    mac = derived_mac("Web1", 0)
    assert mac == derived_mac("web1", 0) != derived_mac("web1", 1)
    first = int(mac[:2], 16)
    assert first & 2 and not first & 1


def test_host_settings(tmp_path):
    conf = tmp_path / "qemu-init.conf"
    conf.write_text("BRIDGE=vmbr0\nMINSTOPDELAY=3\nPARALLEL=2\n")
    host, problems = load_host(str(conf))
    assert problems == [] and (host.bridge, host.minstopdelay, host.parallel, host.monport) == ("vmbr0", 3, 2, 30320)
    conf.write_text("MONPORT=80\nBRIDGE=x y\n")
    _, problems = load_host(str(conf))
    assert [str(p) for p in problems] == [
        f"{conf}:1: MONPORT: not a TCP port from 1024 to 65535: '80'",
        f"{conf}:2: BRIDGE: not a network interface name (at most 15 of A-Z a-z 0-9 _ . -): 'x y'"]
    host, problems = load_host(str(tmp_path / "absent.conf"))
    assert problems == [] and host.bridge == "br0"


@pytest.mark.parametrize("rc,where", [
    ("NAME=0\nTGTARCH=qemu-system-x86_64\n", ":1: NAME: must be set, not empty or 0"),
    ("NAME=web1\nTGTARCH=0\n", ":2: TGTARCH: must be set, not empty or 0"),
    (VALID + "SMP=²\n", ":3: SMP: not a CPU count"),
    (VALID + "STOPDELAY=²\n", ":3: STOPDELAY: not a number of seconds"),
])
def test_required_zero_and_unicode_digits(tmp_path, rc, where):
    guest, problems = problems_of(tmp_path, rc)
    assert guest is None and any(where in p for p in problems), problems


def test_empty_delays_mean_the_default(tmp_path):
    guest, problems = problems_of(tmp_path, VALID + "BOOTDELAY=\nSTOPDELAY=\n")
    assert problems == [] and (guest.bootdelay, guest.stopdelay) == (0, 40)


@pytest.mark.parametrize("data,where", [
    (VALID.encode() + b"DESC='a\rExecStartPre=/bin/touch /tmp/x'\n", ":3: control character U+000D"),
    (VALID.encode() + b"DESC=a\x00b\n", ":3: control character U+0000"),
    (VALID.encode() + "DESC=a\u2028b\n".encode(), ":3: control character U+2028"),
])
def test_control_characters_are_refused(tmp_path, data, where):
    guest, problems = problems_of(tmp_path, data)
    assert guest is None and any(where in p for p in problems), problems
    _, problems = problems_of(tmp_path, VALID, data.split(b"\n")[2] .replace(b"DESC=", b"-device ") + b"\n")
    assert any(":1: control character" in p and p.startswith(f"{tmp_path}/web1-qemu.cfg") for p in problems)


def test_crlf_files_are_fine(tmp_path):
    guest, problems = problems_of(tmp_path, VALID.replace("\n", "\r\n").encode())
    assert problems == [] and guest.name == "web1"


@pytest.mark.parametrize("line,words", [
    ("-drive file=/srv/vm/disk#2.img,if=virtio  # second disk", ("-drive", "file=/srv/vm/disk#2.img,if=virtio")),
    ("-append 'a # b' # c", ("-append", "a # b")),
    ("-device x,id=a#b", ("-device", "x,id=a#b")),
])
def test_a_hash_inside_a_word_is_no_comment(tmp_path, line, words):
    guest, problems = problems_of(tmp_path, VALID, line + "\n")
    assert problems == [] and guest.raw == words


def test_a_comment_with_quotes_after_a_quoted_value(tmp_path):
    guest, problems = problems_of(tmp_path, VALID + 'DESC="web" # the "main" one"\n')
    assert problems == [] and guest.desc == "web"


def test_onshutdown_and_the_save_budget(tmp_path):
    guest, problems = problems_of(tmp_path, VALID)
    assert problems == [] and guest.onshutdown == "shutdown"
    guest, _ = problems_of(tmp_path, VALID + "ONSHUTDOWN=save\nRAM=2G\n")
    assert guest.onshutdown == "save" and guest.savetime == 5 + 21  # 2 GiB at 100 MiB/s, and the slack
    # the host's default, unless the guest says otherwise; SAVESPEED sets the budget
    host, problems = load_host(write_host(tmp_path, "ONSHUTDOWN=save\nSAVESPEED=1G\n"))
    assert problems == [] and (host.onshutdown, host.savespeed) == ("save", 1 << 30)
    assert load_guest(write(tmp_path, "web1", VALID + "RAM=4G\n"), host)[0].savetime == 5 + 4
    assert load_guest(write(tmp_path, "web1", VALID + "ONSHUTDOWN=shutdown\n"), host)[0].onshutdown == "shutdown"
    _, problems = problems_of(tmp_path, VALID + "ONSHUTDOWN=suspend\n")
    assert problems == [f"{tmp_path}/web1-qemud.rc:3: ONSHUTDOWN: not a shutdown mode: 'suspend' (use shutdown or save)"]
    _, problems = load_host(write_host(tmp_path, "SAVESPEED=quick\n"))
    assert [str(p) for p in problems] == [f"{tmp_path}/qemu-init.conf:1: SAVESPEED: not a speed: 'quick'"
                                          " (a size per second, e.g. 100M)"]


def write_host(folder, text):
    path = folder / "qemu-init.conf"
    path.write_text(text)
    return str(path)
