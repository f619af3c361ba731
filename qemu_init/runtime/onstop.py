"""`qemu-init stop NAME [--save]`'s request to the guest's next stop (ONSHUTDOWN=save): a
service's stop cannot take arguments, so what is asked goes by the file ``NAME.state.onstop``
in the state folder (runtime/savestate.py: root's, 0711), "save" or "shutdown", for one stop.

A request is written only where it differs from what the guest's stop does unasked (its
ONSHUTDOWN), and only under the guest's lock (guestcmds): its text names its asker, who
withdraws it under the lock once the stop is over, if it is still there and still theirs (the
stop that used it removed it; another asker may have written their own since). ``qemud stop``
looks at it (next_mode) without using it up: a guest whose stop will save is not pressed.
"""

from __future__ import annotations

import os

# the state folder's files: root's alone, never through a link (savestate.py)
from .savestate import MODES, ONSTOP, _open_owned, _statedir, _write_private

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see control.py)
if TYPE_CHECKING:
    from typing import Optional


def request(statefile: str, mode: str) -> str:
    """Ask the next stop of this guest for ``mode`` (save or shutdown), whatever its
    ONSHUTDOWN says; returns the request's text, to withdraw() it by."""
    assert mode in MODES
    _statedir(statefile)
    text = f"{mode}\n{os.getpid()} {os.urandom(8).hex()}\n"
    _write_private(statefile + ONSTOP, text.encode())
    return text


def _request_text(statefile: str) -> Optional[str]:
    """The request's text; None without one (or one not root's alone: not followed)."""
    try:
        fd = _open_owned(statefile + ONSTOP)
    except OSError:
        return None
    try:
        return os.read(fd, 256).decode(errors="replace")
    finally:
        os.close(fd)


def withdraw(statefile: str, text: str) -> None:
    """Remove the request ``text`` if it is still there, as it was written."""
    if text and _request_text(statefile) == text:
        os.unlink(statefile + ONSTOP)


def mode(onshutdown: str) -> str:
    """What a stop does without a request: ONSHUTDOWN's "save" or "shutdown"."""
    return onshutdown if onshutdown in MODES else "shutdown"


def next_mode(statefile: str, onshutdown: str) -> str:
    """What the next stop will do ("save" or "shutdown"), the request left in place: what a
    `qemu-init stop` asked, else the guest's ONSHUTDOWN."""
    if not statefile:
        return "shutdown"  # nowhere to save to
    asked = (_request_text(statefile) or "").partition("\n")[0]
    return asked if asked in MODES else mode(onshutdown)


def stop_mode(statefile: str, onshutdown: str) -> str:
    """What this stop does (next_mode), the request used up: it holds for one stop."""
    chosen = next_mode(statefile, onshutdown)
    if statefile and _request_text(statefile) is not None:
        try:
            os.unlink(statefile + ONSTOP)
        except FileNotFoundError:
            pass
    return chosen
