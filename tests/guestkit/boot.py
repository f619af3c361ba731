"""Booting a real init system as PID 1: Debian roots under ``systemd-nspawn -b`` (standard library only).

``build_root(init)`` gives the cached root of ``build-root.sh`` (sysv, openrc or systemd);
``build_package(tree)`` builds the project's Debian package once per source tree; a ``Machine`` is a
private copy of a root that boots, runs commands inside and shuts down:

- nspawn runs inside ``unshare --mount`` with a tmpfs on ``/run/systemd/nspawn``: this host's
  ``/run`` is not a tmpfs, and nspawn refuses to clean up there otherwise; ``--register=no
  --keep-unit``: there is no system bus to register with;
- the container has its own PID, mount and network namespaces (``--private-network``);
- its console is a pipe to ``console.log`` (``--console=pipe``): the init system's own record of
  boot and shutdown, one line after the other;
- commands run inside through ``nsenter`` into the container's PID 1, which is looked up as
  nspawn's child and must live in another PID namespace than ours: never the host's PID 1.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import cache_dir

BUILD_SCRIPT = Path(__file__).with_name("build-root.sh")
INITS = ("sysv", "openrc", "systemd")
NSPAWN_SETUP = ('mkdir -p /run/systemd/nspawn && mount -t tmpfs qi-boot-nspawn /run/systemd/nspawn && '
                'exec systemd-nspawn "$@"')
CONSOLE = os.environ.get("QI_CONSOLE", "read-only")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def build_root(init: str) -> Path:
    """The cached root file system with ``init`` as PID 1, built first if need be (minutes, once)."""
    proc = subprocess.run(["sh", str(BUILD_SCRIPT), init, str(cache_dir())], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} {init} failed ({proc.returncode}):\n{proc.stderr}")
    return Path(proc.stdout.strip().splitlines()[-1])


def _tree_files(tree: Path) -> List[str]:
    listing = subprocess.run(["git", "-C", str(tree), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, text=True, check=True).stdout
    return sorted(rel for rel in listing.split("\0") if rel and os.path.lexists(tree / rel))


def copy_tree(tree: Path, dest: Path, files: Optional[Sequence[str]] = None) -> None:
    """Copy the work tree's files (what git would take: tracked and new, not ignored) to ``dest``."""
    for rel in _tree_files(tree) if files is None else files:
        dst = dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if (tree / rel).is_symlink():
            os.symlink(os.readlink(tree / rel), dst)
        else:
            shutil.copy2(tree / rel, dst)


def build_package(tree: Path, workdir: Path) -> Path:
    """The Debian package of the work tree ``tree``, built the way users do (README) in a copy
    of it under ``workdir``; built once per content of the tree (kept in ``workdir``)."""
    files = _tree_files(tree)
    digest = hashlib.sha256()
    for rel in files:
        path = tree / rel
        digest.update(rel.encode() + b"\0" + (os.readlink(path).encode() if path.is_symlink() else path.read_bytes()))
    out = workdir / f"deb-{digest.hexdigest()[:12]}"
    debs = sorted(out.glob("qemu-init_*_all.deb"))
    if debs:
        return debs[0]
    src = out / "qemu-init"
    copy_tree(tree, src, files)
    shutil.copytree(src / "contrib/debian", src / "debian")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(out), "LANG": "C.UTF-8"}
    proc = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"dpkg-buildpackage failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    shutil.rmtree(src)
    return sorted(out.glob("qemu-init_*_all.deb"))[0]


