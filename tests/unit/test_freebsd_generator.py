"""What qemu-init makes for FreeBSD: QEMU's command line there, and `check --init bsd`'s shutdown
budget (a DEPENDS chain stops one guest after another, so its stop times add up, against
rc.shutdown's rcshutdown_timeout: 90 s unless /etc/rc.conf says otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys


def qi(root, *args, env=None):
    proc = subprocess.run([sys.executable, "-m", "qemu_init", "--root", str(root), *args],
                          capture_output=True, text=True, timeout=60, env=env)
    assert "Traceback" not in proc.stderr and proc.returncode == 0, (proc.stdout, proc.stderr)  # warnings do not fail
    return proc.stdout


def chain(tmp_path, stopdelay=40):
    root, vms = tmp_path / "root", tmp_path / "vms"
    vms.mkdir()
    (root / "etc/qemu-init").mkdir(parents=True)
    (root / "etc/qemu-init/qemu-init.conf").write_text("MINSTOPDELAY=10\n")
    for name, depends in (("app1", "db1"), ("db1", "store1"), ("store1", ""), ("web1", "")):
        (vms / f"{name}-qemud.rc").write_text(f"NAME={name}\nTGTARCH=qemu-system-x86_64\nBRIDGE=none\n"
                                              f"STOPDELAY={stopdelay}\n" + (f"DEPENDS={depends}\n" if depends else ""))
    qi(root, "register", str(vms))
    return root, vms


def test_a_chain_of_three_at_stopdelay_40_outlasts_rcshutdown_timeout(tmp_path):
    root, vms = chain(tmp_path)
    out = qi(root, "check", "--init", "bsd")
    assert (f"{vms}/app1-qemud.rc:5: DEPENDS: warning: stopping the DEPENDS chain app1 -> db1 -> store1 one after"
            " another can take 150 s, but FreeBSD's rc.shutdown gives 90 s (rcshutdown_timeout):"
            f' set rcshutdown_timeout="160" in {root}/etc/rc.conf') in out.splitlines()
    assert "PARALLEL" not in out  # all at once, the four fit; the chain does not
    assert "DEPENDS" not in qi(root, "check", "--init", "sysv")  # 150 s < systemd's 5 minutes for SysV


def test_rcshutdown_timeout_in_rc_conf_counts(tmp_path):
    root, vms = chain(tmp_path)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/rc.conf").write_text('hostname="h1"\nrcshutdown_timeout="120"  # guests\n')
    out = qi(root, "check", "--init", "bsd")
    assert f"can take 150 s, but rcshutdown_timeout in {root}/etc/rc.conf gives 120 s:" in out
    (root / "etc/rc.conf").write_text("rcshutdown_timeout=120\nrcshutdown_timeout=200\n")
    assert "DEPENDS" not in qi(root, "check", "--init", "bsd")


def test_a_short_chain_fits(tmp_path):
    root, _ = chain(tmp_path, stopdelay=15)  # 3 x (15 + forced steps) = 75 s
    assert "0 warning(s)" in qi(root, "check", "--init", "bsd")


def test_freebsd_command_line_has_neither_process_name_nor_sandbox(tmp_path):
    """QEMU on FreeBSD exits at `-name …,process=…` ("Change of process name not supported by
    your OS": no PR_SET_NAME) and at `-sandbox` (seccomp is Linux's)."""
    root, _ = chain(tmp_path)
    linux = qi(root, "show", "web1", "--argv", env={**os.environ, "QEMU_INIT_PLATFORM": "linux"}).splitlines()
    assert linux[1:3] == ["-name", "web1,process=qemu-web1"] and "-sandbox" in linux
    here = qi(root, "show", "web1", "--argv", env={**os.environ, "QEMU_INIT_PLATFORM": "freebsd"}).splitlines()
    assert here[1:3] == ["-name", "web1"] and "-sandbox" not in here
    sandbox = linux.index("-sandbox")
    assert [w.replace(",process=qemu-web1", "") for w in linux[:sandbox] + linux[sandbox + 2:]] == here  # the rest alike
    out = tmp_path / "scripts"
    qi(root, "generate", "--init", "all", "--output", str(out), env={**os.environ, "QEMU_INIT_PLATFORM": "linux"})
    rcd = (out / "bsd/qemu_web1").read_text()
    assert "\t\t-name web1 \\\n" in rcd and "process=" not in rcd and "-sandbox" not in rcd
    assert "-name web1,process=qemu-web1" in (out / "sysv/qemu-web1").read_text()  # made on any host
