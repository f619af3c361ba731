"""A fake QMP server for unit tests: a thread on a unix socket, behaviour chosen per test.

Like QEMU it serves one client at a time (later clients wait in the listen backlog) and ends
lines with CRLF. It answers qmp_capabilities itself; for every other command
``handler(server, message)`` returns what to send: a list of
dicts (sent as JSON lines), bytes (sent raw), Drip (bytes sent one at a time, slowly), or CLOSE
to hang up. ``chunk`` splits everything sent into pieces of that many bytes with ``chunk_delay``
between them. The greeting may be bytes or a Drip too (a peer that is wrong from its first word).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

GREETING = {"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fake"},
                    "capabilities": ["oob"]}}
CLOSE = object()


class Drip:
    """``data`` sent a byte every ``every`` seconds: a peer that talks but never ends a line
    within any deadline."""

    def __init__(self, data: bytes, every: float):
        self.data, self.every = data, every


def event(name: str, **data: Any) -> Dict[str, Any]:
    message: Dict[str, Any] = {"timestamp": {"seconds": int(time.time()), "microseconds": 0}, "event": name}
    if data:
        message["data"] = data
    return message


def reply(message: Dict[str, Any], value: Any = None) -> Dict[str, Any]:
    """A success reply to ``message``, echoing its id as QEMU does."""
    answer: Dict[str, Any] = {"return": {} if value is None else value}
    if "id" in message:
        answer["id"] = message["id"]
    return answer


def _with_id(message: Dict[str, Any], head: bytes, tail: bytes = b"}\r\n") -> bytes:
    return head + b', "id": ' + json.dumps(message["id"]).encode() + tail


# Peers that must count as "no answer" (QMPError), never as a crash or a hang: name -> a function
# of the command received giving what to send. Shared by test_qmp, test_stop and test_helper_stop.
BAD_PEERS: Dict[str, Callable[[Dict[str, Any]], Any]] = {
    "nested": lambda m: [b"[" * 100000 + b"\r\n"],
    "nested-closed": lambda m: [_with_id(m, b'{"return": ' + b"[" * 100000 + b"]" * 100000)],
    "nested-deep-enough-to-parse": lambda m: [_with_id(m, b'{"return": ' + b"[" * 500 + b"]" * 500)],
    "huge-line": lambda m: [_with_id(m, b'{"return": "' + b"x" * (40 << 20) + b'"')],
    "huge-int": lambda m: [_with_id(m, b'{"return": ' + b"9" * 100000)],
    "garbage": lambda m: [b"\x00\xff\xfe\x1b[2J garbage \x80\x81\r\n"],
    "invalid-utf8": lambda m: [_with_id(m, b'{"return": "\xff\xfe\xc3"')],
    "not-an-object": lambda m: [b"[1, 2, 3]\r\n"],
    "error-not-text": lambda m: [_with_id(m, b'{"error": {"class": 1, "desc": [["x"], {"y": null}]}')],
    "drip": lambda m: [Drip(b'{"return": {}, "id": "qi-1"}', 0.5)],  # never a full line in time
    "silent": lambda m: [],
}


@pytest.fixture
def sock_path() -> Iterator[str]:
    """A socket path in a fresh directory under /tmp (pytest's tmp_path can exceed the 108
    bytes a unix socket path may have)."""
    folder = tempfile.mkdtemp(prefix="qi-", dir="/tmp")
    yield os.path.join(folder, "qmp")
    shutil.rmtree(folder, ignore_errors=True)


class FakeQMP:
    def __init__(self, path: str, handler: Optional[Callable[["FakeQMP", Dict[str, Any]], Any]] = None,
                 greeting: Any = GREETING, chunk: int = 0, chunk_delay: float = 0.0):
        self.path = path
        self.handler = handler or (lambda server, message: [reply(message)])
        self.greeting = greeting  # None: accept and never say a word
        self.chunk = chunk
        self.chunk_delay = chunk_delay
        self.received: List[Dict[str, Any]] = []
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(4)
        self._listener.settimeout(0.02)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "FakeQMP":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def commands(self) -> List[str]:
        """The commands received, in order, qmp_capabilities included."""
        return [m.get("execute", "?") for m in self.received]

    def send(self, conn: socket.socket, item: Any) -> None:
        # a big message must not be cut short by the 20 ms poll timeout of recv (a busy host
        # may leave the client unscheduled that long): sends get a timeout of their own
        conn.settimeout(10)
        try:
            self._send(conn, item)
        finally:
            conn.settimeout(0.02)

    def _send(self, conn: socket.socket, item: Any) -> None:
        if isinstance(item, Drip):
            for i in range(len(item.data)):
                if self._stop.wait(item.every):
                    return
                conn.sendall(item.data[i:i + 1])
            return
        data = item if isinstance(item, bytes) else json.dumps(item).encode() + b"\r\n"
        step = self.chunk or len(data)
        for i in range(0, len(data), step):
            conn.sendall(data[i:i + step])
            if self.chunk_delay:
                time.sleep(self.chunk_delay)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            self.connections += 1
            with conn:
                try:
                    self._serve(conn)
                except OSError:
                    pass  # the client went away

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.02)
        if self.greeting is not None:
            self.send(conn, self.greeting)
        buf = b""
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
            except socket.timeout:
                continue
            if not data:
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                message = json.loads(line)
                self.received.append(message)
                if message.get("execute") == "qmp_capabilities":
                    answer = [reply(message)]
                else:
                    answer = self.handler(self, message)
                if answer is CLOSE:
                    return
                for item in answer or ():
                    if item is CLOSE:
                        return
                    self.send(conn, item)
