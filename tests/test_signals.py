"""Stopped by a scheduler, a closed terminal or a kill: SIGTERM, SIGHUP, SIGKILL of the parent,
stale temp folders, concurrent runs, and a suite started with SIGINT ignored.

Real processes, real signals, real files; after each fault the nothing-lost invariant holds.
Each measured time to exit is printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from safety_helpers import (
    FAULTS,
    REPO,
    archives_in,
    assert_nothing_lost,
    assert_processes_gone,
    assert_report_truthful,
    descendants,
    pool_workers,
    snapshot,
    stop_process_tree,
    subprocess_env,
    temp_files,
    text_bytes,
    wait_until,
    write,
    zipkit_cmd,
)
from signal_helpers import default_signals, ignoring_sigint

import zipkit
from zipkit import _tempfiles

pytestmark = pytest.mark.timeout(180)

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def _cases(src: Path, n: int = 10, size: int = 3 << 20) -> dict:
    for i in range(n):
        write(src / f"c{i:02}.dat", text_bytes(size, i))
    return snapshot(src)


def _spawn(cmd: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=subprocess_env(**env), start_new_session=True, preexec_fn=default_signals)


def _mid_run(proc: subprocess.Popen, out: Path, archives: int = 1) -> None:
    """Wait until ``archives`` archives are in place and another is being written."""
    wait_until(lambda: len(list(out.glob("*.zip"))) >= archives and temp_files(out)
               or proc.poll() is not None, 90, "archives written and another in progress")
    assert proc.poll() is None, f"the run ended before the fault: {proc.communicate()}"


def _signal(proc: subprocess.Popen, sig: int, group: bool) -> tuple[str, str, float]:
    t0 = time.monotonic()
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return stdout, stderr, time.monotonic() - t0


def _check_cancelled_stems(doc: dict, src: Path, out: Path) -> None:
    cancelled = set(doc["cancelled"])
    assert cancelled, "nothing was cancelled: the signal came too late to test anything"
    assert not doc["failed"], doc["failed"]
    for stem in cancelled:
        assert not (out / f"{stem}.zip").exists(), f"{stem} reported cancelled but its archive exists"
        assert (src / f"{stem}.dat").is_file()


# --- SIGTERM and SIGHUP to the CLI ---------------------------------------------------------------

@pytest.mark.parametrize(("sig", "target", "workers"), [
    (signal.SIGTERM, "group", 2), (signal.SIGTERM, "parent", 2), (signal.SIGTERM, "group", 1),
    (signal.SIGTERM, "parent", 1), (signal.SIGHUP, "group", 2), (signal.SIGHUP, "parent", 1),
], ids=lambda v: getattr(v, "name", str(v)))
def test_stop_signal_to_the_cli_mid_run(tmp_path: Path, sig: int, target: str, workers: int) -> None:
    """SIGTERM (Slurm, systemd, timeout) and SIGHUP stop the CLI as Ctrl-C does: workers stopped,
    temp files removed, report printed and written, exit 143 / 129, within 5 s."""
    src, out, errors = tmp_path / "src", tmp_path / "out", tmp_path / "errors.json"
    snap = _cases(src)
    proc = _spawn(zipkit_cmd(src, "--ext", "dat", "-o", out, "-j", str(workers), "-c", "bzip2",
                             "--delete-sources", "--no-progress", "--error-report", errors), tmp_path)
    try:
        _mid_run(proc, out)
        family = descendants(proc.pid)
        if workers > 1:
            assert len(pool_workers(proc.pid)) >= 2, f"expected a pool of 2 workers, found {family}"
        stdout, stderr, seconds = _signal(proc, sig, target == "group")
    finally:
        stop_process_tree(proc)
    print(f"\nTIME {signal.Signals(sig).name} to {target}, -j {workers}: exit after {seconds:.2f} s")
    assert proc.returncode == EXIT[sig], f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert seconds < 5, f"took {seconds:.1f} s to stop"
    assert f"stopped by {signal.Signals(sig).name}" in stderr, stderr
    assert "zipkit report:" in stderr and "Traceback" not in stderr, stderr
    assert_processes_gone(family, timeout=5)
    assert_nothing_lost(snap, out)
    doc = json.loads(errors.read_text())
    _check_cancelled_stems(doc, src, out)


def test_sigterm_while_planning_exits_143_quietly(tmp_path: Path) -> None:
    """A stop before any work (here: while the CLI waits on a FIFO given as its config)."""
    cfg = tmp_path / "job.yml"
    os.mkfifo(cfg)
    proc = _spawn(zipkit_cmd(cfg), tmp_path)
    try:
        wait_until(lambda: _wchan(proc.pid) in ("wait_for_partner", "fifo_open", "pipe_wait")
                   or proc.poll() is not None, 30, "the CLI waiting on its config")
        stdout, stderr, seconds = _signal(proc, signal.SIGTERM, False)
    finally:
        stop_process_tree(proc)
    assert proc.returncode == 143, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr, stderr


def _wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


# --- a script that calls the library --------------------------------------------------------------

def _library(tmp_path: Path, src: Path, out: Path, *, workers: int,
             uncaught: bool = False) -> subprocess.Popen:
    spec = {"source": str(src), "extensions": ["dat"], "output": str(out),
            "result": str(tmp_path / "result.json"), "uncaught": uncaught,
            "plan": {"compression": "bzip2", "delete_sources": True},
            "run": {"workers": workers, "progress": False}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    return _spawn([sys.executable, str(FAULTS / "run_library.py"), str(tmp_path / "spec.json")], tmp_path)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_stop_signal_to_a_script_using_the_library(tmp_path: Path, sig: int, workers: int) -> None:
    """run_plan installs its handlers for the run: RunInterrupted carries the signal and the exit code."""
    src, out = tmp_path / "src", tmp_path / "out"
    snap = _cases(src, 8)
    proc = _library(tmp_path, src, out, workers=workers)
    try:
        _mid_run(proc, out)
        family = descendants(proc.pid)
        stdout, stderr, seconds = _signal(proc, sig, True)
    finally:
        stop_process_tree(proc)
    print(f"\nTIME library, {signal.Signals(sig).name} to the group, workers={workers}: {seconds:.2f} s")
    assert proc.returncode == EXIT[sig], f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert seconds < 5
    outcome = json.loads((tmp_path / "result.json").read_text())
    assert outcome["interrupted"] == EXIT[sig]
    assert any(f"stopped by {signal.Signals(sig).name}" in n for n in outcome["notes"]), outcome["notes"]
    statuses = assert_report_truthful(outcome["records"], snap, src, out)
    assert "ok" in statuses.values() and "cancelled" in statuses.values(), statuses
    assert_nothing_lost(snap, out)
    assert_processes_gone(family)


def test_a_script_that_does_not_catch_the_stop_ends_as_sigterm_would(tmp_path: Path) -> None:
    """Uncaught, the RunInterrupted of a SIGTERM ends the script by SIGTERM (after clean-up), not
    by Python's SIGINT exit for any KeyboardInterrupt; the handlers were given back."""
    src, out = tmp_path / "src", tmp_path / "out"
    snap = _cases(src, 8)
    proc = _library(tmp_path, src, out, workers=2, uncaught=True)
    try:
        _mid_run(proc, out)
        family = descendants(proc.pid)
        stdout, stderr, seconds = _signal(proc, signal.SIGTERM, False)
    finally:
        stop_process_tree(proc)
    assert proc.returncode == -signal.SIGTERM, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert "RunInterrupted" in stderr  # a script's own uncaught error: Python shows it
    assert seconds < 5
    assert_nothing_lost(snap, out)
    assert_processes_gone(family)


