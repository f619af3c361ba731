"""The trust rule (qemu_init/trust.py) on a fake tree in a temp folder, chowned and chmodded as
root: what root may read to decide what to run, and the one line that says why not."""

from __future__ import annotations

import os
import signal

import pytest

from qemu_init import trust
from qemu_init.trust import MAX_SIZE, TrustError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown)")
OTHER = 4242  # a uid that is neither root nor us


@pytest.fixture(autouse=True)
def no_hang():
    """A FIFO must never block a read: fail instead of hanging the suite."""
    def hung(*_):
        raise AssertionError("hung for 10 s")
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def tree(tmp_path):
    """tmp_path/srv/vm/web1-qemud.rc, all root's and 0755/0644 (trusted)."""
    vm = tmp_path / "srv" / "vm"
    vm.mkdir(parents=True)
    rc = vm / "web1-qemud.rc"
    rc.write_text("NAME=web1\n")
    return rc


def refusal(path) -> str:
    with pytest.raises(TrustError) as info:
        trust.read_file(str(path))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_root_owned_file_in_root_owned_folders_is_read(tree):
    assert trust.read_file(str(tree)) == b"NAME=web1\n"


def test_a_relative_path_and_dot_dot_are_resolved_like_the_kernel_does(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    assert trust.read_file("web1-qemud.rc") == b"NAME=web1\n"
    assert trust.read_file("../vm/./web1-qemud.rc") == b"NAME=web1\n"


def test_a_file_owned_by_another_user_is_refused(tree):
    os.chown(tree, OTHER, OTHER)
    assert refusal(tree) == f"{tree}: not trusted: owned by uid {OTHER}"


@pytest.mark.parametrize("mode, who", [(0o664, "writable by group"), (0o646, "writable by others"),
                                       (0o666, "writable by group and others")])
def test_a_file_writable_by_group_or_others_is_refused(tree, mode, who):
    os.chmod(tree, mode)
    assert refusal(tree) == f"{tree}: not trusted: {who}"


def test_owner_and_mode_are_said_together(tree):
    os.chown(tree, OTHER, 0)
    os.chmod(tree, 0o664)
    assert refusal(tree) == f"{tree}: not trusted: owned by uid {OTHER}, writable by group"


def test_a_0600_file_is_fine(tree):
    os.chmod(tree, 0o600)
    assert trust.read_file(str(tree)) == b"NAME=web1\n"


@pytest.mark.parametrize("level", ["vm", "srv"])
@pytest.mark.parametrize("how", ["owner", "group", "others"])
def test_an_untrusted_folder_anywhere_up_the_path_is_refused(tree, level, how):
    folder = tree.parent if level == "vm" else tree.parent.parent
    if how == "owner":
        os.chown(folder, OTHER, OTHER)
        said = f"owned by uid {OTHER}"
    else:
        os.chmod(folder, 0o775 if how == "group" else 0o757)
        said = f"writable by {how}"
    assert refusal(tree) == f"{tree}: not trusted: folder {folder} {said}"


def test_a_sticky_folder_is_safe_above_an_entry_a_trusted_user_owns(tree):
    os.chmod(tree.parent.parent, 0o1777)  # like /tmp
    assert trust.read_file(str(tree)) == b"NAME=web1\n"


def test_in_a_sticky_folder_another_users_entry_is_refused(tree):
    os.chmod(tree.parent.parent, 0o1777)
    os.chown(tree.parent, OTHER, OTHER)  # theirs to rename and replace at any time
    message = refusal(tree)
    assert f"{tree.parent} owned by uid {OTHER} in {tree.parent.parent}, which others may write to" in message


def test_a_sticky_folder_owned_by_another_user_is_refused(tree):
    os.chmod(tree.parent.parent, 0o1777)
    os.chown(tree.parent.parent, OTHER, OTHER)
    assert f"folder {tree.parent.parent} owned by uid {OTHER}" in refusal(tree)


def test_a_link_in_a_trusted_folder_to_a_trusted_file_is_followed(tree):
    link = tree.parent / "link-qemud.rc"
    os.symlink("web1-qemud.rc", link)
    assert trust.read_file(str(link)) == b"NAME=web1\n"
    os.symlink(str(tree.parent), tree.parent.parent / "vmlink")
    assert trust.read_file(str(tree.parent.parent / "vmlink" / tree.name)) == b"NAME=web1\n"


def test_a_link_in_an_untrusted_folder_is_never_followed(tree, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root's secret\n")
    os.chmod(secret, 0o600)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.symlink(str(secret), theirs / "web1-qemu.cfg")
    os.chown(theirs, OTHER, OTHER)
    message = refusal(theirs / "web1-qemu.cfg")
    assert f"folder {theirs} owned by uid {OTHER}" in message and "secret" not in message.split(": ", 1)[1]


def test_a_link_whose_target_is_untrusted_is_refused(tree, tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "evil").write_text("PRECMD=id\n")
    os.chown(theirs, OTHER, OTHER)
    os.symlink(str(theirs / "evil"), tree.parent / "evil-qemud.rc")
    assert f"folder {theirs} owned by uid {OTHER}" in refusal(tree.parent / "evil-qemud.rc")
    os.chown(theirs, 0, 0)
    os.chown(theirs / "evil", OTHER, OTHER)
    message = refusal(tree.parent / "evil-qemud.rc")
    assert message == f"{tree.parent}/evil-qemud.rc: not trusted: {theirs}/evil (where a link leads) owned by uid {OTHER}"


def test_links_are_bounded(tree):
    os.symlink("b", tree.parent / "a")
    os.symlink("a", tree.parent / "b")
    assert "more than 40 symbolic links" in refusal(tree.parent / "a")


def test_a_fifo_is_refused_without_blocking(tree):
    fifo = tree.parent / "fifo-qemud.rc"
    os.mkfifo(fifo)
    assert refusal(fifo) == f"{fifo}: not trusted: a FIFO, not a regular file"


def test_a_link_to_dev_zero_is_refused_without_reading_it(tree):
    os.symlink("/dev/zero", tree.parent / "zero-qemud.rc")
    assert refusal(tree.parent / "zero-qemud.rc").endswith(
        "not trusted: /dev/zero (where a link leads) is a character device, not a regular file")


def test_a_socket_and_a_folder_are_not_regular_files(tree):
    import socket
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tree.parent / "s"))
        assert refusal(tree.parent / "s").endswith("a socket, not a regular file")
    finally:
        sock.close()
    assert refusal(tree.parent).endswith("a folder, not a regular file")


