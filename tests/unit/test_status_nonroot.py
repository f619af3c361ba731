"""status as a user other than root (a forked child that gave up root, as `qemu-init status` run by
an administrator's own account): a saved guest is "saved", while its state (the guest's RAM) stays
root's alone and the state folder cannot be listed; a status that is not root's writes nothing.

The real command as a real unprivileged user: tests/e2e/test_save_restore.py.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile

import pytest
from test_savestate import FakeQMP, control, run_save

from qemu_init.runtime import console, status

NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def folder():
    """A folder anyone may look into (pytest's own are root's alone)."""
    path = tempfile.mkdtemp(prefix="qi-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_nobody(look):
    """``look()`` in a child running as nobody; what it returned (JSON), or its error's name."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            try:
                result = look()
            except Exception as e:  # noqa: BLE001 - reported to the parent
                result = {"error": type(e).__name__}
            os.write(write, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def _denied(call):
    try:
        call()
    except PermissionError:
        return True
    return False


def test_status_as_another_user_says_saved_and_the_state_stays_roots(folder):
    from pathlib import Path
    gc = control(Path(folder))._replace(pidfile=f"{folder}/web1.pid")
    assert run_save(gc, FakeQMP())[0]
    root_line = status.line(gc.name, status.status(gc))
    assert root_line.startswith("web1: saved (state of ")

    def look():
        st = status.status(gc)
        return {"line": status.line(gc.name, st), "code": st.code,
                "read_state": not _denied(lambda: open(gc.statefile, "rb").close()),
                "list_folder": not _denied(lambda: os.listdir(os.path.dirname(gc.statefile)))}

    seen = as_nobody(look)
    assert seen == {"line": root_line, "code": 3, "read_state": False, "list_folder": False}


def test_status_as_another_user_writes_nothing(folder, monkeypatch):
    monkeypatch.setattr(console, "CAP", 100)
    log, lock = f"{folder}/web1.console.log", f"{folder}/web1.lock"
    with open(log, "wb") as f:
        f.write(b"line\n" * 30)
    os.chmod(log, 0o666)  # even where it could: only root trims, under the lock
    open(lock, "w").close()
    os.chmod(lock, 0o666)
    from pathlib import Path
    gc = control(Path(folder))._replace(pidfile=f"{folder}/web1.pid", console_log=log, lock=lock)
    assert as_nobody(lambda: status.status(gc).code) == 3
    assert os.path.getsize(log) == 150 and not os.path.exists(log + ".1")


def test_where_vardir_is_roots_alone_another_users_status_cannot_see_the_state(folder):
    """The installed VARDIR is 0750 (make install, the Debian and FreeBSD packages): there a
    user's status gets no further than VARDIR and says "not running" (LSB 3, as "saved" is);
    only root's says "saved" (README, qemud(8))."""
    from pathlib import Path
    vardir = Path(folder) / "var"
    vardir.mkdir()
    gc = control(vardir)._replace(pidfile=f"{folder}/web1.pid")
    assert run_save(gc, FakeQMP())[0]
    os.chmod(vardir, 0o750)
    assert status.status(gc).state == status.SAVED
    seen = as_nobody(lambda: [status.status(gc).code, status.line(gc.name, status.status(gc))])
    assert seen == [3, "web1: not running"]
