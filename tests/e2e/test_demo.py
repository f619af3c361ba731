"""The README's demo command, as a new user runs it: `make demo` (issue 2, acceptance 1)."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Where an installed qemu-init would write; the demo must touch none of them.
HOST_PATHS = ["/etc/qemu-init", "/run/qemu-init", "/var/lib/qemu-init", "/var/log/qemu-init",
              "/etc/init.d/qemu-demo", "/etc/init.d/qemud", "/etc/systemd/system/qemu-demo.service"]


def snapshot():
    return {p: os.path.exists(p) and os.stat(p).st_mtime_ns for p in HOST_PATHS}


def test_make_demo_shows_the_guest_its_check_and_command_line(tmp_path):
    root = tmp_path / "demo-root"
    before = snapshot()
    proc = subprocess.run(["make", "-s", "-C", str(REPO), "demo", f"DEMO_ROOT={root}"],
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    assert "registered demo as number 1" in out
    assert "0 error(s)" in out  # check's verdict (warnings about this host may come with it)
    argv = out.split("QEMU command line:\n", 1)[1].split("\n$ ", 1)[0].splitlines()
    assert argv[:3] == ["qemu-system-x86_64", "-name", "demo,process=qemu-demo"]
    assert f"file={root}/guests/demo/demo-disk.qcow2,if=virtio,format=qcow2" in argv
    assert (root / "scripts/sysv/qemu-demo").exists() and (root / "scripts/systemd/qemu-demo.service").exists()
    assert snapshot() == before
    # Everything the demo wrote is below its root.
    assert (root / "etc/qemu-init/registered").exists()


def test_make_demo_never_wipes_a_folder_it_did_not_make(tmp_path):
    root = tmp_path / "somebodys"
    root.mkdir()
    (root / "precious").write_text("keep me\n")
    proc = subprocess.run(["make", "-s", "-C", str(REPO), "demo", f"DEMO_ROOT={root}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert (f"make demo: {root} exists and was not made by the demo: not wiping it"
            " (choose another DEMO_ROOT=)") in proc.stderr
    assert [p.name for p in root.iterdir()] == ["precious"] and (root / "precious").read_text() == "keep me\n"
    fresh = tmp_path / "demo"
    for _ in range(2):  # its own folder, made by the demo (marked), it may wipe and make again
        proc = subprocess.run(["make", "-s", "-C", str(REPO), "demo", f"DEMO_ROOT={fresh}"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert (fresh / ".qemu-init-demo").exists()