def test_size_is_bounded(tree):
    tree.write_bytes(b"#" * MAX_SIZE)
    assert len(trust.read_file(str(tree))) == MAX_SIZE
    tree.write_bytes(b"#" * (MAX_SIZE + 1))
    assert refusal(tree) == f"{tree}: not trusted: larger than 1 MiB"


def test_a_missing_file_is_an_os_error_naming_it(tree):
    with pytest.raises(FileNotFoundError) as info:
        trust.read_file(str(tree.parent / "nothing"))
    assert info.value.filename == str(tree.parent / "nothing")
    with pytest.raises(NotADirectoryError):
        trust.read_file(str(tree / "below-a-file"))


def test_a_missing_file_in_an_untrusted_folder_is_a_trust_error(tree):
    os.chmod(tree.parent, 0o777)
    with pytest.raises(TrustError):
        trust.read_file(str(tree.parent / "nothing"))


def test_check_folder(tree):
    trust.check_folder(str(tree.parent))
    os.chmod(tree.parent.parent, 0o775)
    with pytest.raises(TrustError, match="writable by group"):
        trust.check_folder(str(tree.parent))
    with pytest.raises(TrustError, match="a regular file, not a folder|not a folder"):
        os.chmod(tree.parent.parent, 0o755)
        trust.check_folder(str(tree))


def test_the_running_users_own_files_are_trusted(tree):
    os.chown(tree, OTHER, OTHER)
    assert trust.read_file(str(tree), owners=(0, OTHER)) == b"NAME=web1\n"


def test_no_descriptor_is_left_open(tree):
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        trust.read_file(str(tree))
        with pytest.raises(TrustError):
            trust.read_file(str(tree.parent))
    assert len(os.listdir("/proc/self/fd")) == before


# -- the runtime's PRECMD/POSTCMD gate (runtime/control.py) applies the same rule ---------------

def _start(tree, capsys):
    """control.start of a guest whose PRECMD would touch ``ran``: the GuestError's text, and
    whether PRECMD ran. The QEMU is a missing program: nothing gets that far when refused."""
    from qemu_init.errors import GuestError
    from qemu_init.runtime import control
    run = tree.parent.parent.parent / "run"
    gc = control.GuestControl(name="web1", pidfile=str(run / "web1.pid"), qmp=str(run / "web1.qmp"),
                              lock=str(run / "web1.lock"), log=str(run / "web1.log"),
                              argv=("/nonexistent/qemu-system-x86_64",),
                              precmd=f"touch {tree.parent.parent.parent}/ran", rcfile=str(tree),
                              sources=((str(tree), "0" * 64),))
    with pytest.raises(GuestError) as info:
        control.start(gc)
    return str(info.value), (tree.parent.parent.parent / "ran").exists(), capsys.readouterr().err


def test_precmd_runs_from_a_trusted_rc_file(tree, capsys):
    message, ran, _ = _start(tree, capsys)
    assert ran and "/nonexistent/qemu-system-x86_64" in message  # PRECMD ran, then QEMU was missing


def test_precmd_is_refused_when_a_folder_far_up_was_swapped_to_another_user(tree, capsys):
    """The gate used to look at the rc-file and its own folder only."""
    os.chown(tree.parent.parent, OTHER, OTHER)  # tmp_path/srv: theirs to swap what is inside
    message, ran, _ = _start(tree, capsys)
    assert message == (f"{tree}: not trusted: folder {tree.parent.parent} owned by uid {OTHER}:"
                       " refusing to run PRECMD/POSTCMD")
    assert not ran


def test_precmd_is_refused_from_a_fifo_without_hanging(tree, capsys):
    os.unlink(tree)
    os.mkfifo(tree)
    message, ran, err = _start(tree, capsys)
    assert message == f"{tree}: not trusted: a FIFO, not a regular file: refusing to run PRECMD/POSTCMD"
    assert not ran
    assert "a FIFO, not a regular file (the script was generated from it)" in err  # the sources check
