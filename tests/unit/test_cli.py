"""The command line as a user runs it: exit codes, one line per problem, never a traceback."""

import inprocess

VALID = "NAME={name}\nTGTARCH=qemu-system-x86_64\nKVM=no\n"


def qi(root, *args, check=None):
    """`qemu-init --root ROOT ARGS...`, run in this process (inprocess.py)."""
    proc = inprocess.run(["--root", str(root), *args])
    assert "Traceback" not in proc.stderr, proc.stderr
    if check is not None:
        assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


def guest(folder, name, extra="", cfg=None):
    folder.mkdir(parents=True, exist_ok=True)
    rc = folder / f"{name.lower()}-qemud.rc"
    rc.write_text(VALID.format(name=name) + (extra if "BRIDGE=" in extra else "BRIDGE=none\n" + extra))
    if cfg is not None:
        (folder / f"{name.lower()}-qemu.cfg").write_text(cfg)
    return rc


def test_new_register_list_show_check(tmp_path):
    root, vms = tmp_path / "root", tmp_path / "vms"
    vms.mkdir()
    qi(root, "new", "web1", "--dir", str(vms), check=0)
    assert (vms / "web1-qemud.rc").exists() and (vms / "web1-qemu.cfg").exists()
    qi(root, "new", "web1", "--dir", str(vms), check=1)  # never overwrites
    out = qi(root, "register", str(vms), check=0).stdout
    assert "registered web1 as number 1" in out
    assert (root / "etc/qemu-init/registered").read_text().splitlines()[1:] == [f"1 web1 {vms}"]
    listing = qi(root, "list", check=0).stdout
    assert "web1" in listing and "stopped" in listing
    argv = qi(root, "show", "--argv", "web1", check=0).stdout.splitlines()
    assert argv[:3] == ["qemu-system-x86_64", "-name", "web1,process=qemu-web1"]
    assert qi(root, "check").returncode == 0  # warnings (bridge, user) do not fail


def test_check_reports_every_problem_one_line_each(tmp_path):
    folder = tmp_path / "vms"
    guest(folder, "web1", "RAM=lots\nFOO=1\n", cfg="DSK2=x.img\n-pidfile /x\n")
    proc = qi(tmp_path, "check", str(folder), check=1)
    lines = [l for l in proc.stdout.splitlines() if ": " in l and "error(s)" not in l and "RUNAS" not in l]
    assert lines == [  # sorted by file and line
        f"{folder}/web1-qemu.cfg:1: DSK2: numbered with a gap: DSK1 is missing",
        f"{folder}/web1-qemu.cfg:2: -pidfile: qemu-init sets this option itself; remove it from the cfg-file",
        f"{folder}/web1-qemud.rc:5: RAM: not a memory size: 'lots' (e.g. 512M, 2G)",
        f"{folder}/web1-qemud.rc:6: FOO: unknown key",
    ]
    assert proc.stderr == ""


def test_name_clash_in_another_case_is_refused(tmp_path):
    root = tmp_path / "root"
    qi(root, "register", str(guest(tmp_path / "a", "Web1")), check=0)
    other = guest(tmp_path / "b", "WEB1")
    proc = qi(root, "register", str(other), check=1)
    assert f"{other}:1: NAME: 'WEB1' is already registered from {tmp_path}/a/web1-qemud.rc" in proc.stderr
    assert qi(root, "check", str(other), check=1)


def test_cross_guest_errors(tmp_path):
    root = tmp_path / "root"
    qi(root, "register", str(guest(tmp_path / "a", "db1", "BRIDGE=br0\nMAC=52:54:00:00:00:01\n")), check=0)
    proc = qi(root, "check", str(guest(tmp_path / "b", "web1", "BRIDGE=br0\nMAC=52:54:00:00:00:01\n"
                                                            "DEPENDS=db1 nosuch1\n")), check=1)
    assert "MAC: MAC 52:54:00:00:00:01 is also used by db1 (MAC)" in proc.stdout
    assert "DEPENDS: 'nosuch1' is not a registered guest" in proc.stdout


def test_dependency_cycle_is_an_error(tmp_path):
    root = tmp_path / "root"
    folder = tmp_path / "vms"
    guest(folder, "a1", "DEPENDS=b1\n")
    guest(folder, "b1", "DEPENDS=a1\n")
    assert "dependency cycle: a1 -> b1 -> a1" in qi(root, "register", str(folder), check=1).stderr
    assert "dependency cycle: a1 -> b1 -> a1" in qi(root, "check", str(folder), check=1).stdout


