"""Fault injection, processes: killed workers, Ctrl-C, cancel, timeouts, a worker that cannot stop.

Every case snapshots the sources, injects a real fault into a real run (real processes, real
signals, real files) and then asserts the nothing-lost invariant and that the report tells the
truth (see ``safety_helpers``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from safety_helpers import (
    FAULTS,
    assert_nothing_lost,
    assert_processes_gone,
    assert_report_truthful,
    descendants,
    holder_of,
    is_gone,
    member_hashes,
    pool_workers,
    processes_mentioning,
    records_of,
    snapshot,
    stop_process_tree,
    subprocess_env,
    temp_files,
    text_bytes,
    wait_until,
    write,
    zipkit_cmd,
)
from signal_helpers import default_signals

import zipkit

pytestmark = pytest.mark.timeout(120)

SLOW = {"deflate_backend": "zlib", "level": 9}  # ~30 MB/s on text_bytes: stems stay in flight
BZIP2 = {"compression": "bzip2"}  # ~15 MB/s, one thread whatever the worker count


def _tree(src: Path, big: int = 0, small: int = 0, small_size: int = 40_000, logs: bool = True) -> None:
    """``big.dat`` (+ ``big.log``) of ``big`` bytes in all, and ``small`` stems ``sNN.dat`` (+ ``.log``)."""
    if big:
        write(src / "big.dat", text_bytes(big * 5 // 8, 1))
        if logs:
            write(src / "big.log", text_bytes(big * 3 // 8, 2))
    for i in range(small):
        write(src / f"s{i:02}.dat", text_bytes(small_size, 10 + i))
        if logs:
            write(src / f"s{i:02}.log", os.urandom(3000))


def _assert_no_workers_left() -> None:
    assert_processes_gone(pool_workers(), timeout=5)


# --- a worker SIGKILLed mid-archive ------------------------------------------------------------

@pytest.mark.parametrize(("kills", "delete_sources"), [(1, False), (1, True), (2, True)])
def test_worker_sigkilled_mid_archive(tmp_path: Path, kills: int, delete_sources: bool) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    _tree(src, big=32 << 20, small=6)
    snap = snapshot(src)
    big_files = [src / "big.dat", src / "big.log"]
    killed: list[tuple[int, list[Path]]] = []

    def progress(ev: zipkit.ProgressEvent) -> None:
        # Kill the worker that has a big file open, once the small stems are done (so that only
        # the big stem is in flight), ``kills`` times: the retry in the fresh pool is hit again.
        if len(killed) >= kills or ev.stems_done < 6:
            return
        proc = holder_of(big_files, exclude=[pid for pid, _ in killed])
        if proc is None:
            return
        temps = temp_files(out)
        proc.kill()
        killed.append((proc.pid, temps))

    rep = zipkit.zip_by_extension(src, ["dat", "log"], out, workers=2, progress=progress,
                                  delete_sources=delete_sources, **SLOW)
    assert len(killed) == kills, f"the big stem's worker was caught {len(killed)} time(s), not {kills}"
    assert all(temps for _, temps in killed), f"a kill did not land mid-archive (no temp file): {killed}"
    assert rep.executor == "process pool"
    big = rep["big"]
    if kills == 1:
        assert big.status == "ok" and big.attempts == 2, (big.status, big.attempts, big.message)
        assert any("worker process died" in n for n in rep.notes), rep.notes
    else:
        assert big.status == "failed" and big.error_type == "WorkerLost", (big.status, big.message)
        assert "died twice" in big.message and "sources kept" in big.message
    assert all(rep[f"s{i:02}"].status == "ok" for i in range(6))
    if delete_sources:
        assert all(set(r.deleted) == set(r.files) for r in rep.ok)
    assert_nothing_lost(snap, out)
    assert_report_truthful(rep, snap, src, out)
    _assert_no_workers_left()


def test_worker_sigkilled_while_deleting_sources(tmp_path: Path) -> None:
    """The worker dies after its archive is in place, while it deletes the stem's 4,000 sources:
    the report must name exactly the sources that are gone."""
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(4000):  # 1.4 MB: over zipkit's small-stem size, so streamed file by file,
        write(src / f"many_{i:04}.dat", f"{i}\n".encode() * 70)  # which the killer can watch
    write(src / "other_1.dat", text_bytes(1 << 20, 5))
    snap = snapshot(src)
    many = [p for p in snap if p.name.startswith("many_")]
    stop = threading.Event()
    killed: list[int] = []

    def killer() -> None:
        # Small files are read in one go now, each open for microseconds: rather than hope to see
        # the right worker holding one, kill every worker once the deletes have begun (an idle
        # worker is charged nothing; "other", if still running, is run again).
        while not stop.is_set() and not killed:
            if (out / "many.zip").exists() and not many[0].exists():  # the deletes have begun
                for worker in pool_workers():
                    with contextlib.suppress(psutil.Error):
                        worker.kill()
                        killed.append(worker.pid)
            time.sleep(0.0005)

    t = threading.Thread(target=killer)
    t.start()
    try:
        rep = zipkit.zip_by_extension(src, "dat", out, stems=["many", "other"], workers=2,
                                      delete_sources=True, progress=False)
    finally:
        stop.set()
        t.join()
    assert killed, "the worker was not caught between its rename and the end of its deletes"
    assert rep["many"].status == "ok" and rep["other"].status == "ok", rep.summary_line()
    assert_nothing_lost(snap, out)
    assert_report_truthful(rep, snap, src, out)
    _assert_no_workers_left()


# --- Ctrl-C ------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["pid-no-progress", "group-with-bar-delete-sources"])
def test_sigint_to_the_cli_mid_run(tmp_path: Path, target: str) -> None:
    """SIGINT to ``python -m zipkit`` (alone, or to its whole group as a terminal's Ctrl-C does)."""
    src, out, errors = tmp_path / "src", tmp_path / "out", tmp_path / "errors.json"
    for i in range(10):
        write(src / f"c{i}.dat", text_bytes(3 << 20, i))
    snap = snapshot(src)
    args = [src, "--ext", "dat", "-o", out, "-j", "2", "-c", "bzip2", "--error-report", errors]
    group = target.startswith("group")
    if group:
        args.append("--delete-sources")
    else:
        args.append("--no-progress")
    proc = subprocess.Popen(zipkit_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=subprocess_env(), start_new_session=True,
                            preexec_fn=default_signals)
    try:
        wait_until(lambda: list(out.glob("*.zip")) and temp_files(out) or proc.poll() is not None,
                   60, "one archive written and another in progress")
        assert proc.poll() is None, "the run ended before it could be interrupted"
        family = descendants(proc.pid)
        assert len(pool_workers(proc.pid)) >= 2, f"expected a pool of 2 workers, found {family}"
        t0 = time.monotonic()
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - t0
    finally:
        stop_process_tree(proc)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    assert "interrupted" in stderr
    assert stopped_in < 5, f"took {stopped_in:.1f} s to stop"
    assert_processes_gone(family, timeout=5)
    assert not processes_mentioning(str(src)), "a process of the run is still alive"
    assert_nothing_lost(snap, out)
    doc = json.loads(errors.read_text())
    assert not doc["failed"], doc["failed"]
    cancelled = set(doc["cancelled"])
    assert cancelled, "nothing was cancelled: the interrupt came too late to test anything"
    for i in range(10):
        stem, archive = f"c{i}", out / f"c{i}.zip"
        if stem in cancelled:
            assert not archive.exists(), f"{stem} reported cancelled but {archive.name} exists"
            assert (src / f"{stem}.dat").is_file()
        else:
            # finished: its archive is in place (its sources may be kept if the stop came
            # between the rename and the delete; the invariant above covers their bytes)
            assert sorted(member_hashes(archive)) == [f"{stem}.dat"], f"{stem} not cancelled but no archive"


@pytest.mark.parametrize("workers", [1, 2])
def test_keyboardinterrupt_in_the_library_call(tmp_path: Path, workers: int) -> None:
    """Ctrl-C lands while a stem is half-written: RunInterrupted with the partial report."""
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(6):
        write(src / f"k{i}.dat", text_bytes(8 << 20, i))
    snap = snapshot(src)
    fired: list[list[Path]] = []

    def progress(ev: zipkit.ProgressEvent) -> None:
        if not fired and ev.stems_done >= 1 and ev.result is None and temp_files(out):
            fired.append(temp_files(out))
            raise KeyboardInterrupt

    with pytest.raises(zipkit.RunInterrupted) as caught:
        zipkit.zip_by_extension(src, "dat", out, workers=workers, delete_sources=True,
                                progress=progress, **BZIP2)
    assert fired and fired[0], "the interrupt did not land mid-archive"
    assert isinstance(caught.value, KeyboardInterrupt)
    rep = caught.value.report
    assert rep.ok and rep.cancelled and not rep.failed, rep.summary_line()
    assert any("Ctrl-C" in n for n in rep.notes), rep.notes
    assert all(r.message for r in rep.cancelled)
    assert_nothing_lost(snap, out)
    assert_report_truthful(rep, snap, src, out)
    _assert_no_workers_left()


def test_keyboardinterrupt_report_names_every_archive_written(tmp_path: Path) -> None:
    """Ctrl-C while the results of a batch of small stems are being recorded.

    Every stem of that batch is finished (archive in place, sources deleted) when its results
    arrive; the report must not call any of them ``cancelled``.
    """
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(120):
        write(src / f"t{i:03}.dat", os.urandom(2000))
    snap = snapshot(src)
    fired: list[tuple[int, int]] = []

    def progress(ev: zipkit.ProgressEvent) -> None:
        if ev.result is not None and not fired:
            fired.append((ev.stems_done, len(list(out.glob("*.zip")))))
            raise KeyboardInterrupt

    with pytest.raises(zipkit.RunInterrupted) as caught:
        zipkit.zip_by_extension(src, "dat", out, workers=2, delete_sources=True, progress=progress)
    assert fired
    recorded, on_disk = fired[0]
    assert on_disk > recorded, f"no finished-but-unrecorded stem at the interrupt {fired}: nothing tested"
    assert_nothing_lost(snap, out)
    assert_report_truthful(caught.value.report, snap, src, out)
    _assert_no_workers_left()


def test_sigint_to_a_script_using_the_library(tmp_path: Path) -> None:
    """A real SIGINT to a process running ``run_plan``: RunInterrupted carries the truth."""
    src, out, result = tmp_path / "src", tmp_path / "out", tmp_path / "result.json"
    for i in range(8):
        write(src / f"c{i}.dat", text_bytes(3 << 20, i))
    snap = snapshot(src)
    spec = {"source": str(src), "extensions": ["dat"], "output": str(out), "result": str(result),
            "plan": {"compression": "bzip2", "delete_sources": True},
            "run": {"workers": 2, "progress": False}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, str(FAULTS / "run_library.py"), str(tmp_path / "spec.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=subprocess_env(), start_new_session=True,
                            preexec_fn=default_signals)
    try:
        wait_until(lambda: list(out.glob("*.zip")) and temp_files(out) or proc.poll() is not None,
                   60, "one archive written and another in progress")
        assert proc.poll() is None, "the run ended before it could be interrupted"
        family = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        stop_process_tree(proc)
    assert proc.returncode == 130, f"exit {proc.returncode}\n{stdout}\n{stderr}"
    outcome = json.loads(result.read_text())
    assert outcome["interrupted"]
    statuses = assert_report_truthful(outcome["records"], snap, src, out)
    assert "ok" in statuses.values() and "cancelled" in statuses.values(), statuses
    assert_nothing_lost(snap, out)
    assert_processes_gone(family)


def test_cancel_event_stops_the_run(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(6):
        write(src / f"k{i}.dat", text_bytes(8 << 20, i))
    snap = snapshot(src)
    cancel = threading.Event()

    def progress(ev: zipkit.ProgressEvent) -> None:
        if ev.stems_done >= 1 and temp_files(out):
            cancel.set()

    rep = zipkit.zip_by_extension(src, "dat", out, workers=2, delete_sources=True, progress=progress,
                                  cancel=cancel, **BZIP2)
    assert cancel.is_set()
    assert rep.ok and rep.cancelled and not rep.success
    assert any("cancelled" in n for n in rep.notes)
    assert_nothing_lost(snap, out)
    assert_report_truthful(rep, snap, src, out)
    _assert_no_workers_left()


# --- timeouts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_timeout_stops_a_slow_stem(tmp_path: Path, workers: int) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    # big takes ~2 s at zlib 9; the small stems take milliseconds, but once on the busy 2-core
    # CI machine a 40 KB stem ran past a 0.3 s timeout, hence 1 s
    _tree(src, big=64 << 20, small=4)
    snap = snapshot(src)
    rep = zipkit.zip_by_extension(src, ["dat", "log"], out, workers=workers, timeout=1.0,
                                  delete_sources=True, progress=False, **SLOW)
    big = rep["big"]
    assert big.status == "timed_out" and big.error_type == "StemTimeout", (big.status, big.message)
    assert "timeout" in big.message and big.archive is None
    assert big.seconds < 4, f"the stem ran {big.seconds:.1f} s past a 1 s timeout"
    assert [r.stem for r in rep.failed] == ["big"]
    assert not (out / "big.zip").exists()
    assert_nothing_lost(snap, out)
    assert_report_truthful(rep, snap, src, out)


def _run_library(tmp_path: Path, spec: dict, limit: float) -> tuple[dict, float]:
    """Run ``faults/run_library.py`` on ``spec``; fail (after killing it) past ``limit`` seconds."""
    spec = {"result": str(tmp_path / "result.json"), **spec}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, str(FAULTS / "run_library.py"), str(tmp_path / "spec.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env=subprocess_env(), start_new_session=True,
                            preexec_fn=default_signals)
    t0 = time.monotonic()
    try:
        stdout, stderr = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        stop_process_tree(proc)
        pytest.fail(f"the run did not finish within {limit} s (hung); killed it")
    finally:
        stop_process_tree(proc)
    assert proc.returncode in (0, 1), f"exit {proc.returncode}\n{stdout}\n{stderr}"
    return json.loads(Path(spec["result"]).read_text()), time.monotonic() - t0


@pytest.mark.parametrize("workers", [1, 2])
def test_timeout_stops_a_read_that_blocks(tmp_path: Path, workers: int) -> None:
    """A source swapped for a FIFO after planning: a plain ``open`` blocks forever (no writer).

    The run must end promptly either way: the stem is ``timed_out`` (the worker's alarm
    interrupts the blocked ``open``) or ``failed`` up front as no longer a regular file.
    """
    src, out = tmp_path / "src", tmp_path / "out"
    _tree(src, small=4, logs=False)
    write(src / "blocked.dat", b"planned as a regular file")
    spec = {"source": str(src), "extensions": ["dat"], "output": str(out), "fifo": ["blocked.dat"],
            "plan": {"timeout": 1.0, "delete_sources": True}, "run": {"workers": workers, "progress": False}}
    snap = snapshot(src, exclude=lambda p: p.name == "blocked.dat")
    outcome, seconds = _run_library(tmp_path, spec, limit=30)
    statuses = assert_report_truthful(outcome["records"], snap, src, out,
                                      removed_by_test=[src / "blocked.dat"])
    blocked = next(r for r in outcome["records"] if r["stem"] == "blocked")
    assert (blocked["status"], blocked["error_type"]) in (
        ("timed_out", "StemTimeout"), ("failed", "SourceChangedError")), blocked
    del statuses["blocked"]
    assert set(statuses.values()) == {"ok"}
    assert seconds < 15
    assert_nothing_lost(snap, out)


def test_a_source_turned_fifo_without_timeout_fails_instead_of_hanging(tmp_path: Path) -> None:
    """No timeout set: a source that is no longer a regular file must fail its stem, not hang."""
    src, out = tmp_path / "src", tmp_path / "out"
    _tree(src, small=2, logs=False)
    write(src / "blocked.dat", b"planned as a regular file")
    spec = {"source": str(src), "extensions": ["dat"], "output": str(out), "fifo": ["blocked.dat"],
            "plan": {}, "run": {"workers": 1, "progress": False}}
    snap = snapshot(src, exclude=lambda p: p.name == "blocked.dat")
    outcome, _ = _run_library(tmp_path, spec, limit=10)
    statuses = assert_report_truthful(outcome["records"], snap, src, out,
                                      removed_by_test=[src / "blocked.dat"])
    assert statuses == {"blocked": "failed", "s00": "ok", "s01": "ok"}
    blocked = next(r for r in outcome["records"] if r["stem"] == "blocked")
    assert "blocked.dat" in blocked["message"], blocked["message"]
    assert_nothing_lost(snap, out)


def test_watchdog_replaces_a_worker_that_cannot_stop(tmp_path: Path) -> None:
    """A worker frozen mid-stem (SIGSTOP: its own SIGALRM cannot run, like a read stuck in the
    kernel) is killed by the parent after the timeout; the other stems carry on."""
    src, out = tmp_path / "src", tmp_path / "out"
    _tree(src, big=32 << 20, small=6, small_size=2 << 20)
    snap = snapshot(src)
    frozen = []

    def progress(ev: zipkit.ProgressEvent) -> None:
        if not frozen:
            proc = holder_of([src / "big.dat", src / "big.log"])
            if proc is not None:
                proc.suspend()
                frozen.append(proc)

    t0 = time.monotonic()
    rep = zipkit.zip_by_extension(src, ["dat", "log"], out, workers=2, timeout=1.0, delete_sources=True,
                                  progress=progress, **SLOW)
    seconds = time.monotonic() - t0
    assert frozen, "the big stem's worker was never caught"
    big = rep["big"]
    assert big.status == "timed_out" and "did not stop" in big.message, (big.status, big.message)
    assert [r.stem for r in rep.failed] == ["big"], rep.summary_line()
    assert is_gone(frozen[0]), "the frozen worker is still there"
    assert seconds < 20, f"the run took {seconds:.1f} s"
    assert_nothing_lost(snap, out)
    assert_report_truthful(rep, snap, src, out)
    _assert_no_workers_left()


def test_inline_timeout_keeps_the_callers_alarm(tmp_path: Path) -> None:
    """The per-stem SIGALRM timer of an in-process run must not cancel the caller's own timer."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "a.dat", b"x" * 1000)
    fired = []
    old_handler = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    old_timer = signal.setitimer(signal.ITIMER_REAL, 60)
    try:
        rep = zipkit.zip_by_extension(src, "dat", out, workers=1, timeout=5, progress=False)
        left = signal.getitimer(signal.ITIMER_REAL)[0]
    finally:
        signal.setitimer(signal.ITIMER_REAL, *old_timer)
        signal.signal(signal.SIGALRM, old_handler)
    assert rep.success
    assert 50 < left <= 60, f"the caller's 60 s alarm was left at {left} s"
    assert not records_of(rep)[0]["message"]
