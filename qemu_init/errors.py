"""The one error tree of qemu-init (standard library only: the runtime helper imports it).

Every error a user can cause is a QemuInitError; the CLI prints it in one line and exits with
``exit_code``. Anything else escaping to the CLI is a bug and reported as "internal error".
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: the helper imports this module
if TYPE_CHECKING:
    from typing import List, Sequence

ERROR = "error"
WARNING = "warning"


class Problem(namedtuple("Problem", "path line key message level", defaults=(ERROR,))):
    """One thing wrong with the configuration, located as precisely as we can: ``path``, ``line``
    (or None), ``key`` (or None), ``message``, ``level`` (ERROR or WARNING).

    A named tuple, not a dataclass: the runtime helper imports this module at every boot,
    shutdown and status, and ``dataclasses`` (with ``inspect``) cost ~7 ms of each such run."""

    __slots__ = ()

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        key = f" {self.key}:" if self.key else ""
        prefix = "warning: " if self.level == WARNING else ""
        return f"{where}:{key} {prefix}{self.message}"


class QemuInitError(Exception):
    """Root of every error the user can cause; printed as one line, never as a traceback."""

    exit_code = 1


class ConfigError(QemuInitError):
    """The configuration is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems: List[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class RegistryError(QemuInitError):
    """Registering, numbering or looking up a guest failed."""


class RenderError(QemuInitError):
    """A script could not be rendered or installed."""


class QMPError(QemuInitError):
    """Talking to QEMU's control socket failed."""


class QMPConnectError(QMPError):
    """The control socket is absent or refused the connection."""


class QMPProtocolError(QMPError):
    """QEMU said something that is not QMP."""


class QMPExecuteError(QMPError):
    """QEMU answered a command with an error."""


class QMPTimeoutError(QMPError):
    """QEMU did not answer within the deadline."""


class GuestError(QemuInitError):
    """A runtime action on a guest failed; ``exit_code`` is the LSB code the script returns."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
