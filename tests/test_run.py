"""Running many stems: workers, executors, batching, progress, recovery, cancel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import zipkit
from zipkit import ProgressEvent, plan, run_plan, zip_by_extension
from zipkit._batching import Batcher
from zipkit._executors import LocalPool
from zipkit._pool import available_cpus, mp_context


def corpus(folder: Path, stems: int = 12, files: int = 3, size: int = 20_000) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(stems):
        for f in range(files):
            line = f"stem{s},file{f},".encode()
            (folder / f"case{s:03d}_part{f}.dat").write_bytes((line * (size // len(line) + 1))[:size])
    return folder


def pool_workers(parent) -> list:
    """The worker processes of a pool started by ``parent`` (fork or forkserver)."""
    workers = []
    for kid in parent.children():
        cmd = " ".join(kid.cmdline())
        if "forkserver" in cmd:
            workers += kid.children()
        elif "multiprocessing" not in cmd:
            workers.append(kid)
    return workers


def contents(out: Path) -> dict[str, dict[str, bytes]]:
    result = {}
    for z in sorted(out.glob("*.zip")):
        with zipfile.ZipFile(z) as zf:
            assert zf.testzip() is None
            result[z.name] = {n: zf.read(n) for n in zf.namelist()}
    return result


def test_one_and_two_workers_give_identical_archives(tmp_path):
    src = corpus(tmp_path / "src")
    r1 = zip_by_extension(src, "dat", tmp_path / "w1", workers=1, progress=False)
    r2 = zip_by_extension(src, "dat", tmp_path / "w2", workers=2, progress=False)
    assert (r1.executor, r2.executor) == ("in-process", "process pool")
    assert r1.success and r2.success and len(r1.ok) == len(r2.ok) == 36
    assert contents(tmp_path / "w1") == contents(tmp_path / "w2")
    assert [r.stem for r in r1.results] == [r.stem for r in r2.results]
    assert [(r.stem, r.files, r.bytes_in) for r in r1.results] == [(r.stem, r.files, r.bytes_in)
                                                                   for r in r2.results]


def test_workers_auto_is_capped(tmp_path):
    assert LocalPool("auto", 1).workers == 1
    assert LocalPool("auto", 1000).workers == available_cpus()
    assert LocalPool(64, 3).workers == 3
    with pytest.raises(zipkit.UsageError):
        zipkit.run_plan(plan(corpus(tmp_path / "src", stems=3), "dat"), workers=0)


def test_start_method_never_forks_a_threaded_process():
    assert mp_context().get_start_method() == "fork"  # pytest's main thread only
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert mp_context().get_start_method() == "forkserver"
    finally:
        stop.set()
        t.join()


def test_pool_started_from_a_threaded_process_works(tmp_path):
    """As in a Jupyter kernel: other threads exist, so the pool must not fork."""
    src = corpus(tmp_path / "src", stems=4)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, daemon=True)
    t.start()
    try:
        rep = zip_by_extension(src, "dat", tmp_path / "out", workers=2, progress=False)
    finally:
        stop.set()
    assert rep.success and len(rep.ok) == 12 and rep.executor == "process pool"


def test_given_executor_is_used_and_not_shut_down(tmp_path):
    src = corpus(tmp_path / "src", stems=5)
    with ThreadPoolExecutor(2) as ex:
        rep = zip_by_extension(src, "dat", tmp_path / "out", executor=ex, progress=False)
        assert ex.submit(lambda: 42).result() == 42
    assert rep.executor == "ThreadPoolExecutor" and len(rep.ok) == 15
    ref = zip_by_extension(src, "dat", tmp_path / "ref", workers=1, progress=False)
    assert contents(tmp_path / "out") == contents(tmp_path / "ref") and ref.success


def test_one_failing_stem_does_not_stop_the_others(tmp_path):
    src = corpus(tmp_path / "src", stems=6)
    p = plan(src, "dat", tmp_path / "out")
    (src / "case002_part1.dat").unlink()
    rep = run_plan(p, workers=2, progress=False, save_error_reports=True)
    assert [r.stem for r in rep.failed] == ["case002_part1"]
    assert len(rep.ok) == 17 and not rep.success
    doc = json.loads(rep.error_report.read_text())
    assert doc["failed"][0]["stem"] == "case002_part1" and "case002_part1.dat" in doc["failed"][0]["message"]
    assert not list((tmp_path / "out").glob(".zipkit-*"))


def test_progress_callable_is_byte_weighted_and_ends_at_total(tmp_path):
    src = corpus(tmp_path / "src", stems=3, size=3 << 20)
    events: list[ProgressEvent] = []
    p = plan(src, "dat", tmp_path / "out")
    rep = run_plan(p, workers=2, progress=events.append)
    assert rep.success
    assert events[-1].bytes_done == events[-1].bytes_total == p.total_bytes
    assert events[-1].stems_done == events[-1].stems_total == 9
    assert all(b.bytes_done >= a.bytes_done for a, b in zip(events, events[1:]))
    assert sum(1 for e in events if e.result) == 9


def test_tqdm_bar_shows_stems_and_failures(tmp_path, capsys):
    src = corpus(tmp_path / "src", stems=2)
    p = plan(src, "dat", tmp_path / "out")
    (src / "case000_part0.dat").unlink()
    run_plan(p, workers=1, progress=True)
    err = capsys.readouterr().err
    assert "stems=6/6" in err and "failed=1" in err and "B/s" in err or "iB" in err


def test_batcher_packs_small_stems_and_puts_large_first(tmp_path):
    src = corpus(tmp_path / "src", stems=400, files=1, size=2000)
    (src / "huge_a.dat").write_bytes(b"h" * (8 << 20))
    p = plan(src, "dat")
    b = Batcher(p.to_write, workers=2)
    batches = []
    while b:
        batches.append([s.stem for s, _ in b.next()])
    assert batches[0] == ["huge_a"]
    assert sum(len(x) for x in batches) == 401
    assert 8 <= len(batches) < 100  # batched, yet enough tasks to balance two workers
    retried = Batcher(p.to_write, workers=2)
    retried.retry(retried.next()[0][0], 2)
    assert len(retried.next()) == 1  # a stem run again after a worker died goes alone


def test_killed_worker_does_not_end_the_run(tmp_path):
    """SIGKILL one worker mid-stem: every stem ends ok, the stem it was running is the one run
    again, nothing partial, no temp files."""
    import psutil

    src = corpus(tmp_path / "src", stems=16, files=2, size=2 << 20)
    killed: list[str] = []

    def kill_one(ev: ProgressEvent) -> None:
        if killed or ev.bytes_done <= 0:
            return
        for proc in pool_workers(psutil.Process()):
            try:
                held = [Path(f.path) for f in proc.open_files() if f.path.endswith(".dat")]
            except psutil.Error:
                continue
            if held:
                os.kill(proc.pid, signal.SIGKILL)
                killed.append(held[0].stem)
                return

    rep = zip_by_extension(src, "dat", tmp_path / "out", workers=2, progress=kill_one,
                           compression="lzma", level=1)
    assert killed
    assert len(rep.results) == 32
    assert any("worker process died" in n for n in rep.notes)
    hit = rep[killed[0]]  # run again, unless its archive went into place just before the kill
    assert hit.attempts == 2 or hit.message == "finished before its worker was stopped", hit
    assert len(rep.ok) == 32
    contents(tmp_path / "out")  # every archive passes testzip
    assert not list((tmp_path / "out").glob(".zipkit-*"))


def test_cancel_event_stops_the_run_and_cleans_up(tmp_path):
    src = corpus(tmp_path / "src", stems=12, files=1, size=3 << 20)
    cancel = threading.Event()

    def stop_after_first(ev: ProgressEvent) -> None:
        if ev.result is not None:
            cancel.set()

    rep = zip_by_extension(src, "dat", tmp_path / "out", workers=2, progress=stop_after_first,
                           cancel=cancel, compression="lzma", level=1)
    assert rep.cancelled and rep.ok and not rep.success
    assert "cancelled" in " ".join(rep.notes)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{r.stem}.zip" for r in rep.ok)
    contents(tmp_path / "out")


def test_keyboard_interrupt_gives_partial_report(tmp_path):
    src = corpus(tmp_path / "src", stems=6, files=1, size=1 << 20)

    def interrupt(ev: ProgressEvent) -> None:
        if ev.result is not None:
            raise KeyboardInterrupt

    with pytest.raises(zipkit.RunInterrupted) as e:
        zip_by_extension(src, "dat", tmp_path / "out", workers=1, progress=interrupt)
    assert len(e.value.report.ok) == 1 and len(e.value.report.cancelled) == 5
    assert isinstance(e.value, KeyboardInterrupt)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"{e.value.report.ok[0].stem}.zip"]


def test_unguarded_script_runs_a_pool(tmp_path):
    """Batch scripts of the old tool have no ``if __name__ == '__main__'`` guard."""
    src = corpus(tmp_path / "src", stems=4)
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        from zipkit import zip_by_extension
        r = zip_by_extension({str(src)!r}, "dat", {str(tmp_path / 'out')!r}, workers=2, progress=False)
        print(r.summary_line())
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "12 ok of 12" in out.stdout


def test_report_renders(tmp_path):
    src = corpus(tmp_path / "src", stems=2)
    rep = zip_by_extension(src, "dat", tmp_path / "out", progress=False)
    text, html = str(rep), rep._repr_html_()
    assert "case000_part0" in text and "6 ok of 6" in text
    assert "<table class='zipkit-report-table'>" in html and "zipkit-ok" in html
    rec = rep.to_records()
    assert rec[0]["stem"] == "case000_part0" and rec[0]["status"] == "ok" and json.dumps(rec)
    assert rep["case001_part2"].bytes_in == 20_000


def test_worker_log_records_reach_the_parent(tmp_path, caplog):
    src = corpus(tmp_path / "src", stems=4, files=1)
    p = plan(src, "dat", tmp_path / "out")
    (src / "case001_part0.dat").unlink()
    with caplog.at_level("WARNING", logger="zipkit"):
        rep = run_plan(p, workers=2, progress=False)
    assert rep.executor == "process pool" and len(rep.failed) == 1
    assert any("case001_part0" in r.getMessage() and r.process != os.getpid() for r in caplog.records)
    assert repr(rep).startswith("<zipkit.Report: 3 ok") and repr(p).startswith("<zipkit.Plan ")


@pytest.mark.caller_forks  # its pool forks (the default start method here), as its caller chose
def test_a_given_process_pool_that_breaks_is_finished_in_process(tmp_path):
    """DESIGN: a broken pool does not end the run; a given executor is not ours to replace."""
    from concurrent.futures import ProcessPoolExecutor

    import psutil

    src = corpus(tmp_path / "src", stems=10, files=2, size=2 << 20)
    killed = []

    def kill_one(ev: ProgressEvent) -> None:
        if not killed and ev.result is not None:
            workers = pool_workers(psutil.Process())
            if workers:
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append(workers[0].pid)

    with ProcessPoolExecutor(2) as ex:
        rep = zip_by_extension(src, "dat", tmp_path / "out", executor=ex, progress=kill_one,
                               compression="lzma", level=1)
    assert killed
    assert len(rep.ok) == 20, [(r.stem, r.status, r.message) for r in rep.results if r.status != "ok"]
    assert any("run again in this process" in n for n in rep.notes)
    contents(tmp_path / "out")
    assert not list((tmp_path / "out").glob(".zipkit-*"))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_leaves_nothing_but_the_archives(tmp_path, workers):
    """Each worker's temp folder (``.zipkit-RUN-PID.tmp/``) is gone when the run returns."""
    src = corpus(tmp_path / "src", stems=12)
    (src / "big_0.dat").write_bytes(os.urandom(3 << 20))  # one stem streamed, the rest in memory
    out = tmp_path / "out"
    rep = zip_by_extension(src, "dat", out, workers=workers, progress=False)
    assert rep.success
    assert sorted(os.listdir(out)) == sorted(f"{r.stem}.zip" for r in rep.ok)


