"""The package's shape (issue 14): one job per module, small modules, no import cycle, and
docs/architecture.md naming every module there is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "zipkit"
MAX_LINES = 450  # non-blank lines per module


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every zipkit module that `name` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        out.update(t for t in targets if t in known and t != name)
    # a package's own __init__ runs before its submodules: importing "zipkit" from inside it is
    # not an edge back to them
    return {t for t in out if not (t == "zipkit" and name.startswith("zipkit."))}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_module_is_over_450_non_blank_lines(name: str) -> None:
    path = _modules()[name]
    lines = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    assert lines <= MAX_LINES, f"{path.name}: {lines} non-blank lines (limit {MAX_LINES})"


def test_no_import_cycle_in_the_package() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_count(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from . import _other\n", encoding="utf-8")
    assert _imports("zipkit.m", source, {"zipkit._other"}) == {"zipkit._other"}


def test_the_architecture_page_names_every_module_and_no_module_that_is_gone() -> None:
    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(zipkit/[\w/]+\.py)`", page))
    there = {path.relative_to(REPO).as_posix() for path in PACKAGE.rglob("*.py")}
    assert sorted(there - named) == [], "modules docs/architecture.md does not name"
    assert sorted(named - there) == [], "modules docs/architecture.md names that do not exist"
