"""Pure parts of the host service and its shutdown-budget arithmetic."""

from types import SimpleNamespace

from qemu_init.checks import FORCED_STEPS, shutdown_time
from qemu_init.hostsvc import start_order


def guests(**depends):
    return {k: (None, SimpleNamespace(name=k, depends=tuple(v.split()))) for k, v in depends.items()}


def test_dependencies_start_first_even_if_listed_later():
    assert start_order(["a1", "b1", "c1"], guests(a1="", b1="c1", c1="")) == ["a1", "c1", "b1"]


def test_dependencies_outside_autostart_are_pulled_in_once():
    assert start_order(["web1", "web2"], guests(web1="db1", web2="db1 cache1", db1="", cache1="")) == [
        "db1", "web1", "cache1", "web2"]


def test_a_cycle_does_not_loop_forever():
    assert sorted(start_order(["a1"], guests(a1="b1", b1="a1"))) == ["a1", "b1"]


def test_unknown_names_are_kept_for_the_caller_to_report():
    assert start_order(["ghost1"], {}) == ["ghost1"]


def test_shutdown_time_parallel_and_bounded():
    step = FORCED_STEPS
    assert shutdown_time([40, 40, 40, 40], 0) == 40 + step
    assert shutdown_time([40, 40, 40, 40], 1) == 4 * (40 + step)
    assert shutdown_time([100, 10, 10, 10], 2) == 100 + step  # the short ones share the other slot