def _children(pid: int) -> List[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
    except OSError:
        pass
    return found


def _pidns(pid: int) -> Optional[str]:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


class Machine:
    """A private copy of a cached root in ``workdir/root``, booted with ``systemd-nspawn -b``.

    ``binds`` maps host paths to container paths, bound read-only; ``source`` is the root to copy
    (default ``build_root(init)``, e.g. a ``layer.layered_root``); ``network`` the nspawn options
    for its network (default its own namespace, a loopback only). Use ``prepare`` (a command
    in the root, not booted), then ``boot``, ``run`` (inside the booted container),
    ``shutdown``; ``kill`` (also in ``__exit__``) makes sure nothing is left running.
    """

    def __init__(self, init: str, workdir: Path, binds: Optional[Dict[str, str]] = None, name: Optional[str] = None,
                 source: Optional[Path] = None, network: Sequence[str] = ("--private-network",)):
        self.init = init
        self.name = name or f"qi-boot-{init}"  # the machine's name, and so its hostname
        self.workdir = workdir
        self.root = workdir / "root"
        self.console = workdir / "console.log"
        self.binds = dict(binds or {})
        self.network = list(network)
        self.proc: Optional[subprocess.Popen] = None
        self.pid1: Optional[int] = None
        self.booted_at = self.shutdown_started = self.shutdown_done = 0.0
        subprocess.run(["cp", "-a", "--reflink=auto", str(source or build_root(init)), str(self.root)], check=True)

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def _nspawn(self, *args: str) -> List[str]:
        binds = [f"--bind-ro={host}:{inside}" for host, inside in self.binds.items()]
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", NSPAWN_SETUP, "sh",
                "--quiet", "--register=no", "--keep-unit", f"--directory={self.root}",
                f"--machine={self.name}", *binds, *args]

    def prepare(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run ``argv`` in the root, not booted (like chroot, in nspawn's namespaces)."""
        proc = subprocess.run(self._nspawn("--pipe", f"--setenv=PATH={PATH}", "--", *argv), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, (argv, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def boot(self, timeout: float = 120) -> None:
        """Boot the init system as PID 1 and wait until commands can run inside."""
        console = open(self.console, "wb")
        # --private-network (or a namespace the test made): never the host's network.
        self.proc = subprocess.Popen(self._nspawn("--boot", "--console=" + CONSOLE, *self.network),
                                     stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        console.close()
        self.booted_at = time.monotonic()
        ours = _pidns(os.getpid())
        deadline = time.monotonic() + timeout
        while self.pid1 is None:
            assert self.proc.poll() is None, f"nspawn exited {self.proc.returncode}:\n{self.console_text()}"
            assert time.monotonic() < deadline, f"no container PID 1 after {timeout} s:\n{self.console_text()}"
            for pid in self._nspawn_pids():
                for child in _children(pid):
                    ns = _pidns(child)
                    if ns is not None and ns != ours:  # never enter a process of our own PID namespace
                        self.pid1 = child
            time.sleep(0.1)
        while self.run("true", check=None).returncode != 0:
            assert time.monotonic() < deadline, f"cannot enter the container:\n{self.console_text()}"
            time.sleep(0.2)

    def _nspawn_pids(self) -> List[int]:
        """systemd-nspawn's PID: the unshare process exec'd sh, which exec'd nspawn."""
        assert self.proc is not None
        return [self.proc.pid]

    def run(self, *argv: str, check: Optional[int] = 0, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``argv`` inside the booted container (all its namespaces, its root)."""
        assert self.pid1 is not None and _pidns(self.pid1) != _pidns(os.getpid())
        proc = subprocess.run(["nsenter", "--target", str(self.pid1), "--mount", "--uts", "--ipc", "--net", "--pid",
                               "--", "env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", *argv],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check is not None:
            assert proc.returncode == check, (argv, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def sh(self, script: str, check: Optional[int] = 0, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run("sh", "-c", script, check=check, timeout=timeout)

    def shutdown(self, command: Sequence[str], timeout: float = 300) -> float:
        """Shut down with ``command`` (run inside) and wait for the container to end; returns
        how long it took."""
        assert self.proc is not None
        self.shutdown_started = time.monotonic()
        self.run(*command, check=None)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout} s after {command}:\n{self.console_text()}")
        self.shutdown_done = time.monotonic()
        self.pid1 = None
        return self.shutdown_done - self.shutdown_started

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """Make sure the container is gone (a test that failed halfway)."""
        if self.proc is not None and self.proc.poll() is None:
            if self.pid1 is not None and _pidns(self.pid1) != _pidns(os.getpid()):
                os.kill(self.pid1, signal.SIGKILL)  # the container's init: its PID namespace dies with it
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
