"""`check` rules on values that parse but cannot work, through the real CLI: the exact lines and
the exit code. (Registry files and autostart: test_cli_registry.py.)"""

from __future__ import annotations

from test_cli import guest, qi


def _root(tmp_path):
    """An empty host root (a --root that does not exist is a usage error)."""
    (tmp_path / "root").mkdir(exist_ok=True)
    return tmp_path / "root"


def _lines(proc):
    """The errors `check` reports (on stdout, where its results go)."""
    return [l for l in proc.stdout.splitlines()
            if "error(s)" not in l and ": warning: " not in l and not l.startswith("no guests registered in ")]


def test_absurd_smp(tmp_path):
    folder = tmp_path / "vms"
    bad = {  # guest: (SMP, what check says)
        "a1": ("2000", "2000: from 1 to 1024 (QEMU's most CPUs)"),
        "b1": ("4,cores=0", "cores=0: from 1 to 1024 (QEMU's most CPUs)"),
        # what QEMU 7.2 itself refuses ("Invalid CPU topology"), said before a start fails
        "c1": ("4,sockets=2,cores=2,threads=2", "sockets=2*cores=2*threads=2 makes 8 CPUs, not 4 CPUs"),
        "d1": ("4,maxcpus=16,sockets=2,cores=2,threads=2",
               "sockets=2*cores=2*threads=2 makes 8 CPUs, not maxcpus=16"),
        "d2": ("4,sockets=3", "sockets=3 does not divide 4 CPUs"),
        "d3": ("8,cores=3,threads=2", "cores=3*threads=2 (6) does not divide 8 CPUs"),
        "e1": ("8,maxcpus=4", "8 CPUs but maxcpus=4"),
        "f1": ("sockets=64,cores=32", "the topology makes 2048 CPUs, more than QEMU's 1024"),
        "g1": ("4,cores=2,cores=2", "not a CPU count or topology: '4,cores=2,cores=2'"
               " (e.g. 2, or 4,sockets=1,cores=4,threads=1)"),
        "h1": ("4,bogus=2", "not a CPU count or topology: '4,bogus=2' (e.g. 2, or 4,sockets=1,cores=4,threads=1)"),
        "i1": ("4,", "not a CPU count or topology: '4,' (e.g. 2, or 4,sockets=1,cores=4,threads=1)"),
    }
    for name, (smp, _) in bad.items():
        guest(folder, name, f"SMP={smp}\n")
    for name, smp in {"ok1": "1024", "ok2": "8,sockets=2,cores=2,threads=2", "ok3": "cpus=2,maxcpus=8,sockets=2,cores=4,threads=1",
                      "ok4": "6,sockets=2", "ok5": "4,maxcpus=8,sockets=2", "ok6": "sockets=2,cores=2"}.items():
        guest(folder, name, f"SMP={smp}\n")
    proc = qi(_root(tmp_path), "check", str(folder), check=1)
    assert _lines(proc) == [f"{folder}/{name}-qemud.rc:5: SMP: {message}" for name, (_, message) in bad.items()]
    assert proc.stdout.splitlines()[-1].startswith(f"{len(bad)} error(s)")


def test_desc_of_more_than_a_line(tmp_path):
    folder = tmp_path / "vms"
    guest(folder, "long1", "DESC=" + "x" * 201 + "\n")
    guest(folder, "fits1", "DESC='" + "y" * 200 + "'\n")
    proc = qi(_root(tmp_path), "check", str(folder), check=1)
    assert _lines(proc) == [f"{folder}/long1-qemud.rc:5: DESC: at most 200 characters (one line), this has 201"]


def test_vnc_displays_beyond_port_65535(tmp_path):
    root, folder = tmp_path / "root", tmp_path / "vms"
    conf = root / "etc/qemu-init/qemu-init.conf"
    conf.parent.mkdir(parents=True)
    guest(folder, "own1", "DISPLAY=59636\n")
    guest(folder, "own2", "DISPLAY=127.0.0.1:59635\n")  # port 65535: the last that fits
    proc = qi(root, "check", str(folder), check=1)
    assert _lines(proc) == [f"{folder}/own1-qemud.rc:5: DISPLAY: display 59636 would be port 65536, beyond 65535"]

    conf.write_text("VNCDISPLAY=59636\n")
    proc = qi(root, "check", check=1)
    assert _lines(proc) == [f"{conf}:1: VNCDISPLAY: display 59636 would be port 65536, beyond 65535"]

    # guest N's automatic display is VNCDISPLAY+N-1: the third guest is one too many
    conf.write_text("VNCDISPLAY=59634\n")
    for name in ("own1", "own2"):
        (folder / f"{name}-qemud.rc").unlink()
    for name in ("auto1", "auto2", "auto3"):
        guest(folder, name)
        qi(root, "register", str(folder / f"{name}-qemud.rc"), check=1 if name == "auto3" else 0)
    assert "auto3" not in (root / "etc/qemu-init/registered").read_text()  # refused, not half-registered
    proc = qi(root, "check", str(folder / "auto3-qemud.rc"), check=1)
    assert _lines(proc) == [f"{folder}/auto3-qemud.rc: DISPLAY: the automatic VNC display 59636 (VNCDISPLAY+2)"
                            " would be port 65536, beyond 65535 (lower VNCDISPLAY or set DISPLAY)"]
    conf.write_text("VNCDISPLAY=59635\n")  # now auto2 (number 2) is past the end: every registered guest counts
    proc = qi(root, "check", check=1)
    assert _lines(proc) == [f"{folder}/auto2-qemud.rc: DISPLAY: the automatic VNC display 59636 (VNCDISPLAY+1)"
                            " would be port 65536, beyond 65535 (lower VNCDISPLAY or set DISPLAY)"]
    refused = qi(root, "install", "--init", "sysv", check=1)  # nothing is installed with an impossible port
    assert "auto2-qemud.rc: DISPLAY: the automatic VNC display 59636" in refused.stderr