def test_only_an_archive_holding_the_stems_files_counts_as_finished_by_a_lost_worker(tmp_path):
    """When a worker dies, a stem whose archive is on disk counts as done; an archive another
    job put at that path meanwhile (other members) must not: the stem runs again instead."""
    from zipkit._progress import Progress
    from zipkit._supervise import Run

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "a.dat").write_bytes(b"a" * 1000)
    p = plan(src, "dat", out)
    run = Run(p, 2, Progress(False, p.total_bytes, 1), None)
    stem = p.stems[0]
    with zipfile.ZipFile(out / "a.zip", "w") as zf:  # another job's: a.log only
        zf.writestr("a.log", b"log")
    assert run._finished_on_disk(stem, "x") is None
    with zipfile.ZipFile(out / "a.zip", "w") as zf:  # this stem's file, at another size
        zf.writestr("a.dat", b"short")
    assert run._finished_on_disk(stem, "x") is None
    (out / "a.zip").write_bytes(b"not a zip")
    assert run._finished_on_disk(stem, "x") is None
    with zipfile.ZipFile(out / "a.zip", "w") as zf:  # what the worker would have written
        zf.write(src / "a.dat", "a.dat")
        zf.writestr("old.txt", b"a member carried over")
    done = run._finished_on_disk(stem, "finished before its worker was stopped")
    assert done is not None and done.status == "ok" and done.deleted == ()


def test_report_started_is_when_the_run_began_not_when_it_ended(tmp_path):
    """``Report.started`` is stamped as the run starts: a run that takes over a second after
    its first event still reports the second it began (it once recorded the end)."""
    from datetime import datetime

    src = corpus(tmp_path / "src", stems=2)
    seen: list[datetime] = []

    def slow(event):
        if not seen:
            seen.append(datetime.now())
            time.sleep(1.5)

    before = datetime.now().replace(microsecond=0)
    rep = zip_by_extension(src, "dat", tmp_path / "out", workers=1, progress=slow)
    started = datetime.fromisoformat(rep.started)
    assert rep.success and seen
    assert before <= started <= seen[0], (before, started, seen)
    assert rep.plan is not None and rep.output == rep.plan.output == tmp_path / "out"