def test_unknown_guest_and_bad_name_are_one_line(tmp_path):
    root = tmp_path
    proc = qi(root, "show", "nosuch", check=1)
    assert proc.stderr.strip() == "qemu-init: nosuch: not a registered guest (see `qemu-init list`)"
    proc = qi(root, "new", "bad-name", "--dir", str(tmp_path), check=1)
    assert proc.stderr.strip() == "<command line>: NAME: letters and digits only, '-' is not allowed in 'bad-name'"


def test_hostile_values_stay_data(tmp_path):
    root, folder = tmp_path / "root", tmp_path / "vms"
    canary = tmp_path / "canary"
    evil_dir = folder / f"$(touch {canary}); `touch {canary}`"
    evil_dir.mkdir(parents=True)
    disk = evil_dir / "disk, with 'quotes' \"and\" ;semicolons.img"
    disk.write_bytes(b"")
    guest(folder, "web1", f"DESC=\"$(touch {canary}) `touch {canary}`; rm -rf /\"\n",
          cfg=f"DSK1='{disk}'\n-device \"virtio-rng-pci,id=r$(x)\"\n")
    qi(root, "register", str(folder), check=0)
    argv = qi(root, "show", "--argv", "web1", check=0).stdout.split("\n")
    escaped = str(disk).replace(",", ",,")
    assert f"file={escaped},if=virtio,format=raw" in argv
    assert "virtio-rng-pci,id=r$(x)" in argv
    qi(root, "show", "web1", check=0)
    assert not canary.exists()


def test_autostart_and_unregister(tmp_path):
    root = tmp_path / "root"
    for name in ("a1", "b1", "c1"):
        qi(root, "register", str(guest(tmp_path / "vms", name)), check=0)
    for name in ("c1", "a1", "c1"):
        qi(root, "autostart", "on", name, check=0)
    assert qi(root, "autostart", "list", check=0).stdout.split() == ["c1", "a1"]
    qi(root, "unregister", "c1", check=0)
    assert qi(root, "autostart", "list", check=0).stdout.split() == ["a1"]
    assert "c1" not in qi(root, "list", check=0).stdout
    # A number is never handed out again, not even to the same guest coming back.
    assert "c1 as number 4" in qi(root, "register", str(tmp_path / "vms" / "c1-qemud.rc"), check=0).stdout


def test_internal_errors_are_one_line(tmp_path):
    root = tmp_path / "root"
    (root / "etc/qemu-init").mkdir(parents=True)
    (root / "etc/qemu-init/registered").write_text("garbage\n")
    proc = qi(root, "list", check=1)
    assert proc.stderr.strip() == f"{root}/etc/qemu-init/registered:1: not NUMBER NAME FOLDER: 'garbage'"


def test_check_warns_when_stopdelays_cannot_fit_the_shutdown_budget(tmp_path):
    root = tmp_path / "root"
    for name in ("a1", "b1", "c1", "d1"):
        guest(tmp_path / "vms", name, "STOPDELAY=60\n")
    qi(root, "register", str(tmp_path / "vms"), check=0)
    # All at once: 60 s + forced steps fit FreeBSD's 90 s.
    assert "PARALLEL" not in qi(root, "check", "--init", "bsd", check=0).stdout
    (root / "etc/qemu-init/qemu-init.conf").write_text("PARALLEL=2\n")
    proc = qi(root, "check", "--init", "bsd", check=0)  # a warning does not fail
    assert (f"{root}/etc/qemu-init/qemu-init.conf: PARALLEL: warning: stopping 4 guests (PARALLEL=2) can take"
            " 140 s, but FreeBSD's rc.shutdown gives 90 s (rcshutdown_timeout)") in proc.stdout
    assert "PARALLEL" not in qi(root, "check", "--init", "sysv", check=0).stdout  # 140 s < 5 minutes


def test_the_same_name_twice_among_new_files_is_one_error_line(tmp_path):
    root = tmp_path
    first, second = guest(tmp_path / "b", "db1"), guest(tmp_path / "c", "DB1")
    proc = qi(root, "check", str(tmp_path / "b"), str(tmp_path / "c"), check=1)
    assert f"{second}:1: NAME: 'DB1' is also the name in {first} (names are compared in lower case)" in proc.stdout
    assert qi(root, "register", str(first), str(first), check=0).stdout.count("registered db1") == 1


