"""The guest agent client (runtime/agent.py), the console log and session (runtime/console.py) and
the stop machine's agent path, against fake peers on real unix sockets and a real pty.

The real qemu-ga inside a real guest: tests/e2e/test_console_agent.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import termios
import threading
import time

import pytest

from qemu_init.errors import GuestError
from qemu_init.runtime import agent, console, stop


class FakeAgent:
    """A unix socket speaking as qemu-ga does: 0xFF resets its parser (and, as 7.2 does, earns an
    error line), guest-sync-delimited answers after a 0xFF, guest-shutdown has no answer.
    ``mode``: "agent", "silent" (accepts, never answers), "refuse" (guest-shutdown fails),
    "stale" (a leftover answer of an earlier client comes first)."""

    def __init__(self, path, mode="agent"):
        self.path, self.mode = path, mode
        self.commands = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn):
        buf = b""
        if self.mode == "stale":
            conn.sendall(b'{"return": 4711}\n\xff{"return": 4711}\n')
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                if self.mode == "silent":
                    continue
                if line.startswith(b"\xff"):
                    conn.sendall(b'{"error": {"class": "GenericError", "desc": "JSON parse error"}}\n')
                    line = line[1:]
                message = json.loads(line)
                self.commands.append(message["execute"])
                if message["execute"] == "guest-sync-delimited":
                    conn.sendall(b"\xff" + json.dumps({"return": message["arguments"]["id"]}).encode() + b"\n")
                elif message["execute"] == "guest-ping":
                    conn.sendall(b'{"return": {}}\n')
                elif message["execute"] == "guest-shutdown" and self.mode == "refuse":
                    conn.sendall(b'{"error": {"class": "GenericError", "desc": "child process has failed"}}\n')

    def close(self):
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "g.qga")


@pytest.mark.parametrize("mode", ["agent", "stale"])
def test_an_agent_that_answers_is_asked_to_power_down(sock, mode):
    fake = FakeAgent(sock, mode)
    try:
        assert agent.answers(sock)
        began = time.monotonic()
        assert agent.shutdown(sock, refusal_wait=0.2) is None
        assert time.monotonic() - began < 1.0
        assert fake.commands[-3:] == ["guest-sync-delimited", "guest-ping", "guest-shutdown"]
    finally:
        fake.close()


def test_a_silent_agent_costs_the_timeout_and_no_more(sock):
    fake = FakeAgent(sock, "silent")
    try:
        began = time.monotonic()
        assert not agent.answers(sock, timeout=0.3)
        why = agent.shutdown(sock, timeout=0.3)
        took = time.monotonic() - began
        assert why.startswith("the guest agent does not answer")
        assert 0.6 <= took < 1.2, took
    finally:
        fake.close()


def test_no_agent_socket_is_said_at_once(sock):
    began = time.monotonic()
    assert "does not answer" in agent.shutdown(sock)
    assert time.monotonic() - began < 0.2


def test_an_agent_whose_shutdown_fails_says_so(sock):
    fake = FakeAgent(sock, "refuse")
    try:
        assert "child process has failed" in agent.shutdown(sock)
    finally:
        fake.close()


def test_an_endless_line_ends_the_call(sock, monkeypatch):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock)
    server.listen(1)

    def flood():
        conn, _ = server.accept()
        try:
            while True:
                conn.sendall(b"x" * 65536)
        except OSError:
            pass

    threading.Thread(target=flood, daemon=True).start()
    try:
        assert not agent.answers(sock, timeout=2.0)
    finally:
        server.close()


# -- the stop machine with the agent's shutdown asked for ------------------------------------

FAST = stop.Timing(resend=0.3, quit_wait=0.3, term_wait=0.3, kill_wait=0.3, qmp_timeout=0.2, poll=0.01)


def test_after_the_agent_the_power_button_waits_for_the_first_resend():
    began = time.monotonic()
    gone_at = began + 0.1
    presses = []
    steps = stop.run(lambda: time.monotonic() < gone_at, lambda sig: None,
                     lambda command, timeout: presses.append(command), 2.0, timing=FAST,
                     asked="asked the guest agent to shut down")
    assert presses == []
    assert steps[0].state == stop.POWERDOWN and steps[0].why.startswith("asked the guest agent")
    assert steps[-1].state == stop.GONE and "through its guest agent" in steps[-1].why
    assert not steps[-1].forced


def test_an_agent_that_did_nothing_leaves_the_power_button_as_the_fallback():
    presses = []
    gone = []

    def qmp(command, timeout):
        presses.append((command, time.monotonic()))
        if command == "system_powerdown":
            gone.append(True)

    began = time.monotonic()
    steps = stop.run(lambda: not gone, lambda sig: None, qmp, 2.0, timing=FAST, asked="asked the guest agent")
    assert presses[0][0] == "system_powerdown"
    assert 0.25 <= presses[0][1] - began < 0.6
    assert steps[-1].state == stop.GONE and not steps[-1].forced


# -- the console log -----------------------------------------------------------------------------

def test_the_log_over_the_cap_is_renamed_at_start(tmp_path, monkeypatch):
    monkeypatch.setattr(console, "CAP", 100)
    log = tmp_path / "logs" / "g.console.log"
    log.parent.mkdir()
    log.write_bytes(b"a" * 150)
    fd = console.open_log(str(log))
    try:
        os.write(fd, b"new\n")
    finally:
        os.close(fd)
    assert (tmp_path / "logs" / "g.console.log.1").read_bytes() == b"a" * 150
    assert log.read_bytes() == b"new\n"
    assert oct(log.stat().st_mode & 0o777) == oct(0o640)


def test_the_log_of_a_running_guest_is_copied_and_truncated(tmp_path, monkeypatch):
    monkeypatch.setattr(console, "CAP", 100)
    log = tmp_path / "g.console.log"
    writer = console.open_log(str(log))  # as QEMU holds it: appending
    try:
        os.write(writer, b"line\n" * 30)
        assert console.trim_log(str(log))
        assert log.stat().st_size == 0
        assert (tmp_path / "g.console.log.1").read_bytes() == b"line\n" * 30
        os.write(writer, b"after\n")  # QEMU's next write lands at the start, no hole before it
        assert log.read_bytes() == b"after\n"
        assert not console.trim_log(str(log))
    finally:
        os.close(writer)


def test_a_symlinked_log_is_refused(tmp_path):
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / "g.console.log").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(GuestError, match="symbolic link"):
        console.open_log(str(tmp_path / "g.console.log"))
    assert not console.trim_log(str(tmp_path / "g.console.log"))


def test_tail_prints_the_last_lines_across_the_rotation(tmp_path):
    log = tmp_path / "g.console.log"
    (tmp_path / "g.console.log.1").write_bytes(b"one\ntwo\n")
    log.write_bytes(b"three\nfour\n")
    out = open(tmp_path / "out", "w+b")
    console.tail(str(log), 3, out)
    out.seek(0)
    assert out.read() == b"two\nthree\nfour\n"
    with pytest.raises(GuestError, match="no console log"):
        console.tail(str(tmp_path / "none.log"), 3, out)


@pytest.mark.parametrize("which", ["g.console.log", "g.console.log.1"])
def test_tail_never_follows_a_symlink_in_place_of_the_log(tmp_path, which):
    secret = tmp_path / "secret"
    secret.write_text("root's secret\n")
    log = tmp_path / "g.console.log"
    if which != log.name:
        log.write_text("a line\n")
    (tmp_path / which).symlink_to(secret)
    out = open(tmp_path / "out", "w+b")
    with pytest.raises(GuestError) as e:
        console.tail(str(log), 0, out)
    assert str(e.value) == f"{tmp_path / which}: is a symbolic link; refusing to follow it"
    out.seek(0)
    assert out.read() == b""


def test_tail_of_a_fifo_in_place_of_the_log_is_refused_at_once(tmp_path):
    log = tmp_path / "g.console.log"
    os.mkfifo(log)  # opening it to read would wait for a writer for ever
    with pytest.raises(GuestError, match="not a regular file"):
        console.tail(str(log), 0, open(tmp_path / "out", "w+b"))


# -- the session ---------------------------------------------------------------------------------

class FakeConsole:
    """The guest end of the console socket: echoes what it gets, prefixed."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.got = b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        conn, _ = self.sock.accept()
        conn.sendall(b"login: ")
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            self.got += data
            conn.sendall(b"echo:" + data)


