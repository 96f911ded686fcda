"""The scan and the plan's values: one temp-name rule, compact frozen values, planning at scale."""

from __future__ import annotations

import gc
import pickle
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from safety_helpers import without_dac_override

from zipkit import SourceFile, StemPlan, plan
from zipkit._tempfiles import TEMP_PREFIX, TEMP_SUFFIX, _run_of, is_temp_name
from zipkit.widgets._settings import scan_extensions


def test_one_temp_name_rule_for_the_planner_the_form_and_the_clean_up(tmp_path: Path) -> None:
    """``.zipkit-….tmp`` is a temp name everywhere; ``.zipkit-notes.csv`` is data everywhere
    (the form used to hide every ``.zipkit-`` name, so it offered less than the planner takes)."""
    temp, data = f"{TEMP_PREFIX}run1-7-0{TEMP_SUFFIX}", f"{TEMP_PREFIX}notes.csv"
    (tmp_path / temp).write_bytes(b"half an archive")
    (tmp_path / data).write_bytes(b"a,b\n")
    (tmp_path / "run1.csv").write_bytes(b"1\n")
    assert is_temp_name(temp) and not is_temp_name(data)
    assert _run_of(temp) == "run1" and _run_of(data) is None
    p = plan(tmp_path, ["csv", "tmp"], tmp_path / "out")
    assert sorted(n for s in p.stems for n in s.names) == [data, "run1.csv"]
    assert [(q.name, why) for q, why in p.ignored] == [(temp, "zipkit temp file")]
    assert scan_extensions(tmp_path) == [("csv", 2, len(b"a,b\n") + len(b"1\n"))]


def test_plan_values_are_frozen_compared_by_fields_and_pickle(tmp_path: Path) -> None:
    for name in ("a.csv", "a_x.csv", "b.csv"):
        (tmp_path / name).write_bytes(name.encode())
    p = plan(tmp_path, ["csv"], tmp_path / "out", stems=["a", "b"])
    again = plan(tmp_path, ["csv"], tmp_path / "out", stems=["a", "b"])
    assert p.stems == again.stems and hash(p.stems[0]) == hash(again.stems[0])
    sp = p.stems[0]
    assert (sp.stem, sp.names, sp.bytes, sp.action, sp.archive) == (
        "a", ("a.csv", "a_x.csv"), 12, "create", tmp_path / "out" / "a.zip")
    # a StemPlan built by hand with the same fields is the same value
    assert StemPlan("a", sp.files, tmp_path / "out" / "a.zip") == sp
    assert StemPlan("a", sp.files, tmp_path / "other" / "a.zip") != sp
    f = sp.files[0]
    assert f == SourceFile(tmp_path / "a.csv", f.size, f.mtime_ns, f.dev, f.ino, f.ctime_ns)
    assert (f.path, f.name, f.size, f.target) == (tmp_path / "a.csv", "a.csv", 5, None)
    assert repr(f).startswith(f"SourceFile(path={tmp_path / 'a.csv'!r}, size=5, ")
    assert "archive=" in repr(sp) and "files=(SourceFile(" in repr(sp)
    for value in (f, sp, p):
        assert pickle.loads(pickle.dumps(value)) == value
    back = pickle.loads(pickle.dumps(sp))
    assert type(back) is StemPlan and back.archive == sp.archive and back.files[0].path == f.path
    with pytest.raises(AttributeError):
        sp.stem = "b"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        f.size = 0  # type: ignore[misc]


@pytest.mark.parametrize("enabled", [True, False])
def test_planning_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path, enabled: bool) -> None:
    """The collector is paused while the values are built, and restored however planning ends:
    here by a source folder that cannot be listed (run without root's override, in a child)."""
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "run1.csv").write_bytes(b"1")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "run2.csv").write_bytes(b"2")
    (tmp_path / "locked").chmod(0)
    code = (f"import gc, zipkit\ngc.enable() if {enabled} else gc.disable()\n"
            f"zipkit.plan({str(tmp_path / 'ok')!r}, ['csv'])\nprint(gc.isenabled())\n"
            f"try:\n    zipkit.plan({str(tmp_path / 'locked')!r}, ['csv'])\n"
            f"except zipkit.SourceError as e:\n    print(gc.isenabled(), 'cannot list' in str(e))\n")
    try:
        r = subprocess.run([*without_dac_override(), sys.executable, "-c", code], capture_output=True,
                           text=True, timeout=60)
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(enabled), str(enabled), "True"]


def _make(folder: Path, names: list[str]) -> None:
    folder.mkdir()
    for n in names:
        (folder / n).write_bytes(b"0123456789")


@pytest.mark.parametrize("shape", ["one marker stem", "own stems"])
def test_a_planned_file_costs_under_500_bytes(tmp_path: Path, shape: str) -> None:
    """Issue 17: memory per planned file under 500 bytes, with one stem for all the files and
    with a stem per file (a StemPlan each), counted by tracemalloc over what the plan keeps."""
    n = 20_000
    src = tmp_path / "src"
    if shape == "own stems":
        _make(src, [f"run{i:07d}.csv" for i in range(n)])
        kw: dict[str, object] = {}
    else:
        _make(src, [f"case_{i:07d}.csv" for i in range(n)])
        kw = {"stems": ["case"]}
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        p = plan(src, ["csv"], tmp_path / "out", **kw)  # type: ignore[arg-type]
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert sum(len(s.files) for s in p.stems) == n
    assert kept / n < 500, f"{kept / n:.0f} bytes per planned file"
