"""Random bytes and near-valid files only ever produce the project's own errors."""

import os
import shutil
import string
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from qemu_init.config import default_host, load_guest
from qemu_init.errors import Problem
from qemu_init.keys import RC_KEYS

FOLDER = ""  # one folder for all examples (hypothesis runs many per test): see the fixture


@pytest.fixture(autouse=True, scope="module")
def folder():
    global FOLDER
    FOLDER = tempfile.mkdtemp(prefix="qi-fuzz-")
    yield
    shutil.rmtree(FOLDER, ignore_errors=True)

value_chars = st.sampled_from(list(string.printable.replace("\n", "")) + ["é", "\x00", "'", '"', "$", "`", ",", "0"])
values = st.text(value_chars, max_size=30)
keys = st.sampled_from(list(RC_KEYS) + ["RAMM", "name", "DSK1", ""])
lines = st.one_of(st.tuples(keys, values).map(lambda kv: f"{kv[0]}={kv[1]}"), values, st.just("# comment"))


def load(rc: bytes, cfg: bytes = None):
    rc_path = os.path.join(FOLDER, "fuzz1-qemud.rc")
    with open(rc_path, "wb") as handle:
        handle.write(rc)
    cfg_path = os.path.join(FOLDER, "fuzz1-qemu.cfg")
    if cfg is None:
        if os.path.exists(cfg_path):
            os.unlink(cfg_path)
    else:
        with open(cfg_path, "wb") as handle:
            handle.write(cfg)
    guest, problems = load_guest(rc_path, default_host())
    assert all(isinstance(p, Problem) and str(p) for p in problems)
    assert (guest is None) == any(p.level == "error" for p in problems)
    return guest, problems


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.one_of(st.none(), st.binary(max_size=200)))
def test_random_bytes(rc, cfg):
    load(rc, cfg)


@settings(max_examples=300, deadline=None)
@given(st.lists(lines, max_size=12), st.lists(st.one_of(values, st.sampled_from(
    ["DSK1=a.img", "DSK2=b", "CDR1=c.iso", "NIC1=br1,mac=52:54:00:00:00:01", "-name x", "-m 1G", "'"])), max_size=6))
def test_near_valid_files(extra, cfg_lines):
    rc = "NAME=fuzz1\nTGTARCH=qemu-system-x86_64\n" + "\n".join(extra) + "\n"
    load(rc.encode("utf-8", "surrogatepass"), ("\n".join(cfg_lines) + "\n").encode())


registry_lines = st.one_of(
    st.text(value_chars, max_size=40),
    st.tuples(st.sampled_from(["0", "1", "2", "01", "999999", "1000000", "-1", "²"]),
              st.sampled_from(["web1", "WEB1", "db1", "x-1", "a0", ""]),
              st.sampled_from(["/srv/a", "srv", "/", "/a b", ""])).map(" ".join))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.lists(registry_lines, max_size=8).map(
    lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))), st.binary(max_size=40), st.binary(max_size=60))
def test_registry_files_give_problems_never_crashes(registered, counter, autostart):
    """Whatever the three host files hold, the registry answers or raises one ConfigError."""
    from qemu_init.errors import ConfigError
    from qemu_init.paths import Layout, Paths
    from qemu_init.registry import Registry
    paths = Paths.for_layout(Layout(), os.path.join(FOLDER, "root"))
    for path, data in ((paths.registered, registered), (paths.number_file, counter), (paths.autostart, autostart)):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    registry = Registry(paths)
    for read in (registry.entries, registry.autostart, registry._next_number):
        try:
            read()
        except ConfigError as exc:
            assert len(exc.problems) == 1 and str(exc.problems[0]).startswith(os.path.join(FOLDER, "root"))
    assert all(isinstance(p, Problem) and "\n" not in str(p) for p in registry.problems())