def test_a_session_on_a_terminal_detaches_at_ctrl_bracket_and_restores_it(tmp_path):
    path = str(tmp_path / "g.console")
    fake = FakeConsole(path)
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    seen = {"out": b"", "raw": None}

    def user():  # the person at the terminal
        deadline = time.monotonic() + 10
        while b"login: " not in seen["out"] and time.monotonic() < deadline:
            seen["out"] += os.read(master, 4096)
        os.write(master, b"ls\r")
        while b"echo:ls" not in seen["out"] and time.monotonic() < deadline:
            seen["out"] += os.read(master, 4096)
        seen["raw"] = termios.tcgetattr(slave)[3] & termios.ECHO == 0
        os.write(master, b"x\x1d")

    thread = threading.Thread(target=user, daemon=True)
    thread.start()
    assert console.attach("g", path, "", slave, slave) == 0
    thread.join(5)
    assert b"escape character is ^]" in seen["out"]
    assert seen["raw"] is True  # raw while attached
    deadline = time.monotonic() + 5
    while fake.got != b"ls\rx" and time.monotonic() < deadline:  # the fake reads in its own thread
        time.sleep(0.01)
    assert fake.got == b"ls\rx"  # typed bytes as they are (Ctrl-C would go through too)
    assert termios.tcgetattr(slave) == before
    os.close(master)
    os.close(slave)


