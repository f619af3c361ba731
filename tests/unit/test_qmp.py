"""The synchronous QMP client against a fake QMP server (tests/unit/fakeqmp.py)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from fakeqmp import BAD_PEERS, CLOSE, Drip, FakeQMP, event, reply, sock_path  # noqa: F401  (sock_path: fixture)
from qemu_init.errors import QMPConnectError, QMPError, QMPExecuteError, QMPProtocolError, QMPTimeoutError
from qemu_init.runtime.qmp import QMP


def test_greeting_capabilities_and_a_command(sock_path):
    def handler(server, message):
        return [reply(message, {"status": "running", "running": True})]

    with FakeQMP(sock_path, handler) as server, QMP(sock_path, timeout=2) as q:
        assert q.connect()["QMP"]["version"]["qemu"]["major"] == 7
        assert q.execute("query-status") == {"status": "running", "running": True}
    assert server.commands() == ["qmp_capabilities", "query-status"]
    assert all("id" in m for m in server.received)  # ids let us skip late replies


def test_execute_connects_by_itself_and_passes_arguments(sock_path):
    def handler(server, message):
        return [reply(message, "VM status: running\r\n")]

    with FakeQMP(sock_path, handler) as server, QMP(sock_path, timeout=2) as q:
        assert q.human("info status") == "VM status: running\r\n"
    assert server.received[-1]["execute"] == "human-monitor-command"
    assert server.received[-1]["arguments"] == {"command-line": "info status"}


def test_events_before_the_reply_are_queued_in_order(sock_path):
    def handler(server, message):
        return [event("POWERDOWN"), event("RESET", guest=False), reply(message)]

    with FakeQMP(sock_path, handler) as server, QMP(sock_path, timeout=2) as q:
        q.execute("system_powerdown")
        q.execute("system_powerdown")
        names = [e["event"] for e in q.pop_events()]
        assert names == ["POWERDOWN", "RESET", "POWERDOWN", "RESET"]
        assert q.pop_events() == []


@pytest.mark.parametrize("chunk", [1, 7])
def test_messages_split_across_many_sends(sock_path, chunk):
    def handler(server, message):
        return [event("STOP"), reply(message, {"status": "paused"})]

    with FakeQMP(sock_path, handler, chunk=chunk, chunk_delay=0.0005), QMP(sock_path, timeout=5) as q:
        assert q.execute("query-status") == {"status": "paused"}
        assert [e["event"] for e in q.events] == ["STOP"]


def test_several_messages_in_one_send(sock_path):
    def handler(server, message):
        blob = b"".join(f'{{"event": "E{i}", "timestamp": {{}}}}\r\n'.encode() for i in range(3))
        return [blob + b'{"return": 42, "id": "%s"}\r\n' % message["id"].encode()]

    with FakeQMP(sock_path, handler), QMP(sock_path, timeout=2) as q:
        assert q.execute("x") == 42
        assert [e["event"] for e in q.events] == ["E0", "E1", "E2"]


def test_error_reply(sock_path):
    def handler(server, message):
        return [{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"},
                 "id": message["id"]}]

    with FakeQMP(sock_path, handler), QMP(sock_path, timeout=2) as q:
        with pytest.raises(QMPExecuteError, match="nope has not been found"):
            q.execute("nope")


def test_error_reply_without_an_id_answers_the_pending_command(sock_path):
    """QEMU cannot echo the id of a command it could not parse: its error has none, and must
    end the wait at once instead of being skipped until the timeout."""
    def handler(server, message):
        return [event("TICK"), {"error": {"class": "GenericError", "desc": "JSON parse error, invalid literal"}}]

    with FakeQMP(sock_path, handler), QMP(sock_path) as q:
        q.connect(timeout=2)
        started = time.monotonic()
        with pytest.raises(QMPExecuteError, match="query-status: JSON parse error"):
            q.execute("query-status", timeout=5)
        assert time.monotonic() - started < 1.0
        assert [e["event"] for e in q.events] == ["TICK"]  # events before it are still queued


def test_accepts_but_never_answers_times_out(sock_path):
    with FakeQMP(sock_path, greeting=None), QMP(sock_path) as q:
        started = time.monotonic()
        with pytest.raises(QMPTimeoutError, match="greeting"):
            q.connect(timeout=0.3)
        assert 0.25 < time.monotonic() - started < 1.0


def test_one_deadline_per_call_even_if_events_keep_coming(sock_path):
    """A per-recv timeout would never fire here: the server chatters but never replies."""
    def handler(server, message):
        return [event("TICK")] * 40  # 40 events over ~0.8 s, then nothing

    with FakeQMP(sock_path, handler, chunk=1000, chunk_delay=0.02), QMP(sock_path) as q:
        q.connect(timeout=2)
        started = time.monotonic()
        with pytest.raises(QMPTimeoutError, match="reply to 'query-status'"):
            q.execute("query-status", timeout=0.3)
        assert time.monotonic() - started < 0.6
        assert len(q.events) >= 5


def test_late_reply_to_a_timed_out_command_is_not_taken_for_the_next(sock_path):
    def handler(server, message):
        if message["execute"] == "slow":
            time.sleep(0.4)
            return [reply(message, "slow answer")]
        return [reply(message, "fast answer")]

    with FakeQMP(sock_path, handler), QMP(sock_path) as q:
        with pytest.raises(QMPTimeoutError):
            q.execute("slow", timeout=0.2)
        assert q.execute("fast", timeout=2) == "fast answer"


def test_missing_socket(sock_path):
    with pytest.raises(QMPConnectError, match="No such file"):
        QMP(sock_path, timeout=1).connect()


def test_stale_socket_file_nobody_listens_on(sock_path):
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock_path)
    s.close()  # the file stays, as after a SIGKILLed QEMU
    with pytest.raises(QMPConnectError, match="refused"):
        QMP(sock_path, timeout=1).connect()


def test_not_a_socket(sock_path):
    with open(sock_path, "w"):
        pass
    with pytest.raises(QMPConnectError):
        QMP(sock_path, timeout=1).connect()


def test_not_json(sock_path):
    with FakeQMP(sock_path, lambda s, m: [b"garbage\r\n"]), QMP(sock_path, timeout=2) as q:
        with pytest.raises(QMPProtocolError, match="not JSON"):
            q.execute("x")


def test_not_qmp_greeting(sock_path):
    # a socket that talks JSON but is no QMP monitor
    with FakeQMP(sock_path, greeting={"hello": "world"}), QMP(sock_path, timeout=2) as q:
        with pytest.raises(QMPProtocolError, match="no QMP greeting"):
            q.connect()


def test_connection_closed_before_the_reply_then_reconnects(sock_path):
    def handler(server, message):
        if message["execute"] == "quit" and server.connections == 1:
            return CLOSE
        return [reply(message)]

    with FakeQMP(sock_path, handler) as server, QMP(sock_path, timeout=2) as q:
        with pytest.raises(QMPConnectError, match="closed"):
            q.execute("quit")
        assert q.execute("query-status") == {}  # a new connection
        assert server.connections == 2


def test_socket_is_close_on_exec(sock_path):
    with FakeQMP(sock_path), QMP(sock_path, timeout=2) as q:
        q.connect()
        assert not os.get_inheritable(q._sock.fileno())


# -- hostile or broken peers: every one is "no answer" (a QMPError), within the deadline -----------

@pytest.mark.parametrize("peer", sorted(BAD_PEERS))
def test_a_bad_reply_is_a_qmp_error_within_the_deadline(sock_path, peer):
    with FakeQMP(sock_path, lambda server, message: BAD_PEERS[peer](message)), QMP(sock_path) as q:
        q.connect(timeout=2)
        started = time.monotonic()
        with pytest.raises(QMPError) as caught:
            q.execute("query-status", timeout=1.0)
        took = time.monotonic() - started
    assert took < 1.0 + 0.5, f"{peer}: {took:.2f} s for a 1 s deadline"
    assert len(str(caught.value)) < 300 and "\n" not in str(caught.value)  # one line for a log


@pytest.mark.parametrize("peer", sorted(BAD_PEERS))
def test_a_bad_greeting_is_a_qmp_error_within_the_deadline(sock_path, peer):
    said = BAD_PEERS[peer]({"id": "qi-0"})
    with FakeQMP(sock_path, greeting=said[0] if said else None), QMP(sock_path) as q:
        started = time.monotonic()
        with pytest.raises(QMPError):
            q.connect(timeout=1.0)
        assert time.monotonic() - started < 1.5


def test_the_line_cap_is_clear_and_bounds_the_memory(sock_path):
    with FakeQMP(sock_path, lambda server, message: BAD_PEERS["huge-line"](message)), QMP(sock_path) as q:
        with pytest.raises(QMPProtocolError, match=r"longer than 8 MiB"):
            q.execute("query-status", timeout=5)
        assert q._sock is None and not q._buf  # the connection and what it read are dropped


def test_a_slow_drip_ends_at_the_deadline_not_per_byte(sock_path):
    with FakeQMP(sock_path, lambda server, message: [Drip(b'{"return": {}' * 10, 0.1)]), QMP(sock_path) as q:
        q.connect(timeout=2)
        started = time.monotonic()
        with pytest.raises(QMPTimeoutError, match="reply to 'query-status'"):
            q.execute("query-status", timeout=0.6)
        assert 0.55 < time.monotonic() - started < 1.0


def test_an_unparsable_error_description_is_not_repeated(sock_path):
    with FakeQMP(sock_path, lambda server, message: BAD_PEERS["error-not-text"](message)), QMP(sock_path) as q:
        with pytest.raises(QMPExecuteError, match="^query-status: failed$"):
            q.execute("query-status", timeout=2)


def test_human_wants_text(sock_path):
    with FakeQMP(sock_path, lambda server, message: [reply(message, ["not", "text"])]), QMP(sock_path) as q:
        with pytest.raises(QMPProtocolError, match="not text"):
            q.human("info status", timeout=2)
