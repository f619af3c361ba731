"""What qemu-init prints for everyday commands (issue 14): every problem at once, on stdout;
what it changed said; the folder in use named; tables that fit; --json."""

from test_cli import guest, qi


def test_check_reports_every_phase_at_once_sorted_on_stdout(tmp_path):
    """A bad value, a DEPENDS on nobody and a missing disk: all three in one run, by file and line."""
    root, folder = tmp_path / "root", tmp_path / "vms"
    rc = guest(folder, "web1", "RAM=lots\nDEPENDS=nosuch\nSTOPDELAY=20\n", cfg="DSK1=/nonexistent/web1.qcow2\n")
    proc = qi(root, "check", str(folder), check=1)
    assert proc.stderr == ""
    lines = [l for l in proc.stdout.splitlines() if "RUNAS" not in l]  # the host's users vary
    assert lines == [
        f"{folder}/web1-qemu.cfg:1: DSK1: warning: /nonexistent/web1.qcow2 does not exist",
        f"{rc}:5: RAM: not a memory size: 'lots' (e.g. 512M, 2G)",
        f"{rc}:6: DEPENDS: 'nosuch' is not a registered guest",
        f"{rc}:7: STOPDELAY: warning: 20 s is below the host's MINSTOPDELAY: 40 s is used",
        lines[-1],
    ]
    assert lines[-1].startswith("2 error(s), ")


def test_check_clean_says_so_on_stdout(tmp_path):
    root, folder = tmp_path / "root", tmp_path / "vms"
    guest(folder, "db1", "RUNAS=\n")
    qi(root, "register", str(folder), check=0)
    proc = qi(root, "check", "--init", "sysv", check=0)
    assert proc.stdout.splitlines()[-1] == "0 error(s), 1 warning(s)"  # RUNAS empty: a warning


def test_show_says_stopdelay_was_raised(tmp_path):
    root, folder = tmp_path / "root", tmp_path / "vms"
    rc = guest(folder, "web1", "STOPDELAY=20\n")
    qi(root, "register", str(folder), check=0)
    proc = qi(root, "show", "web1", check=0)
    assert "stop delay      40 s (raised to MINSTOPDELAY)" in proc.stdout.splitlines()
    assert proc.stderr.splitlines() == [
        f"{rc}:5: STOPDELAY: warning: 20 s is below the host's MINSTOPDELAY: 40 s is used"]
    proc = qi(root, "show", "--argv", "web1", check=0)
    assert proc.stdout.startswith("qemu-system-x86_64\n")
