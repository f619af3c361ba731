"""No import runs back up the layers (issue 13): the package's import graph, in-function imports
included, has no cycle; the runtime imports nothing of the generator side but errors and trust;
and no module holds more than ~300 lines of code (cli.py excepted until its split, issue 15)."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[2] / "qemu_init"
MAX_CODE_LINES = 300
TOO_BIG_FOR_NOW = {"qemu_init.cli"}  # issue 15 splits it


def modules() -> Dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return found


def imports(name: str, path: Path, known: Dict[str, Path]) -> Set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found |= {t for t in [target] + [f"{target}.{a.name}" for a in node.names] if t in known}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
    return found - {name, "qemu_init", "qemu_init.runtime"}  # the packages themselves import nothing


def graph() -> Dict[str, Set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_the_import_graph_has_no_cycle():
    edges = graph()
    done: Set[str] = set()
    cycles: List[List[str]] = []

    def visit(name: str, trail: List[str]) -> None:
        if name in trail:
            cycles.append(trail[trail.index(name):] + [name])
            return
        if name in done:
            return
        for dep in sorted(edges[name]):
            visit(dep, trail + [name])
        done.add(name)

    for name in sorted(edges):
        visit(name, [])
    assert cycles == []


def test_the_runtime_imports_only_errors_and_trust_from_the_generator_side():
    for name, deps in graph().items():
        if name.startswith("qemu_init.runtime."):
            outside = {d for d in deps if not d.startswith("qemu_init.runtime.")}
            assert outside <= {"qemu_init.errors", "qemu_init.trust"}, (name, outside)


def code_lines(path: Path) -> int:
    """Lines holding code: no blank lines, comments or docstrings."""
    source = path.read_text()
    docs = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                and isinstance(body[0].value.value, str):
            docs.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = set()
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            lines.update(n for n in range(token.start[0], token.end[0] + 1) if n not in docs)
    return len(lines)


def test_no_module_holds_more_than_about_300_lines_of_code():
    big = {name: code_lines(path) for name, path in modules().items()
           if name not in TOO_BIG_FOR_NOW and code_lines(path) > MAX_CODE_LINES}
    assert big == {}
