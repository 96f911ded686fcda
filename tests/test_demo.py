"""The bundled demo: a real --help, and it says where the archives went and what to try next."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _demo(*args, cwd):
    return subprocess.run([sys.executable, "-m", "zipkit.demo", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_demo_help_prints_usage_and_writes_nothing(tmp_path):
    r = _demo("--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "usage: python -m zipkit.demo" in r.stdout
    assert list(tmp_path.iterdir()) == []  # no folder named --help, no zipkit-demo


def test_demo_says_where_the_archives_are_and_what_next(tmp_path):
    r = _demo(tmp_path / "d", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = (tmp_path / "d" / "output" / "zip").resolve()
    assert f"archives written to {out}" in r.stdout
    assert len(list(out.glob("*.zip"))) == 8
    assert "--dry-run" in r.stdout and "02_form.ipynb" in r.stdout


def test_demo_refuses_an_unknown_option_without_writing(tmp_path):
    r = _demo("--bogus", cwd=tmp_path)
    assert r.returncode == 2
    assert "unrecognized arguments" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_readme_quickstart_first_command_works_on_a_fresh_copy(tmp_path):
    """The README's first Quickstart command, verbatim, in a copy of the repository."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1]
    command = section.split("```bash\n", 1)[1].split("\n```", 1)[0].strip()
    assert "zipkit.demo" in command and "venv" in command
    copy = tmp_path / "clone"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "__pycache__", "*.egg-info", "build", "docs", "notebooks", "benchmarks"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    r = subprocess.run(["bash", "-c", command], cwd=copy, capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert len(list((copy / "zipkit-demo" / "output" / "zip").glob("*.zip"))) == 8
    assert "archives written to" in r.stdout
    typed = subprocess.run([str(copy / ".venv" / "bin" / "python"), "-c",
                            "import zipkit, pathlib; print(pathlib.Path(zipkit.__file__).parent)"],
                           cwd=tmp_path, capture_output=True, text=True, env=env)
    installed = Path(typed.stdout.strip())
    assert installed.is_relative_to(copy / ".venv") and (installed / "py.typed").is_file()
    # every module of the source tree is installed, subpackages (zipkit.widgets) included
    source = {p.relative_to(REPO / "zipkit").as_posix() for p in (REPO / "zipkit").rglob("*.py")}
    assert {p.relative_to(installed).as_posix() for p in installed.rglob("*.py")} == source
