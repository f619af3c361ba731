"""The runtime helper runs at every boot, shutdown and status: standard library only, no asyncio.

Checked in a fresh interpreter, since this test session itself has loaded everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("jinja2", "typer", "click", "rich", "asyncio")

PROBE = """
import json, sys
import qemu_init.runtime.helper, qemu_init.runtime.control, qemu_init.runtime.stop
import qemu_init.runtime.qmp, qemu_init.runtime.proc, qemu_init.runtime.launch, qemu_init.runtime.monitor
print(json.dumps(sorted(sys.modules)))
"""


def _modules(code: str) -> list:
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_helper_imports_nothing_heavy():
    loaded = _modules(PROBE)
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert bad == [], f"the runtime helper pulled in {bad}"
    # nor the generator side of qemu-init
    ours = [m for m in loaded if m.startswith("qemu_init")]
    assert all(m in ("qemu_init", "qemu_init.errors", "qemu_init.trust") or m.startswith("qemu_init.runtime") for m in ours), ours


def test_helper_imports_neither_dataclasses_nor_typing():
    # together ~10 ms of every boot, shutdown and status (dataclasses loads inspect): the runtime's
    # records are plain classes or namedtuples, and its typing names exist for type checkers only
    bare = _modules("import json, sys\nprint(json.dumps(sorted(sys.modules)))")  # a .pth may load anything
    loaded = _modules(PROBE)
    bad = [m for m in ("dataclasses", "inspect", "typing") if m in loaded and m not in bare]
    assert bad == [], f"the runtime helper pulled in {bad}"


def test_status_of_a_stopped_guest_runs_without_the_qmp_client(tmp_path):
    code = (
        "import json, sys\n"
        "from qemu_init.runtime.helper import main\n"
        f"rc = main(['status', 'vm1', '--pidfile', {str(tmp_path / 'p')!r}, '--qmp', {str(tmp_path / 'q')!r}, '--runas', 'root'])\n"
        "print(json.dumps([rc, sorted(sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    rc, loaded = json.loads(out.stdout.splitlines()[-1])
    assert rc == 3
    assert "qemu_init.runtime.qmp" not in loaded and "subprocess" not in loaded
    # argparse imports shutil to measure the terminal unless given a width (helper._formatter)
    assert "shutil" not in loaded


def test_helper_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "qemu_init.runtime", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "status" in out.stdout