def test_status_of_an_unknown_guest_is_lsb_unknown_and_os_errors_are_one_line(tmp_path):
    root = tmp_path
    proc = qi(root, "status", "nosuch1", check=4)
    assert proc.stderr.strip() == "qemu-init: nosuch1: not a registered guest (see `qemu-init list`)"
    proc = qi(root, "new", "foo1", "--dir", "/proc/self/nonexistent", check=1)
    assert proc.stderr.strip().startswith("qemu-init: /proc/self/nonexistent") and len(proc.stderr.splitlines()) == 1


def test_a_disk_format_never_follows_what_the_guest_wrote_into_it(tmp_path):
    root, folder = tmp_path / "root", tmp_path / "vms"
    folder.mkdir()
    (folder / "db1.img").write_bytes(b"QFI\xfb" + b"\0" * 508)  # a raw disk whose guest wrote a qcow2 header
    guest(folder, "db1", cfg="DSK1=db1.img\n")
    qi(root, "register", str(folder), check=0)
    assert f"file={folder}/db1.img,if=virtio,format=raw" in qi(root, "show", "--argv", "db1", check=0).stdout
    assert ("DSK1: warning: its first bytes look like qcow2, its name says raw: QEMU is told raw;"
            " if it really is qcow2, name it .qcow2") in qi(root, "check", check=0).stdout


def test_console_of_a_stopped_guest_and_its_usage(tmp_path):
    """`console`: a stopped guest is said in one line; --tail with no log yet too; a count without
    --tail is a usage error; `show` says where the console is, or why there is none."""
    root, vms = tmp_path / "root", tmp_path / "vms"
    guest(vms, "con1", "AGENT=yes\n")
    guest(vms, "ser1", cfg="-serial pty\n")
    qi(root, "register", str(vms), check=0)
    gone = qi(root, "console", "con1", check=1)
    assert gone.stderr == "qemu-init: con1: not running (no console socket)\n"
    tail = qi(root, "console", "con1", "--tail", "5", check=1)
    assert tail.stderr.startswith("qemu-init: con1: no console log (") and tail.stderr.count("\n") == 1
    usage = qi(root, "console", "con1", "5", check=2)
    assert "a number of lines goes with --tail" in usage.stderr
    none = qi(root, "console", "ser1", check=1)
    assert none.stderr == "qemu-init: ser1: has no console: CONSOLE=no, or its cfg-file sets -serial\n"
    shown = qi(root, "show", "con1", check=0).stdout.splitlines()
    console = next(line for line in shown if line.startswith("console "))
    assert console.split(None, 1)[1].startswith(str(root / "run/qemu-init/con1.console") + " (log ")
    assert "off: the cfg-file sets -serial" in qi(root, "show", "ser1", check=0).stdout
    assert '"agent": "' + str(root / "run/qemu-init/con1.qga") + '"' in qi(root, "show", "--json", "con1", check=0).stdout


def test_console_tail_without_a_count_prints_the_last_20_lines(tmp_path):
    root, vms = tmp_path / "root", tmp_path / "vms"
    guest(vms, "con1")
    qi(root, "register", str(vms), check=0)
    log = root / "var/log/qemu-init/con1.console.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(30)))
    proc = qi(root, "console", "con1", "--tail", check=0)  # not a session: the guest does not even run
    assert proc.stdout == "".join(f"line {i}\n" for i in range(10, 30)) and proc.stderr == ""


def test_console_tail_refuses_a_symlinked_log_in_one_line(tmp_path):
    root, vms = tmp_path / "root", tmp_path / "vms"
    guest(vms, "con1")
    qi(root, "register", str(vms), check=0)
    log = root / "var/log/qemu-init/con1.console.log"
    log.parent.mkdir(parents=True)
    (tmp_path / "shadow").write_text("root:x:secret\n")
    log.symlink_to(tmp_path / "shadow")
    proc = qi(root, "console", "con1", "--tail", check=1)
    assert proc.stderr == f"qemu-init: con1: {log}: is a symbolic link; refusing to follow it\n"
    assert proc.stdout == ""
