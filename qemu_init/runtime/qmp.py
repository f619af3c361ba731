"""A small synchronous QMP client over a unix socket.

Why not QEMU's own ``qemu.qmp``: it is built on asyncio. Measured with ``python -X importtime``
(Python 3.11, cached bytecode): ``import qemu.qmp`` (0.0.6) takes ~55 ms, ~33 ms of it asyncio;
this module takes ~4 ms (socket and json included), the whole helper ~14 ms. The helper runs at
every boot, shutdown and ``status`` of every guest and needs nothing but request/reply with
deadlines, which a blocking socket does in a page.

Every public call takes one ``time.monotonic()`` deadline that covers all of it (connect, greeting,
capabilities, send, reply): a QEMU that accepts the connection but never answers costs at most the
timeout, never a hang. Events that arrive while a reply is awaited are queued in ``events``.
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque

from ..errors import QMPConnectError, QMPExecuteError, QMPProtocolError, QMPTimeoutError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import Any, Deque, Dict, List, Optional

DEFAULT_TIMEOUT = 5.0
_MAX_LINE = 16 * 1024 * 1024  # QMP replies are small; a runaway peer must not eat the memory


class QMP:
    """One QMP session. ``with QMP(path) as q: q.execute("query-status")``."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT):
        self.path = path
        self.timeout = timeout
        self.greeting: Optional[Dict[str, Any]] = None
        self.events: Deque[Dict[str, Any]] = deque()
        self._sock: Optional[socket.socket] = None
        self._buf = b""
        self._ids = 0

    def __enter__(self) -> "QMP":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf = b""

    def connect(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Connect, read the greeting and leave negotiation mode; returns the greeting."""
        self._connect(self._deadline(timeout))
        assert self.greeting is not None
        return self.greeting

    def execute(self, command: str, args: Optional[Dict[str, Any]] = None,
                timeout: Optional[float] = None) -> Any:
        """Run one QMP command and return its ``return`` value (connecting first if needed)."""
        deadline = self._deadline(timeout)
        if self._sock is None:
            self._connect(deadline)
        try:
            return self._command(command, args, deadline)
        except (QMPConnectError, QMPProtocolError):
            self.close()  # the stream is dead or out of step: the next call reconnects
            raise

    def human(self, command_line: str, timeout: Optional[float] = None) -> str:
        """Run a human monitor (HMP) command such as ``info status``; returns its text."""
        return str(self.execute("human-monitor-command", {"command-line": command_line}, timeout))

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

    def _command(self, command: str, args: Optional[Dict[str, Any]], deadline: float) -> Any:
        assert self._sock is not None
        self._ids += 1
        ident = f"qi-{self._ids}"
        message: Dict[str, Any] = {"execute": command, "id": ident}
        if args is not None:
            message["arguments"] = args
        what = f"the reply to '{command}'"
        try:
            self._sock.settimeout(self._remaining(deadline, what))
            self._sock.sendall(json.dumps(message).encode() + b"\n")
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
                error = reply["error"] if isinstance(reply["error"], dict) else {}
                raise QMPExecuteError(f"{command}: {error.get('desc', 'failed')}")
            elif reply.get("id") != ident:
                continue  # a late reply to an earlier command that timed out
            elif "error" in reply:
                error = reply["error"] if isinstance(reply["error"], dict) else {}
                raise QMPExecuteError(f"{command}: {error.get('desc', 'failed')}")
            elif "return" in reply:
                return reply["return"]
            else:
                raise QMPProtocolError(f"{self.path}: unexpected {what}: {reply!r:.200}")

    def _read(self, deadline: float, what: str) -> Dict[str, Any]:
        """The next JSON message; QMP frames one message per line."""
        assert self._sock is not None
        while True:
            line, sep, rest = self._buf.partition(b"\n")
            if sep:
                self._buf = rest
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    raise QMPProtocolError(f"{self.path}: not JSON: {line[:200]!r}") from None
                if not isinstance(message, dict):
                    raise QMPProtocolError(f"{self.path}: not a JSON object: {line[:200]!r}")
                return message
            if len(self._buf) > _MAX_LINE:
                raise QMPProtocolError(f"{self.path}: message too long")
            try:
                self._sock.settimeout(self._remaining(deadline, what))
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise QMPTimeoutError(f"{self.path}: timed out waiting for {what}") from None
            except OSError as e:
                raise QMPConnectError(f"{self.path}: {e.strerror or e}") from None
            if not chunk:
                raise QMPConnectError(f"{self.path}: QEMU closed the connection")
            self._buf += chunk
