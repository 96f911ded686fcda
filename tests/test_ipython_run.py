"""``%run -m zipkit …`` in a real IPython session leaves ``report`` and ``exit_code`` behind.

Each test starts ``python -m IPython -c CELL`` in a subprocess: the cell runs the magic, then
prints what the session holds as JSON on the last line of stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from signal_helpers import default_signals

PROBE = """
import json as _json
print()
print(_json.dumps({
    "exit_code": exit_code,
    "type": type(report).__name__,
    "ok": [r.stem for r in getattr(report, "ok", ())],
    "failed": [[r.stem, r.error_type] for r in getattr(report, "failed", ())],
    "output": str(getattr(report, "output", "")),
    "alive": True,
}))
"""


def ipython(cell: str, tmp_path: Path) -> tuple[dict, subprocess.CompletedProcess]:
    env_dir = tmp_path / "ipython-dir"  # no profile written to the home folder
    env_dir.mkdir(exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=nocolor", "--HistoryManager.enabled=False",
         f"--ipython-dir={env_dir}", "-c", cell + "\n" + PROBE],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, preexec_fn=default_signals,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, f"no output; stderr:\n{done.stderr}"
    try:
        return json.loads(lines[-1]), done
    except json.JSONDecodeError:
        pytest.fail(f"IPython did not reach the probe:\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")


def test_run_leaves_the_report_in_the_namespace(demo, tmp_path):
    src, out = demo / "output" / "csv", tmp_path / "out"
    state, done = ipython(f"%run -m zipkit {src} --ext csv -o {out} --stems-from {demo / 'models'} "
                          "--stem-ext yml --no-progress", tmp_path)
    assert state["alive"] and state["exit_code"] == 0, done.stderr
    assert state["type"] == "Report"
    cases = sorted(p.stem for p in (demo / "models").glob("*.yml"))
    assert state["ok"] == cases and state["failed"] == []
    assert state["output"] == str(out)
    assert "zipkit report: 8 ok of 8 stem(s)" in done.stdout  # the CLI's table was printed too
    assert sorted(p.name for p in out.iterdir()) == [f"{c}.zip" for c in cases]
    with zipfile.ZipFile(out / f"{cases[0]}.zip") as zf:
        assert len(zf.namelist()) == 4 and zf.testzip() is None


def test_own_stems_by_extension(tmp_path):
    src = tmp_path / "runs"
    src.mkdir()
    for i in range(3):
        (src / f"run{i}.csv").write_text(f"t,x\n0,{i}\n")
        (src / f"run{i}.log").write_text("log\n")
    state, done = ipython(f"%run -m zipkit {src} --ext csv -o {tmp_path / 'out'} --no-progress", tmp_path)
    assert (state["exit_code"], state["type"], state["ok"]) == (0, "Report", ["run0", "run1", "run2"]), \
        done.stderr
    with zipfile.ZipFile(tmp_path / "out" / "run2.zip") as zf:
        assert zf.namelist() == ["run2.csv"]


def test_a_failed_stem_gives_exit_code_1_and_the_session_goes_on(tmp_path):
    src, out = tmp_path / "runs", tmp_path / "out"
    src.mkdir()
    for name in ("a", "b"):
        (src / f"{name}.csv").write_text(f"{name}\n")
    (out / "b.zip").mkdir(parents=True)  # a folder where b's archive should go
    (out / "b.zip" / "x").write_text("in the way")
    state, done = ipython(f"%run -m zipkit {src} --ext csv -o {out} --no-progress", tmp_path)
    assert state["alive"] and state["exit_code"] == 1
    assert state["ok"] == ["a"] and state["failed"] == [["b", "IsADirectoryError"]]
    assert "zipkit: failed: b:" in done.stderr


def test_bad_usage_gives_exit_code_2_without_leaving_ipython(tmp_path):
    state, done = ipython(f"%run -m zipkit {tmp_path / 'missing'} --ext csv", tmp_path)
    assert state["alive"] and state["exit_code"] == 2 and state["type"] == "NoneType"
    assert "does not exist" in done.stderr
    state, done = ipython(f"%run -m zipkit {tmp_path}", tmp_path)  # no --ext
    assert state["exit_code"] == 2 and "--ext" in done.stderr