def test_a_second_session_is_refused_at_once(tmp_path):
    path = str(tmp_path / "g.console")
    FakeConsole(path)
    r, w = os.pipe()
    out = os.open(os.devnull, os.O_WRONLY)
    thread = threading.Thread(target=console.attach, args=("g", path, "", r, out))
    thread.start()
    time.sleep(0.3)
    with pytest.raises(GuestError, match="another console session"):
        console.attach("g", path, "", r, out)
    os.close(w)  # end of input ends the first session
    thread.join(5)
    assert not thread.is_alive()
    os.close(r)
    os.close(out)


def test_piped_input_is_sent_and_the_answer_shown_until_the_guest_is_quiet(tmp_path, monkeypatch):
    monkeypatch.setattr(console, "QUIET", 0.3)
    path = str(tmp_path / "g.console")
    fake = FakeConsole(path)
    r, w = os.pipe()
    os.write(w, b"uptime\r")
    os.close(w)
    out = open(tmp_path / "out", "w+b")
    began = time.monotonic()
    assert console.attach("g", path, "", r, out.fileno()) == 0
    assert time.monotonic() - began < 2
    out.seek(0)
    assert out.read() == b"login: echo:uptime\r"  # no banner off a terminal: only the guest's words
    os.close(r)


def test_no_console_socket_is_not_running(tmp_path):
    with pytest.raises(GuestError, match="not running"):
        console.attach("g", str(tmp_path / "g.console"), "", 0, 1)


def test_a_signal_ends_the_session_with_the_terminal_restored(tmp_path):
    path = str(tmp_path / "g.console")
    FakeConsole(path)
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    with pytest.raises(SystemExit) as exit_info:
        console.attach("g", path, "", slave, slave)
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert termios.tcgetattr(slave) == before
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    os.close(master)
    os.close(slave)


def test_tail_of_a_log_far_over_its_cap_prints_its_last_lines(tmp_path):
    """Only the last CAP bytes of each file are read for a count of lines (the guest decides
    how much goes into them); all of it streams by for 0."""
    log = tmp_path / "g.console.log"
    body = b"".join(b"line %d\n" % i for i in range(400000))  # ~4.5 MiB
    assert len(body) > 3 * console.CAP
    log.write_bytes(body)
    out = open(tmp_path / "out", "w+b")
    console.tail(str(log), 2, out)
    out.seek(0)
    assert out.read() == b"line 399998\nline 399999\n"
    out = open(tmp_path / "all", "w+b")
    console.tail(str(log), 0, out)
    out.seek(0)
    assert out.read() == body