def test_handlers_are_installed_for_the_run_only(tmp_path: Path) -> None:
    write(tmp_path / "src" / "a.dat", b"a")
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    seen = []

    def progress(ev):
        seen.append({s: signal.getsignal(s) for s in before})

    zipkit.zip_by_extension(tmp_path / "src", "dat", tmp_path / "out", workers=1, progress=progress)
    assert {s: signal.getsignal(s) for s in before} == before
    assert seen and all(h[signal.SIGTERM] is not before[signal.SIGTERM] for h in seen)
    from zipkit import _signals  # after a form's run (its main-thread guard is installed): the same

    old_term = signal.signal(signal.SIGTERM, _signals._stop_background)
    try:
        seen.clear()
        zipkit.zip_by_extension(tmp_path / "src", "dat", tmp_path / "out", workers=1, progress=progress)
        assert seen and all(isinstance(h[signal.SIGTERM], _signals._Handler) for h in seen)
        assert signal.getsignal(signal.SIGTERM) is _signals._stop_background
    finally:
        signal.signal(signal.SIGTERM, old_term)
    ignored = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a program's own choice is left alone
    try:
        seen.clear()
        zipkit.zip_by_extension(tmp_path / "src", "dat", tmp_path / "out", workers=1, progress=progress)
        assert all(h[signal.SIGHUP] is signal.SIG_IGN for h in seen)
    finally:
        signal.signal(signal.SIGHUP, ignored)


