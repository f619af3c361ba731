"""Rendering: one Jinja environment, quoting filters, and the files ``new`` writes.

Values reach a script only through a quoting filter (``sh`` for POSIX sh, ``unit`` for systemd
``Exec*=`` lines); templates make no decisions beyond ``if``/``for`` over computed fields.
"""

from __future__ import annotations

import functools
import os
import shlex
from typing import Any, Iterable

import jinja2

from . import __version__
from .keys import RC_KEYS

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def sh(value: Any) -> str:
    """One POSIX sh word that stands for exactly ``value``."""
    return shlex.quote(str(value))


def shjoin(words: Iterable[Any]) -> str:
    return " ".join(sh(w) for w in words)


def unit(value: Any) -> str:
    """One word of a systemd ``Exec*=`` line: ``$``/``%`` doubled, quoted when needed."""
    text = str(value).replace("%", "%%").replace("$", "$$")
    if text and not any(c in text for c in " \t\n\"'\\;"):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def unitjoin(words: Iterable[Any]) -> str:
    return " ".join(unit(w) for w in words)


def comment(value: Any) -> str:
    """Text safe inside a ``#`` comment line (no line breaks can end the comment)."""
    return " ".join(str(value).split())


@functools.lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # we write shell scripts and units, not HTML; quoting filters do the job
    )
    env.filters.update(sh=sh, shjoin=shjoin, unit=unit, unitjoin=unitjoin, comment=comment)
    env.globals.update(version=__version__)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def new_rcfile(name: str) -> str:
    return render("new/guest-qemud.rc.j2", name=name, keys=RC_KEYS.values())


def new_cfgfile(name: str, template_path: str) -> str:
    if os.path.exists(template_path):
        with open(template_path, encoding="utf-8") as handle:
            return handle.read()
    return render("new/template-qemu.cfg.j2", name=name)
