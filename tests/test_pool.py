"""The own process pool under stress: fresh pools after a death, who is charged for a death,
how often a pool is restarted, and start-method choice; all with real processes and SIGKILL."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import psutil
import pytest
from safety_helpers import (
    assert_nothing_lost,
    assert_processes_gone,
    pool_workers,
    snapshot,
    text_bytes,
    write,
)

import zipkit
from zipkit._supervise import MAX_RESTARTS

pytestmark = pytest.mark.timeout(120)

SLOW = {"compression": "lzma", "level": 1}  # ~5 MB/s: a 2 MiB stem stays in flight for a while
# a killed stem whose archive went into place between the look at the worker and the kill
FINISHED_BEFORE_THE_KILL = "finished before its worker was stopped"


def _stems(src: Path, n: int, size: int = 2 << 20) -> None:
    for i in range(n):
        write(src / f"s{i:03}.dat", text_bytes(size, i))


class Killer:
    """A progress callable that SIGKILLs the worker running a stem, ``kills`` times: each time
    in a fresh pool (a worker not yet seen), mid-stem (it holds the stem's source open), and
    never the worker of a stem killed before (so that every kill charges a new stem)."""

    def __init__(self, src: Path, kills: int, on_kill=None):
        self.src, self.kills, self.on_kill = src, kills, on_kill
        self.seen: set[int] = set()  # pids of workers of pools already hit
        self.killed: list[str] = []  # the stem each kill landed on

    def __call__(self, ev: zipkit.ProgressEvent) -> None:
        if len(self.killed) >= self.kills or ev.bytes_done <= 0:
            return
        workers = pool_workers()
        if not workers or any(w.pid in self.seen for w in workers):
            return  # the pool hit last is still going down
        for proc in workers:
            try:
                held = [Path(f.path).stem for f in proc.open_files() if f.path.startswith(str(self.src))]
            except psutil.Error:
                continue
            if held and held[0] not in self.killed:
                self.seen.update(w.pid for w in workers)
                os.kill(proc.pid, signal.SIGKILL)
                self.killed.append(held[0])
                if self.on_kill is not None:
                    self.on_kill()
                return


def test_only_the_stems_a_dead_worker_was_running_are_charged(tmp_path: Path) -> None:
    """Kill one worker of a 2-worker pool mid-stem, twice, with many stems queued behind: the
    queued stems and the stem of the worker the pool stopped run again at no cost; only the
    two killed stems count an attempt. (Before: every in-flight stem was charged, and queued
    stems ended 'died twice'.)"""
    src, out = tmp_path / "src", tmp_path / "out"
    _stems(src, 24)
    snap = snapshot(src)
    kill = Killer(src, kills=2)
    rep = zipkit.zip_by_extension(src, "dat", out, workers=2, progress=kill, **SLOW)
    assert len(kill.killed) == 2, kill.killed
    assert [r.stem for r in rep.failed] == [], [(r.stem, r.message) for r in rep.failed]
    assert len(rep.ok) == 24
    charged = sorted(r.stem for r in rep.results if r.attempts > 1)
    finished = FINISHED_BEFORE_THE_KILL
    hit = sorted(s for s in kill.killed if rep[s].message != finished)
    assert charged == hit, (charged, kill.killed)
    assert any("restarted 2 time(s)" in n for n in rep.notes), rep.notes
    assert_nothing_lost(snap, out)
    assert_processes_gone(pool_workers(), timeout=5)


def test_a_pool_is_restarted_at_most_the_documented_number_of_times(tmp_path: Path, caplog) -> None:
    """Workers that keep dying: after MAX_RESTARTS fresh pools the rest runs in this process,
    with one warning; every stem is still archived."""
    src, out = tmp_path / "src", tmp_path / "out"
    _stems(src, 20, size=1 << 20)
    snap = snapshot(src)
    kill = Killer(src, kills=MAX_RESTARTS + 3)
    with caplog.at_level(logging.WARNING, logger="zipkit"):
        rep = zipkit.zip_by_extension(src, "dat", out, workers=2, progress=kill, **SLOW)
    assert len(kill.killed) == MAX_RESTARTS + 1  # then no pool is left to kill a worker of
    assert len(rep.ok) == 20 and not rep.failed
    assert any(f"restarted {MAX_RESTARTS} time(s)" in n for n in rep.notes), rep.notes
    fallback = [n for n in rep.notes if n.startswith("sequential fallback:")]
    assert len(fallback) == 1 and f"died {MAX_RESTARTS + 1} times" in fallback[0], rep.notes
    warned = [r.getMessage() for r in caplog.records if "sequential fallback" in r.getMessage()]
    assert len(warned) == 1, warned
    assert_nothing_lost(snap, out)


def test_a_fresh_pool_does_not_fork_a_process_that_now_has_a_thread(tmp_path: Path, caplog) -> None:
    """The first pool forks (one thread); a thread starts mid-run (as a library's would) and a
    worker dies: the fresh pool must start by forkserver. On Python 3.12+ a fork with threads
    would also raise here (pytest turns the DeprecationWarning into an error)."""
    src, out = tmp_path / "src", tmp_path / "out"
    _stems(src, 8, size=1 << 20)
    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, daemon=True)
    kill = Killer(src, kills=1, on_kill=helper.start)
    try:
        with caplog.at_level(logging.DEBUG, logger="zipkit"):
            rep = zipkit.zip_by_extension(src, "dat", out, workers=2, progress=kill, **SLOW)
    finally:
        stop.set()
        if helper.is_alive():
            helper.join()
    starts = [r.getMessage() for r in caplog.records if "worker(s) starts by" in r.getMessage()]
    assert len(starts) == 2, starts
    assert "starts by fork" in starts[0] and "starts by forkserver" in starts[1], starts
    assert len(rep.ok) == 8 and kill.killed


def test_pools_of_one_run_leave_no_thread_behind(tmp_path: Path) -> None:
    """A run that replaced its pool returns with this process's thread count unchanged, so the
    next run (or the next pool) may fork again."""
    src, out = tmp_path / "src", tmp_path / "out"
    _stems(src, 8, size=1 << 20)
    before = threading.active_count()
    kill = Killer(src, kills=1)
    rep = zipkit.zip_by_extension(src, "dat", out, workers=2, progress=kill, **SLOW)
    assert kill.killed and len(rep.ok) == 8
    assert threading.active_count() == before, threading.enumerate()



class StemStopper:
    """SIGSTOPs the worker that is reading ``victim``, once: a worker that cannot stop by
    itself (its own timeout alarm is held while it is stopped), so the parent's watchdog must
    replace it and report the stem timed out."""

    def __init__(self, src: Path, victim: str):
        self.src, self.victim, self.stopped = src, victim, None

    def __call__(self, ev: zipkit.ProgressEvent) -> None:
        if self.stopped is not None:
            return
        for proc in pool_workers():
            try:
                held = [Path(f.path).stem for f in proc.open_files() if f.path.startswith(str(self.src))]
            except psutil.Error:
                continue
            if self.victim in held:
                os.kill(proc.pid, signal.SIGSTOP)
                self.stopped = proc.pid
                return


def test_a_failure_found_by_the_parent_is_said_once(tmp_path: Path, caplog) -> None:
    """A stem whose worker hangs past its timeout is reported by the parent, not by a worker:
    it is logged once (the CLI no longer repeats failures), the report says timed out, and the
    stem's sources are kept."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "victim.dat", text_bytes(32 << 20, 99))  # the biggest: it starts first, runs ~6 s
    _stems(src, 6, size=256 << 10)
    snap = snapshot(src)
    stop = StemStopper(src, "victim")
    with caplog.at_level(logging.WARNING, logger="zipkit"):
        rep = zipkit.zip_by_extension(src, "dat", out, workers=2, progress=stop, delete_sources=True,
                                      timeout=3, **SLOW)
    assert stop.stopped is not None
    assert [(r.stem, r.status) for r in rep.failed] == [("victim", "timed_out")], rep.failed
    said = [r.getMessage() for r in caplog.records if "victim" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("timed out: victim: "), said
    assert (src / "victim.dat").is_file() and len(rep.ok) == 6
    assert_nothing_lost(snap, out)
    assert_processes_gone(pool_workers(), timeout=5)
