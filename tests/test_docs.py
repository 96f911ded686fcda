"""The documentation site builds with -W, executes every notebook, and cannot drift from the code.

Builds ``docs/`` exactly as the README says (``python -m sphinx -W -b html docs OUT``) into a
temporary folder, then checks the generated reference pages against the schema, the argument
parser and ``zipkit.__all__``. A tiny site using the real ``docs/conf.py`` checks that a broken
cell (in a notebook or in a markdown page) fails the build.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

import zipkit
from zipkit._cli import build_parser
from zipkit._config import SCHEMA

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CODE_CELL_PAGES = ["getting-started", "user-guide", "migrating"]


def sphinx_build(source: Path, out: Path) -> subprocess.CompletedProcess[str]:
    """``python -m sphinx -W -b html SOURCE OUT/html``; Sphinx's crash logs go into ``OUT``."""
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-E", "-b", "html", str(source), str(out / "html")],
        cwd=ROOT, capture_output=True, text=True, timeout=840, env={**os.environ, "TMPDIR": str(out)},
    )


class _Tables(HTMLParser):
    """Text of the whole page, and the text of the first cell of every table body row."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.first_cells: list[str] = []
        self._cell: list[str] | None = None
        self._col = -1
        self._in_tbody = False
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr":
            self._col = -1
        elif tag == "td" and self._in_tbody:
            self._col += 1
            if self._col == 0:
                self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1
        elif tag == "tbody":
            self._in_tbody = False
        elif tag == "td" and self._cell is not None:
            self.first_cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def norm(text: str) -> str:
    """Undo Sphinx's smart quotes and dashes, and collapse whitespace."""
    for fancy, plain in (("‘", "'"), ("’", "'"), ("“", '"'), ("”", '"'), ("—", "---"), ("–", "--"),
                         ("…", "...")):
        text = text.replace(fancy, plain)
    return " ".join(text.split())


def parse(page: Path) -> _Tables:
    p = _Tables()
    p.feed(page.read_text(encoding="utf-8"))
    return p


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("docs")
    return sphinx_build(DOCS, out), out / "html"


def test_site_builds_with_warnings_as_errors(site):
    proc, html = site
    assert proc.returncode == 0, f"sphinx -W failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    assert (html / "index.html").is_file()


def test_every_notebook_and_code_cell_page_is_executed(site):
    proc, html = site
    assert proc.returncode == 0
    assert (DOCS / "notebooks").resolve() == ROOT / "notebooks", "docs/notebooks must link to notebooks/"
    assert len(NOTEBOOKS) >= 4, NOTEBOOKS
    log = proc.stdout + proc.stderr
    docs = [f"notebooks/{nb.name}" for nb in NOTEBOOKS] + [f"{p}.md" for p in CODE_CELL_PAGES]
    for doc in docs:
        assert f"{doc}: Executed notebook" in log, f"{doc} was not executed by the build"
        page = html / Path(doc).with_suffix(".html")
        assert "cell_output" in page.read_text(encoding="utf-8"), f"{page} shows no cell output"


def test_config_reference_lists_exactly_the_schema_keys(site):
    proc, html = site
    assert proc.returncode == 0
    page = parse(html / "reference" / "config.html")
    shown = {cell.replace("(required)", "").strip() for cell in page.first_cells}
    assert shown == {s.key for s in SCHEMA}
    text = norm("".join(page.text))
    for s in SCHEMA:
        if s.feeds:
            assert s.feeds in text, f"{s.key}: library argument {s.feeds} not shown"


def test_cli_reference_lists_exactly_the_parser_options(site):
    proc, html = site
    assert proc.returncode == 0
    page = parse(html / "reference" / "cli.html")
    shown = {name.strip() for cell in page.first_cells for name in cell.split(",")}
    parser = build_parser()
    expected = set()
    for action in parser._actions:
        if action.option_strings:
            expected.update(action.option_strings)
        else:
            expected.add(action.metavar or action.dest)
    expected -= {"-h", "--help"}
    assert shown == expected
    text = norm("".join(page.text))
    assert "usage: zipkit" in text
    for action in parser._actions:
        if action.help and action.option_strings and "%(" not in action.help:
            assert norm(action.help) in text, action.option_strings


def test_api_reference_documents_every_public_name(site):
    proc, html = site
    assert proc.returncode == 0
    page = (html / "reference" / "api.html").read_text(encoding="utf-8")
    for name in zipkit.__all__:
        if callable(getattr(zipkit, name)):
            assert f'id="zipkit.{name}"' in page, f"zipkit.{name} is not documented"
        else:
            assert f"zipkit.{name}" in page


def _tiny_site(src: Path, broken: bool, kind: str) -> None:
    """A two-page site that uses the real docs/conf.py; one page has a cell that may fail."""
    src.mkdir()
    (src / "conf.py").write_text(textwrap.dedent(f"""\
        import runpy

        globals().update({{k: v for k, v in runpy.run_path({str(DOCS / "conf.py")!r}).items()
                           if not k.startswith("__")}})
        """), encoding="utf-8")
    (src / "index.md").write_text("# Tiny\n\n```{toctree}\npage\n```\n", encoding="utf-8")
    cell = "raise RuntimeError('this cell is broken on purpose')" if broken else "print('this cell works')"
    if kind == "ipynb":
        nb = {
            "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "cells": [
                {"cell_type": "markdown", "id": "a", "metadata": {}, "source": "# A notebook"},
                {"cell_type": "code", "id": "b", "metadata": {}, "execution_count": None, "outputs": [],
                 "source": "import zipkit\nprint(zipkit.__version__)"},
                {"cell_type": "code", "id": "c", "metadata": {}, "execution_count": None, "outputs": [],
                 "source": cell},
            ],
        }
        (src / "page.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    else:
        (src / "page.md").write_text(textwrap.dedent("""\
            ---
            file_format: mystnb
            kernelspec:
              name: python3
              display_name: Python 3
            ---

            # A page

            ```{code-cell} ipython3
            %s
            ```
            """) % cell, encoding="utf-8")


@pytest.mark.parametrize("kind", ["ipynb", "md"])
def test_a_broken_cell_fails_the_build(tmp_path, kind):
    _tiny_site(tmp_path / "good", broken=False, kind=kind)
    good = sphinx_build(tmp_path / "good", tmp_path / "good-out")
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-5000:]
    assert "this cell works" in (tmp_path / "good-out" / "html" / "page.html").read_text(encoding="utf-8")

    _tiny_site(tmp_path / "bad", broken=True, kind=kind)
    bad = sphinx_build(tmp_path / "bad", tmp_path / "bad-out")
    assert bad.returncode != 0
    assert not (tmp_path / "bad-out" / "html" / "page.html").exists()
    # The console names the page; the log it points to holds the failing cell and its traceback.
    output = bad.stdout + bad.stderr
    assert f"ExecutionError: {tmp_path / 'bad' / f'page.{kind}'}" in output
    log = re.search(r"The full traceback has been saved in:\s*(\S+)", output)
    assert log, output[-3000:]
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", Path(log.group(1)).read_text(encoding="utf-8"))  # no colours
    assert "RuntimeError: this cell is broken on purpose" in traceback
