"""``%run -m zipkit …`` in a real IPython session leaves ``report`` and ``exit_code`` behind.

Each test starts ``python -m IPython -c CELL`` in a subprocess: the cell runs the magic, then
prints what the session holds as JSON on the last line of stdout.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
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
    assert state["ok"] == ["a"] and state["failed"] == [["b", "ExistingArchiveError"]]
    assert "zipkit: failed: b:" in done.stderr


def test_bad_usage_gives_exit_code_2_without_leaving_ipython(tmp_path):
    state, done = ipython(f"%run -m zipkit {tmp_path / 'missing'} --ext csv", tmp_path)
    assert state["alive"] and state["exit_code"] == 2 and state["type"] == "NoneType"
    assert "does not exist" in done.stderr
    state, done = ipython(f"%run -m zipkit {tmp_path}", tmp_path)  # no --ext
    assert state["exit_code"] == 2 and "--ext" in done.stderr


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_during_run_stops_cleans_up_and_ends_the_session(tmp_path, sig):
    """SIGTERM / SIGHUP ask the process to end: the run stops as on Ctrl-C (workers, temp files,
    report printed and written), then IPython exits 143 / 129 within 5 s."""
    from safety_helpers import (
        assert_nothing_lost,
        assert_processes_gone,
        descendants,
        snapshot,
        stop_process_tree,
        subprocess_env,
        temp_files,
        text_bytes,
        wait_until,
        write,
    )

    src, out, errors = tmp_path / "src", tmp_path / "out", tmp_path / "errors.json"
    for i in range(10):
        write(src / f"c{i}.dat", text_bytes(3 << 20, i))
    snap = snapshot(src)
    env_dir = tmp_path / "ipython-dir"
    env_dir.mkdir()
    cell = (f"%run -m zipkit {src} --ext dat -o {out} -j 2 -c bzip2 --delete-sources --no-progress "
            f"--error-report {errors}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=nocolor", "--HistoryManager.enabled=False",
         f"--ipython-dir={env_dir}", "-c", cell + "\n" + PROBE],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=subprocess_env(),
        start_new_session=True, preexec_fn=default_signals)
    try:
        wait_until(lambda: list(out.glob("*.zip")) and temp_files(out) or proc.poll() is not None,
                   90, "one archive written and another in progress")
        assert proc.poll() is None, proc.communicate()
        family = descendants(proc.pid)
        t0 = time.monotonic()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
        seconds = time.monotonic() - t0
    finally:
        stop_process_tree(proc)
    print(f"\nTIME %run -m zipkit, {sig.name}: exit after {seconds:.2f} s")
    assert proc.returncode == 128 + sig, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert seconds < 5
    assert f"stopped by {sig.name}" in stderr and "zipkit report:" in stderr, stderr
    assert '"alive": true' not in stdout  # the session ended; the probe after the magic never ran
    assert_processes_gone(family, timeout=5)
    assert_nothing_lost(snap, out)
    doc = json.loads(errors.read_text())
    assert doc["cancelled"] and not doc["failed"], doc



def test_python_m_zipkit_with_a_thread_gets_its_pool_not_the_fallback(tmp_path):
    """With a thread alive, workers start by forkserver. multiprocessing does not import a
    package's ``__main__`` again in them, so the unguarded-script check must not mistake
    ``zipkit.__main__`` (``python -m zipkit``, ``%run -m zipkit``) for a script without a guard."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i in range(4):
        (src / f"s{i}.dat").write_bytes(b"x" * 10_000)
    code = ("import runpy, sys, threading\n"
            "threading.Thread(target=threading.Event().wait, daemon=True).start()\n"
            f"sys.argv = ['zipkit', {str(src)!r}, '--ext', 'dat', '-o', {str(out)!r}, '-j', '2', '-v']\n"
            "runpy.run_module('zipkit', run_name='__main__', alter_sys=True)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, preexec_fn=default_signals)
    assert done.returncode == 0, done.stderr
    assert "4 ok of 4 stem(s)" in done.stdout and "process pool" in done.stdout, done.stdout
    assert "fallback" not in done.stderr and "Traceback" not in done.stderr, done.stderr
