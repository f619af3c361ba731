"""The trust rule against a real unprivileged user (issue 11, attacks 2–5, acceptance 2).

A user created by the test (``qitrust…``, removed afterwards even when the test fails) owns a
guest folder, or a folder above one, or swaps folders, plants links, FIFOs and /dev/zero: every
command that would act on such a guest (check, register, show, generate, install, start, the
init script's start) refuses it in one line naming the file and why, never hangs, never grows,
writes nothing, and PRECMD never runs as root from an untrusted path.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from guestkit import QEMU, run
from guestkit.qemuinit import STUBBORN, Root, qi

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a real user, chown)"),
              pytest.mark.skipif(shutil.which("useradd") is None, reason="needs useradd")]


@pytest.fixture
def user():
    """A real unprivileged user of this test alone."""
    name = "qitrust" + secrets.token_hex(3)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def as_user(user, *argv: str) -> None:
    """Run argv as ``user`` (what the attacker can do, and nothing more)."""
    result = subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                             *argv], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, (argv, result.stderr)


def give(user, *paths) -> None:
    for path in paths:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)


def errors(result: subprocess.CompletedProcess) -> list:
    """The error lines of a qemu-init run (warnings and check's summary line aside), on stdout
    for `check` (its results) or stderr."""
    return [line for line in (result.stdout + result.stderr).splitlines()
            if line and not line.endswith("warning(s)") and ": warning: " not in line
            and not line.startswith(("no guests registered in ", "registered ", "installed "))]


@pytest.fixture
def box(sandbox):
    """A qemu-init root in the sandbox, which the user may walk through (0755) but not write."""
    os.chmod(sandbox, 0o755)
    return Root(sandbox)


def files(box: Root) -> dict:
    """Every file below the root except the guests' own and locks: what a refused command must
    not change."""
    found = {}
    for folder, _, names in os.walk(box.root):
        if not folder.startswith(box.vms):
            for name in names:
                if name.endswith(".lock"):
                    continue  # taking a lock writes nothing
                path = os.path.join(folder, name)
                found[path] = Path(path).read_bytes() if os.path.isfile(path) and not os.path.islink(path) else None
    return found


def guest_files(folder: str, name: str, rc_extra: str = "", cfg: str = "") -> str:
    os.makedirs(folder, exist_ok=True)
    rc = os.path.join(folder, f"{name}-qemud.rc")
    Path(rc).write_text(STUBBORN.format(name=name, extra=rc_extra))
    Path(folder, f"{name}-qemu.cfg").write_text(cfg)
    return rc


# -- 2. a guest folder owned by a user ---------------------------------------------------------

ROOTS_CODE = ["-netdev tap,id=n1,script=/home/u/x.sh", "-plugin /home/u/x.so", "-incoming 'exec:id > /tmp/x'",
              "-readconfig /home/u/q.cfg", "-chardev file,id=c1,path=/root/x", "-drive file=/etc/shadow",
              "-fw_cfg name=opt/x,file=/root/secret", "-sandbox off"]


@pytest.mark.parametrize("raw", ROOTS_CODE)
def test_a_guest_folder_owned_by_a_user_is_refused_by_check_and_register(box, user, raw):
    folder = box.path("vms", "theirs")
    rc = guest_files(folder, "evil1", cfg=f"{raw}\n")
    give(user, folder, rc, os.path.join(folder, "evil1-qemu.cfg"))
    before = files(box)

    owned = f"owned by uid {user.pw_uid} ({user.pw_name})"
    checked = box.qi("check", rc, check=False)
    assert checked.returncode == 1
    assert errors(checked) == [f"{rc}: not trusted: folder {folder} {owned}"]
    for command in ("check", "register"):  # scanning the folder: refused before anything in it is read
        result = box.qi(command, folder, check=False)
        assert result.returncode == 1
        assert errors(result) == [f"qemu-init: {folder}: not trusted: folder {owned}"], (command, result.stderr)
    registered = box.qi("register", rc, check=False)
    assert registered.returncode == 1 and errors(registered) == [f"{rc}: not trusted: folder {folder} {owned}"]
    assert "registered evil1" not in registered.stdout
    assert files(box) == before  # nothing written, not even the registry


def test_a_root_owned_guest_in_a_users_folder_is_refused(box, user):
    """Reached through the user's folder: they can rename it and put anything in its place."""
    theirs = box.path("vms", "home")
    rc = guest_files(os.path.join(theirs, "vm"), "web1")
    give(user, theirs)
    checked = box.qi("check", rc, check=False)
    assert checked.returncode == 1
    assert errors(checked) == [f"{rc}: not trusted: folder {theirs} owned by uid {user.pw_uid} ({user.pw_name})"]


@pytest.mark.parametrize("which", ["rc", "cfg"])
def test_a_guest_file_owned_by_a_user_is_refused(box, user, which):
    rc = guest_files(box.vms, "web1")
    target = rc if which == "rc" else rc.replace("-qemud.rc", "-qemu.cfg")
    give(user, target)
    checked = box.qi("check", rc, check=False)
    assert checked.returncode == 1
    assert errors(checked) == [f"{target}: not trusted: owned by uid {user.pw_uid} ({user.pw_name})"]


def test_every_command_refuses_a_registered_guest_whose_folder_became_untrusted(box, user):
    folder = box.path("vms", "web")
    rc = guest_files(folder, "web1", rc_extra="PRECMD='touch /tmp/never'\n")
    box.qi("register", folder)
    box.qi("autostart", "on", "web1")
    give(user, folder)
    before = files(box)
    line = f"{rc}: not trusted: folder {folder} owned by uid {user.pw_uid} ({user.pw_name})"
    for command in (["check"], ["check", "web1"], ["show", "web1"], ["generate", "--init", "sysv", "web1"],
                    ["install", "--init", "sysv"], ["start", "web1"]):
        result = box.qi(*command, check=False)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert errors(result) == [line], (command, result.stderr)
    # stop reads none of those files: it still works from the pid file (issue 14), saying why
    stopped = box.qi("stop", "web1", check=False)
    assert stopped.returncode == 0 and line in stopped.stderr, stopped.stderr
    booted = box.qi("qemud", "start", check=False)  # the host service at boot
    assert booted.returncode == 1 and f"web1: not started: {line}" in booted.stdout, booted.stdout
    assert files(box) == before
    assert not os.path.exists(box.path("etc/init.d/qemu-web1"))


# -- 3. the PRECMD folder swap -----------------------------------------------------------------

def test_precmd_folder_swap_install_refuses_and_the_scripts_start_refuses(box, user):
    """The user owns P. Root's guest lives in P/vm. The user swaps in a P/vm of their own with a
    PRECMD (install refuses to bake it), then swaps root's folder back before start: the
    installed script's gate sees a root-owned rc-file in a root-owned folder, but P above it is
    the user's: PRECMD is refused, nothing runs as root."""
    parent = box.path("vms", "p")
    canary = box.path("canary")
    rc = guest_files(os.path.join(parent, "vm"), "web1", rc_extra=f"PRECMD='touch {canary}'\n")
    box.qi("register", rc)
    box.qi("install", "--init", "sysv")
    script = box.path("etc/init.d/qemu-web1")
    baked = Path(script).read_bytes()

    give(user, parent)  # from now on P is theirs
    as_user(user, "mv", f"{parent}/vm", f"{parent}/vm.root")
    as_user(user, "mkdir", f"{parent}/vm")
    as_user(user, "sh", "-c", f"printf 'NAME=web1\\nTGTARCH=qemu-system-x86_64\\nPRECMD=\"touch {canary}.mine\"\\n'"
                              f" > {parent}/vm/web1-qemud.rc")
    installed = box.qi("install", "--init", "sysv", check=False)
    assert installed.returncode == 1 and "not trusted" in installed.stderr, installed.stderr
    assert Path(script).read_bytes() == baked  # not rewritten, not half-written

    as_user(user, "mv", f"{parent}/vm", f"{parent}/vm.mine")
    as_user(user, "mv", f"{parent}/vm.root", f"{parent}/vm")  # root's files back in place
    started = run("dash", script, "start", timeout=60)
    assert started.returncode != 0, started.stdout
    assert f"folder {parent} owned by uid {user.pw_uid}" in started.stdout + started.stderr
    assert "refusing to run PRECMD/POSTCMD" in started.stdout + started.stderr
    assert not os.path.exists(canary) and not os.path.exists(canary + ".mine"), "PRECMD ran as root"
    assert not os.path.exists(box.path("run/qemu-init/web1.pid"))


@pytest.mark.parametrize("mode", [0o775, 0o757])
def test_precmd_is_refused_at_start_when_a_folder_far_up_is_writable_by_others(box, mode):
    parent = box.path("vms", "p")
    canary = box.path("canary")
    rc = guest_files(os.path.join(parent, "a", "vm"), "web1", rc_extra=f"PRECMD='touch {canary}'\n")
    box.qi("register", rc)
    box.qi("install", "--init", "sysv")
    os.chmod(parent, mode)
    started = run("dash", box.path("etc/init.d/qemu-web1"), "start", timeout=60)
    assert started.returncode != 0
    assert f"folder {parent} writable by" in started.stdout + started.stderr
    assert not os.path.exists(canary)


# -- 4. links ----------------------------------------------------------------------------------

@pytest.fixture
def secret(box):
    """A 0600 root file holding a line nobody else may read."""
    path = box.path("secret")
    Path(path).write_text("-device SECRET-" + secrets.token_hex(4) + "\n")
    os.chmod(path, 0o600)
    return path


def test_a_cfg_file_linked_to_a_root_secret_never_lands_in_a_script(box, user, secret):
    folder = box.path("vms", "theirs")
    rc = guest_files(folder, "evil1")
    cfg = os.path.join(folder, "evil1-qemu.cfg")
    os.unlink(cfg)
    os.symlink(secret, cfg)
    give(user, folder, rc, cfg)
    for command in (["check", rc], ["register", rc]):
        result = box.qi(*command, check=False)
        assert result.returncode == 1 and "not trusted" in result.stdout + result.stderr, (command, result.stderr)
        assert "SECRET" not in result.stdout + result.stderr
    assert not os.path.exists(box.path("etc/qemu-init/registered"))


def test_a_linked_rc_file_is_never_printed(box, user, secret):
    folder = box.path("vms", "theirs")
    os.makedirs(folder)
    rc = os.path.join(folder, "evil1-qemud.rc")
    os.symlink(secret, rc)
    give(user, folder, rc)
    result = box.qi("check", rc, check=False)
    assert result.returncode == 1
    assert errors(result) == [f"{rc}: not trusted: folder {folder} owned by uid {user.pw_uid} ({user.pw_name})"]
    assert "SECRET" not in result.stdout + result.stderr


def test_a_link_in_a_root_folder_to_a_users_file_is_refused(box, user):
    theirs = box.path("theirs")
    os.makedirs(theirs)
    give(user, theirs)
    as_user(user, "sh", "-c", f"printf 'NAME=web1\\nTGTARCH=qemu-system-x86_64\\n' > {theirs}/rc")
    rc = guest_files(box.vms, "web1")
    os.unlink(rc)
    os.symlink(f"{theirs}/rc", rc)
    result = box.qi("check", rc, check=False)
    assert result.returncode == 1
    assert errors(result) == [f"{rc}: not trusted: folder {theirs} owned by uid {user.pw_uid} ({user.pw_name})"]


def test_a_link_in_a_root_folder_to_a_root_file_is_fine(box):
    real = guest_files(box.path("real"), "web1")
    os.makedirs(box.vms, exist_ok=True)
    os.symlink(real, os.path.join(box.vms, "web1-qemud.rc"))
    result = box.qi("check", os.path.join(box.vms, "web1-qemud.rc"), check=False)
    assert result.returncode == 0, result.stderr


# -- 5. FIFOs, devices, huge files -------------------------------------------------------------

def test_a_fifo_rc_file_is_one_line_not_a_hang(box, user):
    folder = box.path("vms", "f")
    os.makedirs(folder)
    fifo = os.path.join(folder, "fifo1-qemud.rc")
    os.mkfifo(fifo)
    for command in (["check", fifo], ["register", fifo], ["register", folder]):
        result = qi(box.root, *command, timeout=30)
        assert result.returncode == 1
        assert errors(result) == [f"{fifo}: not trusted: a FIFO, not a regular file"], (command, result.stderr)


@pytest.mark.skipif(shutil.which("dash") is None, reason="needs dash")
def test_the_init_scripts_start_refuses_a_fifo_rc_file_without_hanging_or_holding_the_lock(box):
    canary = box.path("canary")
    rc = guest_files(box.vms, "web1", rc_extra=f"PRECMD='touch {canary}'\n")
    box.qi("register", rc)
    box.qi("install", "--init", "sysv")
    os.unlink(rc)
    os.mkfifo(rc)
    script = box.path("etc/init.d/qemu-web1")
    for _ in range(2):  # the second finds the lock free
        started = run("dash", script, "start", timeout=30)
        assert started.returncode != 0
        assert f"{rc}: not trusted: a FIFO, not a regular file" in started.stdout + started.stderr
    assert not os.path.exists(canary)


@pytest.mark.skipif(shutil.which(QEMU) is None or shutil.which("dash") is None, reason="needs QEMU and dash")
def test_a_guest_without_hooks_starts_with_a_warning_when_its_rc_file_became_a_fifo(box, subreaper):
    rc = guest_files(box.vms, "web1")
    box.qi("register", rc)
    box.qi("install", "--init", "sysv")
    os.unlink(rc)
    os.mkfifo(rc)
    script = box.path("etc/init.d/qemu-web1")
    started = run("dash", script, "start", timeout=60)
    assert started.returncode == 0, started.stderr
    assert "a FIFO, not a regular file" in started.stderr
    assert run("dash", script, "stop", timeout=60).returncode == 0


def test_a_link_to_dev_zero_is_one_line_no_growth(box):
    """Today's `register` read /dev/zero until the OOM killer came; under a 1 GiB address
    space limit that would be a MemoryError."""
    limit = ("prlimit", f"--as={1 << 30}")
    rc = guest_files(box.vms, "web1")
    box.qi("register", rc)
    os.unlink(rc)
    os.symlink("/dev/zero", rc)
    line = f"{rc}: not trusted: /dev/zero (where a link leads) is a character device, not a regular file"
    for command, code in ((["register", rc], 1), (["check", rc], 1), (["stop", "web1"], 0)):
        result = qi(box.root, *command, timeout=60, prefix=limit)  # stop: from the pid file alone
        assert result.returncode == code, (command, result.stderr)
        assert line in errors(result), (command, result.stderr)
    # the host service stops a guest whose files went bad all the same (from its name alone)
    result = qi(box.root, "qemud", "stop", timeout=60, prefix=limit)
    assert result.returncode == 0 and "no guest is running" in result.stdout, result.stderr


def test_a_huge_cfg_file_is_refused(box):
    rc = guest_files(box.vms, "web1")
    with open(rc.replace("-qemud.rc", "-qemu.cfg"), "w") as f:
        f.write("# padding\n" * 200000)
    result = box.qi("check", rc, check=False)
    assert result.returncode == 1
    assert errors(result) == [f"{rc.replace('-qemud.rc', '-qemu.cfg')}: not trusted: larger than 1 MiB"]


# -- group- or other-writable files and folders ------------------------------------------------

@pytest.mark.parametrize("what", ["rc", "cfg", "folder", "qemu-init.conf"])
@pytest.mark.parametrize("mode", [0o020, 0o002], ids=["group", "others"])
def test_writable_guest_and_host_files_are_refused(box, what, mode):
    rc = guest_files(box.path("vms", "g"), "web1")
    target = {"rc": rc, "cfg": rc.replace("-qemud.rc", "-qemu.cfg"), "folder": os.path.dirname(rc),
              "qemu-init.conf": box.path("etc/qemu-init/qemu-init.conf")}[what]
    os.chmod(target, os.stat(target).st_mode | mode)
    who = "group" if mode == 0o020 else "others"
    result = box.qi("check", rc, check=False)
    assert result.returncode == 1
    if what == "folder":
        expected = f"{rc}: not trusted: folder {target} writable by {who}"
    else:
        expected = f"{target}: not trusted: writable by {who}"
    assert errors(result) == [expected]
    registered = box.qi("register", rc, check=False)
    assert registered.returncode == 1 and expected in registered.stdout + registered.stderr
    if what != "qemu-init.conf":  # the guest's own files are fine then: it is registered, as with any host error
        assert not os.path.exists(box.path("etc/qemu-init/registered"))


# which commands read each registry file
READERS = {"etc/qemu-init/registered": (["check"], ["register", "vms"], ["list"], ["install", "--init", "sysv"]),
           "etc/qemu-init/autostart": (["autostart", "list"], ["qemud", "start"]),
           "var/lib/qemu-init/next-number": (["register", "vms/web2-qemud.rc"],)}


@pytest.mark.parametrize("what", sorted(READERS))
def test_writable_registry_files_are_refused(box, what):
    guest_files(box.vms, "web1")
    box.qi("register", box.path("vms/web1-qemud.rc"))
    box.qi("autostart", "on", "web1")
    guest_files(box.vms, "web2")
    path = box.path(what)
    os.chmod(path, 0o664)
    before = files(box)
    for command in READERS[what]:
        command = [box.path(word) if word.startswith("vms") else word for word in command]
        result = box.qi(*command, check=False)
        assert result.returncode == 1, (command, result.stderr)
        assert f"{path}: not trusted: writable by group" in result.stdout + result.stderr, (command, result.stderr)
    assert files(box) == before
