"""The manual pages: lint-clean, generated from the key table, and in step with the CLI."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

REPO = Path(__file__).resolve().parents[2]
MAN = REPO / "man"
PAGES = {"qemu-init.5": MAN / "qemu-init.5", "qemu-init.8": MAN / "qemu-init.8", "qemud.8": MAN / "qemud.8",
         "qemu-init-helper.8": MAN / "qemu-init-helper.8"}

sys.path.insert(0, str(REPO / "contrib"))
import mkfiles  # noqa: E402  (the build tool that writes qemu-init(5))

from qemu_init import cli  # noqa: E402
from qemu_init.keys import HOST_KEYS, RC_KEYS  # noqa: E402


def section(page: str, start: str, end: str) -> str:
    text = PAGES[page].read_text(encoding="utf-8")
    return text[text.index(start):text.index(end, text.index(start))]


@pytest.mark.skipif(shutil.which("mandoc") is None, reason="mandoc is not installed (.ci/install-deps)")
@pytest.mark.parametrize("page", sorted(PAGES))
def test_mandoc_lint_is_clean(page):
    proc = subprocess.run(["mandoc", "-Tlint", str(PAGES[page])], capture_output=True, text=True)
    # Only lines about the page itself are lint messages ("outdated mandoc.db" notes are about
    # the host). Whether a referenced page is installed depends on the host too; that our own
    # references hold is checked below.
    messages = [line for line in (proc.stdout + proc.stderr).splitlines()
                if line.startswith(f"mandoc: {PAGES[page]}:") and "referenced manual not found" not in line]
    assert messages == [], "\n".join(messages)


def test_references_between_our_pages_hold():
    for page, path in PAGES.items():
        for name, sec in re.findall(r"^\.Xr (qemu-init|qemud) (\d)", path.read_text(encoding="utf-8"), re.M):
            assert f"{name}.{sec}" in PAGES, f"{page} refers to {name}({sec}), which we do not ship"


def test_qemu_init_5_is_generated_from_the_key_table():
    fresh = mkfiles.man5((MAN / "qemu-init.5.in").read_text(encoding="utf-8"))
    assert PAGES["qemu-init.5"].read_text(encoding="utf-8") == fresh, \
        "man/qemu-init.5 is stale: run `make man` and commit the result"


def test_every_key_is_documented_in_its_section():
    rc = section("qemu-init.5", ".Ss The rc-file", ".Ss The cfg-file")
    host = section("qemu-init.5", ".It Pa ETCDIR/qemu\\-init.conf", ".It Pa ETCDIR/registered")
    for keys, text in ((RC_KEYS, rc), (HOST_KEYS, host)):
        for key in keys.values():
            entry = re.search(rf"^\.It Cm {key.name}\b.*?(?=^\.It |^\.El)", text, re.M | re.S)
            assert entry, f"{key.name} is missing from qemu-init(5)"
            body = entry.group(0)
            assert "Default" in body, f"{key.name}: no default in qemu-init(5)"
            if key.default:
                assert f'"{mkfiles.roff(key.default, quoted=True)}"' in body, key.name
            if key.example:
                assert f'"{mkfiles.roff(f"{key.name}={key.example}", quoted=True)}"' in body, key.name


def commands(group, prefix=()):
    """(path, click command) for every command of the CLI, groups included."""
    for name, command in sorted(group.commands.items()):
        yield prefix + (name,), command
        if hasattr(command, "commands"):
            yield from commands(command, prefix + (name,))


def documented(option: str, page: str) -> bool:
    """Whether the page has the option as mdoc writes it: Fl adds the first dash, the others
    are escaped; the whole option, not a prefix of a longer one."""
    return re.search(re.escape("Fl " + option[1:].replace("-", "\\-")) + r"(?![\w\\])", page) is not None


def long_options(command):
    return [opt for param in command.params for opt in param.opts if opt.startswith("--") and opt != "--help"]


def test_qemu_init_8_documents_every_command_and_option():
    page = PAGES["qemu-init.8"].read_text(encoding="utf-8")
    items = [line.replace("|", " ").split() for line in re.findall(r"^\.It Cm (.*)$", page, re.M)]
    root = typer.main.get_command(cli.app)
    missing = [opt for opt in long_options(root) if not documented(opt, page)]
    for path, command in commands(root):
        if not any(words[0] == path[0] and all(w in words for w in path[1:]) for words in items):
            missing.append(" ".join(path))
        missing += [f"{' '.join(path)} {opt}" for opt in long_options(command)
                    if not documented(opt, page)]
    assert missing == [], f"not in man/qemu-init.8: {missing}"


def test_qemud_8_documents_the_host_service_actions():
    page = PAGES["qemud.8"].read_text(encoding="utf-8")
    group = typer.main.get_command(cli.app).commands["qemud"]
    for action in group.commands:
        assert f".It Cm {action}" in page, f"qemud {action} is not in man/qemud.8"