# --- the form's background run ---------------------------------------------------------------------

FORM_SCRIPT = """
import sys, time
from zipkit.widgets import ZipForm
if __name__ == "__main__":
    form = ZipForm(source=sys.argv[1], extensions=["dat"], output=sys.argv[2], compression="bzip2",
                   workers=2)
    form.zip_button.click()
    while True:  # the kernel's main thread, idle between cells
        time.sleep(0.05)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_stop_signal_during_the_forms_background_run(tmp_path: Path, sig: int) -> None:
    """The form runs in a thread, where no signal arrives: the main thread cancels the run, waits
    for its clean-up, and only then lets the signal end the process."""
    pytest.importorskip("ipywidgets")
    src, out = tmp_path / "src", tmp_path / "out"
    snap = _cases(src)
    (tmp_path / "form.py").write_text(FORM_SCRIPT)
    proc = _spawn([sys.executable, str(tmp_path / "form.py"), str(src), str(out)], tmp_path)
    try:
        _mid_run(proc, out)
        family = descendants(proc.pid)
        assert len(pool_workers(proc.pid)) >= 2, family
        stdout, stderr, seconds = _signal(proc, sig, False)
    finally:
        stop_process_tree(proc)
    print(f"\nTIME form, {signal.Signals(sig).name} to the kernel process: {seconds:.2f} s")
    assert proc.returncode == -sig, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert seconds < 5
    assert_processes_gone(family, timeout=5)
    assert_nothing_lost(snap, out)
    errors = sorted(out.glob("zipkit-errors-*.json"))  # the form asks for an error report
    assert errors, "the cancelled run wrote no error report"
    _check_cancelled_stems(json.loads(errors[0].read_text()), src, out)


# --- the parent SIGKILLed: workers must not outlive it; the next run cleans up ----------------------

@pytest.mark.parametrize("death_signal", [True, False], ids=["pdeathsig", "parent-watch"])
def test_sigkill_of_the_parent_leaves_no_worker_and_the_next_run_cleans_up(
        tmp_path: Path, death_signal: bool, caplog: pytest.LogCaptureFixture) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    snap = _cases(src, 40, 1 << 20)
    env = {} if death_signal else {"ZIPKIT_TEST_NO_PDEATHSIG": "1"}
    proc = _spawn(zipkit_cmd(src, "--ext", "dat", "-o", out, "-j", "2", "-c", "bzip2", "--delete-sources",
                             "--no-progress"), tmp_path, **env)
    try:
        _mid_run(proc, out, archives=3)
        workers = pool_workers(proc.pid)
        assert len(workers) >= 2, workers
        t0 = time.monotonic()
        proc.kill()
        proc.wait(10)
        assert_processes_gone(workers, timeout=5)
        seconds = time.monotonic() - t0
    finally:
        stop_process_tree(proc)
    print(f"\nTIME parent SIGKILLed ({'PR_SET_PDEATHSIG' if death_signal else 'watch thread'}): "
          f"workers gone after {seconds:.2f} s")
    left = temp_files(out)
    assert left, "no temp folder left by the killed run: the kill did not land mid-archive"
    # every source that is gone is in a whole archive; the rest are untouched
    archived = {(n, h) for members in archives_in(out).values() for n, h in members.items()}
    for path, s in snap.items():
        if not path.exists():
            assert (path.name, s.sha256) in archived, f"{path.name} deleted but in no archive"
    queued = [p for p in snap if p.exists()]
    assert len(queued) > 10, "too few stems were left queued to test that workers stopped"
    time.sleep(1)  # had a worker lived on, it would be deleting the queued sources now
    assert [p for p in snap if p.exists()] == queued, "sources were deleted after the run died"
    with caplog.at_level(logging.DEBUG, logger="zipkit"):
        rep = zipkit.zip_by_extension(src, "dat", out, workers=2, compression="bzip2", delete_sources=True,
                                      progress=False)
    assert rep.success, rep.summary_line()
    assert any("whose process is gone" in r.getMessage() for r in caplog.records), caplog.text
    assert_nothing_lost(snap, out)


def test_two_concurrent_runs_into_one_folder_keep_each_others_temp_folders(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src_a, src_b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    snap = {**_cases(src_a, 3, 12 << 20)}
    write(src_b / "b1.log", b"b" * 1000)
    snap.update(snapshot(src_b))
    proc = _spawn(zipkit_cmd(src_a, "--ext", "dat", "-o", out, "-j", "2", "-c", "bzip2", "--no-progress"),
                  tmp_path)
    try:
        wait_until(lambda: temp_files(out) or proc.poll() is not None, 60, "run A writing")
        a_temps = temp_files(out)
        with caplog.at_level(logging.DEBUG, logger="zipkit"):
            rep = zipkit.zip_by_extension(src_b, "log", out, workers=1, progress=False)
        assert rep.success
        assert proc.poll() is None, "run A ended before run B's clean-up could be tested"
        assert all(p.exists() or not p.parent.exists() for p in a_temps)
        assert any(p.parent.exists() for p in a_temps), "run B removed run A's temp folder"
        assert any("that run is live" in r.getMessage() for r in caplog.records), caplog.text
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        stop_process_tree(proc)
    assert proc.returncode == 0, f"run A: exit {proc.returncode}\n{stdout}\n{stderr}"
    assert sorted(p.name for p in out.glob("*.zip")) == ["b1.zip", "c00.zip", "c01.zip", "c02.zip"]
    assert_nothing_lost(snap, out)


# --- the closing gate, across processes ------------------------------------------------------------

def _gate_child(out: str, run_id: str, conn) -> None:
    """A task of the run in another process: passes the gate (shared lock), then waits to create."""
    import fcntl

    gate = os.open(_tempfiles.lock_path(Path(out), run_id), os.O_RDONLY)
    fcntl.flock(gate, fcntl.LOCK_SH)
    conn.send("in")
    conn.recv()  # the run is closing now
    fd, path = _tempfiles._create(Path(out), run_id)
    os.close(fd)
    conn.send(str(path))
    os.close(gate)
    with _tempfiles.supervised(run_id):
        try:
            _tempfiles.temp_file(Path(out), run_id)
            conn.send("made a file after the close")
        except _tempfiles.RunClosed:
            conn.send("refused")


def test_closing_waits_for_a_task_in_another_process_then_refuses_new_ones(tmp_path: Path) -> None:
    import multiprocessing

    out = tmp_path / "out"
    out.mkdir()
    temps = _tempfiles.RunTemps(out, "gatetest")
    temps.open()
    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    child = ctx.Process(target=_gate_child, args=(str(out), "gatetest", there))
    child.start()
    try:
        assert here.poll(30) and here.recv() == "in"
        closer = threading.Thread(target=temps.close)
        closer.start()
        time.sleep(0.3)
        assert closer.is_alive(), "the close did not wait for the task past the gate"
        here.send("go")
        made = Path(here.recv())
        closer.join(10)
        assert not closer.is_alive()
        assert here.recv() == "refused"
    finally:
        child.join(10)
    assert not made.exists() and os.listdir(out) == []


# --- the suite under a parent that ignores SIGINT ---------------------------------------------------

def test_a_sigint_test_passes_when_the_suite_was_started_with_sigint_ignored(tmp_path: Path) -> None:
    """As under ``nohup … &``: the subjects still get SIGINT's default disposition."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
           str(REPO / "tests" / "test_safety.py"), "-k", "test_sigint_to_a_script_using_the_library",
           f"--basetemp={tmp_path / 'inner'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=170,
                          env=subprocess_env(), preexec_fn=ignoring_sigint)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]


