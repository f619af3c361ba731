"""A small synchronous QMP client over a unix socket.

Why not QEMU's own ``qemu.qmp``: it is built on asyncio. Measured with ``python -X importtime``
(Python 3.11, cached bytecode): ``import qemu.qmp`` (0.0.6) takes ~55 ms, ~33 ms of it asyncio;
this module takes ~4 ms (socket and json included), the whole helper ~14 ms. The helper runs at
every boot, shutdown and ``status`` of every guest and needs nothing but request/reply with
deadlines, which a blocking socket does in a page.

Every public call takes one ``time.monotonic()`` deadline that covers all of it (connect, greeting,
capabilities, send, reply): a QEMU that accepts the connection but never answers costs at most the
timeout, never a hang. Events that arrive while a reply is awaited are queued in ``events``.

The peer is not trusted to be a healthy QEMU: whatever it sends (garbage, invalid UTF-8, JSON
nested past Python's recursion limit, a line of many megabytes, a byte now and then) ends as a
QMPError within the call's deadline, with the memory it may take bounded by MAX_LINE. Callers
(the stop machine above all) treat every QMPError as "no answer" and move on.
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque

from ..errors import QMPConnectError, QMPExecuteError, QMPProtocolError, QMPTimeoutError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import Any, Deque, Dict, List, Optional, Sequence

DEFAULT_TIMEOUT = 5.0
# The replies to what this client sends (qmp_capabilities, query-status, system_powerdown, quit,
# human-monitor-command) are small and flat: a few hundred bytes, nested 3 deep. 8 MiB still
# holds the longest HMP text (`info mtree`, `info tlb` of a large guest) and bounds what a runaway
# peer makes us hold; 64 levels keep every str()/repr() of a reply far from the recursion limit.
MAX_LINE = 8 << 20  # bytes in one message
MAX_DEPTH = 64      # nesting of lists and objects in one message


class QMP:
    """One QMP session. ``with QMP(path) as q: q.execute("query-status")``."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT):
        self.path = path
        self.timeout = timeout
        self.greeting: Optional[Dict[str, Any]] = None
        self.events: Deque[Dict[str, Any]] = deque()
        self._sock: Optional[socket.socket] = None
        self._buf = bytearray()
        self._ids = 0

    def __enter__(self) -> "QMP":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf = bytearray()

    def connect(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Connect, read the greeting and leave negotiation mode; returns the greeting."""
        self._connect(self._deadline(timeout))
        assert self.greeting is not None
        return self.greeting

    def execute(self, command: str, args: Optional[Dict[str, Any]] = None,
                timeout: Optional[float] = None, fds: Sequence[int] = ()) -> Any:
        """Run one QMP command and return its ``return`` value (connecting first if needed).
        ``fds`` go with it as SCM_RIGHTS (``getfd``: QEMU's sandbox cannot open files itself)."""
        deadline = self._deadline(timeout)
        if self._sock is None:
            self._connect(deadline)
        try:
            return self._command(command, args, deadline, fds)
        except (QMPConnectError, QMPProtocolError):
            self.close()  # the stream is dead or out of step: the next call reconnects
            raise

    def human(self, command_line: str, timeout: Optional[float] = None) -> str:
        """Run a human monitor (HMP) command such as ``info status``; returns its text."""
        text = self.execute("human-monitor-command", {"command-line": command_line}, timeout)
        if not isinstance(text, str):
            raise QMPProtocolError(f"{self.path}: the answer to '{command_line}' is not text")
        return text

    def pop_events(self) -> List[Dict[str, Any]]:
        """The events received so far, oldest first; the queue is emptied."""
        events = list(self.events)
        self.events.clear()
        return events

    # -- internals ---------------------------------------------------------------------------

    def _deadline(self, timeout: Optional[float]) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _remaining(self, deadline: float, what: str) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise QMPTimeoutError(f"{self.path}: timed out waiting for {what}")
        return left

    def _connect(self, deadline: float) -> None:
        self.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._remaining(deadline, "the connection"))
            sock.connect(self.path)
        except socket.timeout:
            sock.close()
            raise QMPTimeoutError(f"{self.path}: connection timed out") from None
        except OSError as e:
            sock.close()
            raise QMPConnectError(f"{self.path}: {e.strerror or e}") from None
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        try:
            greeting = self._read(deadline, "the greeting")
            if "QMP" not in greeting:
                raise QMPProtocolError(f"{self.path}: no QMP greeting (is this a QMP socket?)")
            self.greeting = greeting
            self._command("qmp_capabilities", None, deadline)
        except BaseException:
            self.close()
            raise

    def _command(self, command: str, args: Optional[Dict[str, Any]], deadline: float,
                 fds: Sequence[int] = ()) -> Any:
        assert self._sock is not None
        self._ids += 1
        ident = f"qi-{self._ids}"
        message: Dict[str, Any] = {"execute": command, "id": ident}
        if args is not None:
            message["arguments"] = args
        what = f"the reply to '{command}'"
        try:
            self._sock.settimeout(self._remaining(deadline, what))
            data = json.dumps(message).encode() + b"\n"
            if fds:  # the descriptors ride on the command's first byte; the rest follows plainly
                sent = socket.send_fds(self._sock, [data], list(fds))
                data = data[sent:]
            self._sock.sendall(data)
        except socket.timeout:
            raise QMPTimeoutError(f"{self.path}: timed out sending '{command}'") from None
        except OSError as e:
            raise QMPConnectError(f"{self.path}: sending '{command}': {e.strerror or e}") from None
        while True:
            reply = self._read(deadline, what)
            if "event" in reply:
                self.events.append(reply)
            elif "id" not in reply and "error" in reply:
                # QEMU answers without an id when it could not read the command at all (a JSON
                # parse error): that is the answer to the one command pending, not to wait out
                raise QMPExecuteError(f"{command}: {_description(reply['error'])}")
            elif reply.get("id") != ident:
                continue  # a late reply to an earlier command that timed out
            elif "error" in reply:
                raise QMPExecuteError(f"{command}: {_description(reply['error'])}")
            elif "return" in reply:
                return reply["return"]
            else:
                keys = ", ".join(sorted(reply))
                raise QMPProtocolError(f"{self.path}: unexpected {what} (keys: {keys:.100})")

    def _read(self, deadline: float, what: str) -> Dict[str, Any]:
        """The next JSON message; QMP frames one message per line."""
        assert self._sock is not None
        scanned = 0  # the bytes of _buf already searched for a newline (a long line arrives in pieces)
        while True:
            end = self._buf.find(b"\n", scanned)
            if end < 0:
                scanned = len(self._buf)
                if scanned > MAX_LINE:
                    raise QMPProtocolError(f"{self.path}: a message longer than {MAX_LINE >> 20} MiB")
                self._buf += self._recv(deadline, what)
                continue
            line = bytes(self._buf[:end])
            del self._buf[:end + 1]
            scanned = 0
            if len(line) > MAX_LINE:
                raise QMPProtocolError(f"{self.path}: a message longer than {MAX_LINE >> 20} MiB")
            if line.strip():
                return self._parse(line)

    def _recv(self, deadline: float, what: str) -> bytes:
        assert self._sock is not None
        try:
            self._sock.settimeout(self._remaining(deadline, what))
            chunk = self._sock.recv(65536)
        except socket.timeout:
            raise QMPTimeoutError(f"{self.path}: timed out waiting for {what}") from None
        except OSError as e:
            raise QMPConnectError(f"{self.path}: {e.strerror or e}") from None
        if not chunk:
            raise QMPConnectError(f"{self.path}: QEMU closed the connection")
        return chunk

    def _parse(self, line: bytes) -> Dict[str, Any]:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            # ValueError covers bad JSON, invalid UTF-8 (UnicodeDecodeError) and integers of
            # more digits than int() takes; RecursionError, nesting past the interpreter's stack
            raise QMPProtocolError(f"{self.path}: not JSON: {line[:60]!r}") from None
        if not isinstance(message, dict):
            raise QMPProtocolError(f"{self.path}: not a JSON object: {line[:60]!r}")
        if _deeper_than(message, MAX_DEPTH):
            raise QMPProtocolError(f"{self.path}: a message nested deeper than {MAX_DEPTH} levels")
        return message


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects in ``value`` nest more than ``limit`` deep (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _description(error: Any) -> str:
    """The ``desc`` of a QMP error reply, if it is text (one line, bounded), else "failed"."""
    desc = error.get("desc") if isinstance(error, dict) else None
    if not isinstance(desc, str) or not desc.strip():
        return "failed"
    return " ".join(desc.split())[:200]
