"""A minimal client of the QEMU guest agent (qemu-ga), for AGENT=yes guests.

The agent runs inside the guest on a virtio-serial port (``org.qemu.guest_agent.0``); QEMU joins
that port to a unix socket the helper bound (root's, 0600, in RUNDIR). The protocol is QMP-like
JSON, one message per line, but without a greeting, and the stream may hold what an earlier
client left half-said: ``guest-sync-delimited`` first (a 0xFF byte resets the agent's parser, and
its answer starts with 0xFF too), so everything before our own answer can be skipped.

The peer is trusted less than QEMU: the guest writes it. Every call has one deadline
(``time.monotonic()``) covering connect, send and the answer; a line longer than MAX_LINE, or
anything that is not the expected answer, only ends the call early. An absent agent (the port
closed in the guest) and a hung one (open, never answering) both cost exactly the timeout.
"""

from __future__ import annotations

import json
import os
import socket
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional

    from .stop import Transition

PING_TIMEOUT = 1.0   # the agent answers guest-ping within this, or it counts as absent
REFUSAL_WAIT = 0.5   # guest-shutdown has no answer when it works; an error comes at once
MAX_LINE = 64 << 10  # the answers we wait for are a few bytes


class AgentError(Exception):
    """The agent did not answer as it should (absent, hung, or not an agent)."""


class AgentRefused(AgentError):
    """The agent answered a command with an error."""


class Agent:
    """One session with the agent behind ``path``; ``with Agent(path, deadline) as a: a.ping()``."""

    def __init__(self, path: str, deadline: float):
        self.path = path
        self.deadline = deadline
        self._sock: Optional[socket.socket] = None
        self._buf = b""
        self._ids = 0

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise AgentError("no answer in time")
        return left

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._left())
                sock.connect(self.path)
            except (OSError, AgentError) as e:
                sock.close()
                raise AgentError(getattr(e, "strerror", None) or str(e)) from None
            self._sock = sock
        return self._sock

    def _send(self, data: bytes) -> None:
        sock = self._connect()
        try:
            sock.settimeout(self._left())
            sock.sendall(data)
        except OSError as e:
            raise AgentError(f"sending: {e.strerror or e}") from None

    def _line(self) -> bytes:
        """The next line from the agent (without its newline)."""
        sock = self._connect()
        while b"\n" not in self._buf:
            if len(self._buf) > MAX_LINE:
                raise AgentError("an answer far too long")
            try:
                sock.settimeout(self._left())
                chunk = sock.recv(4096)
            except socket.timeout:
                raise AgentError("no answer in time") from None
            except OSError as e:
                raise AgentError(e.strerror or str(e)) from None
            if not chunk:
                raise AgentError("the connection closed")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _answer(self, line: bytes) -> Any:
        try:
            message = json.loads(line.decode())
        except (ValueError, RecursionError):
            return None
        return message if isinstance(message, dict) else None

    def sync(self) -> None:
        """guest-sync-delimited: skip whatever the stream held before our answer."""
        self._ids += 1
        ident = (os.getpid() << 16) + self._ids  # not an answer a previous client could have asked for
        request = {"execute": "guest-sync-delimited", "arguments": {"id": ident}}
        self._send(b"\xff" + json.dumps(request).encode() + b"\n")
        while True:
            line = self._line()
            if b"\xff" in line:  # the agent's delimiter: our answer follows it on this line
                message = self._answer(line.rpartition(b"\xff")[2])
                if message is not None and message.get("return") == ident:
                    return

    def execute(self, command: str, args: Optional[dict] = None) -> Any:
        """One command (after sync); its ``return``, AgentRefused on an error answer."""
        self.request(command, args)
        return self.reply(command)

    def request(self, command: str, args: Optional[dict] = None) -> None:
        message: dict = {"execute": command}
        if args is not None:
            message["arguments"] = args
        self._send(json.dumps(message).encode() + b"\n")

    def reply(self, command: str) -> Any:
        while True:
            message = self._answer(self._line())
            if message is None:
                continue
            if "error" in message:
                error = message["error"]
                desc = error.get("desc") if isinstance(error, dict) else None
                raise AgentRefused(f"{command}: " + (" ".join(str(desc).split())[:200] if desc else "failed"))
            if "return" in message:
                return message["return"]

    def ping(self) -> None:
        self.sync()
        self.execute("guest-ping")


def answers(path: str, timeout: float = PING_TIMEOUT) -> bool:
    """Whether the agent answers guest-ping within ``timeout`` seconds."""
    try:
        with Agent(path, time.monotonic() + timeout) as agent:
            agent.ping()
        return True
    except AgentError:
        return False


def shutdown(path: str, timeout: float = PING_TIMEOUT, refusal_wait: float = REFUSAL_WAIT) -> Optional[str]:
    """Ask the agent to power the guest off (guest-shutdown, mode powerdown) if it answers
    guest-ping within ``timeout``. Returns None once asked, else why not. Takes at most
    ``timeout`` + ``refusal_wait`` seconds: a guest-shutdown that works has no answer, one that
    fails in the guest (its shutdown command failed) answers with an error at once."""
    try:
        with Agent(path, time.monotonic() + timeout) as agent:
            agent.ping()
            agent.deadline = time.monotonic() + refusal_wait
            agent.request("guest-shutdown", {"mode": "powerdown"})
            try:
                agent.reply("guest-shutdown")
            except AgentRefused as e:
                return f"the guest agent refused: {e}"
            except AgentError:
                pass  # no answer: the guest is on its way down
        return None
    except AgentError as e:
        return f"the guest agent does not answer ({e})"


def ask_to_shut_down(path: str, report: Callable[[Transition], None], grace: float) -> str:
    """The stop's first step for an AGENT=yes guest: shutdown() within ``grace`` in all. Returns
    what the stop machine says it did ("" when the agent was not asked: the power button then
    goes first, as without an agent; ``report`` is told why)."""
    ping = min(PING_TIMEOUT, grace)
    failed = shutdown(path, ping, min(REFUSAL_WAIT, max(0.0, grace - ping)))
    if failed is None:
        return "asked the guest agent to shut down"
    from . import stop
    report(stop.Transition(stop.WAIT, 0.0, f"{failed}: the power button instead"))
    return ""