@pytest.mark.caller_forks  # the [fork] pool is the test's, started while other tests' threads may linger
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_cancel_with_a_given_process_pool_leaves_no_temp_folder(tmp_path: Path, method: str) -> None:
    """Tasks still queued or running in the caller's process pool after a cancel go on after the
    run returned: they must make no temp file once the run is closed, and leave none behind."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(60):
        write(src / f"s{i:02}.dat", text_bytes(300_000, i))
    snap = snapshot(src)
    cancel = threading.Event()

    def on_progress(ev: zipkit.ProgressEvent) -> None:
        if ev.result is not None and ev.stems_done >= 4:
            cancel.set()

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method)) as ex:
        rep = zipkit.zip_by_extension(src, "dat", out, executor=ex, progress=on_progress, cancel=cancel,
                                      deflate_backend="zlib", level=9, delete_sources=True)
        assert rep.cancelled
        closed_at = sorted(os.listdir(out))
    # the pool has run (or refused) every task it still held
    assert [n for n in closed_at if not n.endswith(".zip")] == []
    assert [n for n in os.listdir(out) if not n.endswith(".zip")] == []
    assert_nothing_lost(snap, out)
    gone = {p.stem for p in snap if not p.exists()}
    reported = {r.stem for r in rep.ok}
    assert gone <= reported, f"sources deleted by tasks that ran after the run had stopped: {gone - reported}"


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its SigCgt mask in /proc)."""
    with open(f"/proc/{pid}/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    return bool(mask & (1 << (signum - 1)))


@pytest.mark.caller_forks
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")
def test_a_callers_fork_pool_started_during_a_run_does_not_inherit_the_stop_handler(tmp_path):
    """A caller's fork-context pool starts its workers at the first task, inside the run, while
    zipkit's SIGTERM handler is installed. Its workers must get the handler the caller had:
    concurrent.futures stops a broken pool's workers with SIGTERM, and a worker that turned it
    into an exception it never reached (stuck in a lock) made the caller's shutdown hang."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import psutil

    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"s{i}.dat").write_bytes(os.urandom(1 << 16))
    seen: dict[int, bool] = {}

    def look(ev):
        for child in psutil.Process().children():
            if child.pid not in seen and child.is_running():
                with contextlib.suppress(OSError, psutil.Error, StopIteration):
                    seen[child.pid] = _catches(child.pid, signal.SIGTERM)

    old = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the caller's own: the default
    try:
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as ex:
            rep = zipkit.zip_by_extension(src, "dat", tmp_path / "out", executor=ex, progress=look)
            assert _catches(os.getpid(), signal.SIGTERM) is False  # given back after the run
    finally:
        signal.signal(signal.SIGTERM, old)
    assert len(rep.ok) == 6
    assert seen and not any(seen.values()), seen
