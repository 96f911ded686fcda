"""Attacks on the pool's edges (issues 13, 18, 19): scripts run in ways the unguarded check
must see through, guards written unusually (a false positive would force a guarded script onto
one thread), threads that appear after the first pool, workers killed idle or two at once,
workers that die at start-up in a forked pool, and many stems under repeated kills."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import zipapp
import zipfile
from pathlib import Path

import psutil
import pytest
from safety_helpers import (
    assert_nothing_lost,
    assert_processes_gone,
    pool_workers,
    snapshot,
    temp_files,
    text_bytes,
    write,
)
from test_fallback import _corpus, _run, _script, _warnings
from test_pool import SLOW

import zipkit
import zipkit._pool
import zipkit._worker
from zipkit._supervise import MAX_RESTARTS

pytestmark = pytest.mark.timeout(300)

THREAD = "import threading, zipkit\nthreading.Thread(target=threading.Event().wait, daemon=True).start()\n"
CALL = ("r = zipkit.zip_by_extension({src!r}, ['a', 'b'], {out!r}, progress=False, workers=2)\n"
        "print(r.summary_line())\nprint('NOTES', r.notes)\n")


def _indent(code: str, by: str = "    ") -> str:
    return "".join(by + line + "\n" for line in code.splitlines())


GUARDS = {
    "mirrored": "if '__main__' == __name__:\n" + _indent(CALL),
    "and-true": "if __name__ == '__main__' and True:\n" + _indent(CALL),
    "in-tuple": "if __name__ in ('__main__',):\n" + _indent(CALL),
    "not-ne": "if not __name__ != '__main__':\n" + _indent(CALL),
    "in-a-function": "def run():\n    if __name__ == '__main__':\n" + _indent(CALL, "        ") + "run()\n",
    "else-branch": "if __name__ != '__main__':\n    pass\nelse:\n" + _indent(CALL),
}


def _archives(out: Path, n: int) -> None:
    names = sorted(z.name for z in out.glob("*.zip"))
    assert len(names) == n, names
    for z in out.glob("*.zip"):
        with zipfile.ZipFile(z) as zf:
            assert zf.testzip() is None


@pytest.mark.parametrize("guard", list(GUARDS))
def test_an_unusual_guard_keeps_the_pool(tmp_path: Path, guard: str) -> None:
    """A threaded script whose call IS guarded, in a way the first check did not parse: the
    workers (which re-import it as ``__mp_main__``) never reach the call, so the pool runs.
    (Before: `and True`, `in (...)`, `not !=` and a guard inside a function were taken for
    no guard, and the run was forced onto one process with a warning.)"""
    src = _corpus(tmp_path / "src", 12)
    script = _script(tmp_path, "job.py", THREAD + GUARDS[guard], src=str(src), out=str(tmp_path / "out"))
    done, _ = _run([sys.executable, str(script)])
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "12 ok of 12" in done.stdout and "process pool" in done.stdout, done.stdout
    _archives(tmp_path / "out", 12)


def _fell_back(done, n: int) -> None:
    assert done.returncode == 0, done.stderr
    assert f"{n} ok of {n}" in done.stdout and "1 worker(s), in-process" in done.stdout, done.stdout
    lines = _warnings(done.stderr)
    assert len(lines) == 1 and "sequential fallback" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_an_unguarded_module_run_with_dash_m_falls_back(tmp_path: Path) -> None:
    """``python -m job``: multiprocessing re-imports the module by name in every worker."""
    src = _corpus(tmp_path / "src", 10)
    _script(tmp_path, "job.py", THREAD + CALL, src=str(src), out=str(tmp_path / "out"))
    done, _ = _run([sys.executable, "-m", "job"], cwd=tmp_path)
    _fell_back(done, 10)
    _archives(tmp_path / "out", 10)


def test_an_unguarded_script_run_by_runpy_as_main_falls_back(tmp_path: Path) -> None:
    """A launcher runs the script with ``runpy.run_path(..., run_name="__main__")``: it is
    ``__main__`` while it runs, and workers would re-run it."""
    src = _corpus(tmp_path / "src", 10)
    job = _script(tmp_path, "job.py", THREAD + CALL, src=str(src), out=str(tmp_path / "out"))
    launch = f"import runpy\nrunpy.run_path({str(job)!r}, run_name='__main__')\n"
    launcher = _script(tmp_path, "launch.py", launch)
    done, _ = _run([sys.executable, str(launcher)])
    _fell_back(done, 10)


@pytest.mark.parametrize("guarded", [False, True], ids=["unguarded", "guarded"])
def test_a_threaded_script_read_from_stdin_falls_back_cleanly(tmp_path: Path, guarded: bool) -> None:
    """``python - < job.py``: ``__main__.__file__`` is ``<stdin>``, which every forkserver worker
    tries to re-run and cannot (guard or not). (Before: a FileNotFoundError traceback per worker
    on stderr, and a warning advising a guard the script may already have.)"""
    src = _corpus(tmp_path / "src", 10)
    body = THREAD + (GUARDS["mirrored"] if guarded else CALL)
    job = _script(tmp_path, "job.py", body, src=str(src), out=str(tmp_path / "out"))
    done, _ = _run(["sh", "-c", f'exec "$0" - < {job}', sys.executable])
    _fell_back(done, 10)
    assert "'<stdin>'" in done.stderr and "run the script from a file" in done.stderr, done.stderr
    assert "__name__" not in done.stderr, done.stderr
    _archives(tmp_path / "out", 10)


def test_an_unguarded_zip_app_keeps_the_pool(tmp_path: Path) -> None:
    """A zip app's ``__main__`` is never re-run by multiprocessing: the pool is safe there, and
    a fallback would be a slow-down."""
    src = _corpus(tmp_path / "src", 10)
    app = tmp_path / "app"
    app.mkdir()
    _script(tmp_path, "app/__main__.py", THREAD + CALL, src=str(src), out=str(tmp_path / "out"))
    zipapp.create_archive(app, tmp_path / "job.pyz")
    done, _ = _run([sys.executable, str(tmp_path / "job.pyz")])
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "10 ok of 10" in done.stdout and "process pool" in done.stdout, done.stdout
    _archives(tmp_path / "out", 10)


LATE_THREAD = """
import multiprocessing, os, signal, threading, zipkit
state = {{"killed": False}}
def progress(ev):
    if state["killed"] or ev.bytes_done <= 0:
        return
    kids = multiprocessing.active_children()
    if kids:
        state["killed"] = True
        threading.Thread(target=threading.Event().wait, daemon=True).start()
        os.kill(kids[0].pid, signal.SIGKILL)
r = zipkit.zip_by_extension({src!r}, "dat", {out!r}, progress=progress, workers=2,
                            compression="lzma", level=1)
print(r.summary_line())
print("NOTES", r.notes)
print("KILLED", state["killed"])
"""


def test_an_unguarded_script_whose_thread_starts_after_the_first_pool(tmp_path: Path) -> None:
    """The first pool forks; then a thread starts and a worker dies. The fresh pool may not
    fork and forkserver workers would re-run the script: the rest runs here. The report must
    not claim a restart that never happened. (Before: 'restarted 1 time(s)' and a 'restarting
    the pool' warning, then the fallback.)"""
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(6):
        write(src / f"s{i}.dat", text_bytes(2 << 20, i))
    snap = snapshot(src)
    script = _script(tmp_path, "job.py", LATE_THREAD, src=str(src), out=str(out))
    done, _ = _run([sys.executable, "-X", "dev", str(script)] if sys.version_info >= (3, 12) else
                   [sys.executable, str(script)])
    assert done.returncode == 0, done.stderr
    assert "KILLED True" in done.stdout and "6 ok of 6" in done.stdout, done.stdout
    assert "multi-threaded, use of fork()" not in done.stderr
    lines = _warnings(done.stderr)
    assert len(lines) == 1, done.stderr
    assert "sequential fallback: this script calls zipkit outside" in lines[0], done.stderr
    assert "restart" not in done.stdout and "restart" not in done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert_nothing_lost(snap, out)


def _big_and_small(src: Path) -> None:
    write(src / "big.dat", text_bytes(10 << 20, 1))  # the biggest starts first, ~2 s
    write(src / "small.dat", text_bytes(64 << 10, 2))


def test_a_worker_killed_while_idle_charges_no_stem(tmp_path: Path, caplog) -> None:
    """Two workers, one big stem and one small: once the small one is done its worker idles;
    SIGKILL it. The pool breaks and the big stem's worker is stopped by the pool: the big stem
    runs again at no cost (attempts 1), the report says one restart."""
    src, out = tmp_path / "src", tmp_path / "out"
    _big_and_small(src)
    snap = snapshot(src)
    killed: list[int] = []
    late: list[bool] = []  # the big stem was done by then (a loaded machine): nothing to restart

    def progress(ev: zipkit.ProgressEvent) -> None:
        if killed or ev.result is None or ev.result.stem != "small":
            return
        for proc in pool_workers():
            held = [f.path for f in proc.open_files() if f.path.startswith(str(src))]
            if not held:
                late.append((out / "big.zip").exists())
                os.kill(proc.pid, signal.SIGKILL)
                killed.append(proc.pid)
                return

    with caplog.at_level(logging.WARNING, logger="zipkit"):
        rep = zipkit.zip_by_extension(src, "dat", out, workers=2, progress=progress, **SLOW)
    assert killed, "no idle worker found"
    assert not rep.failed and len(rep.ok) == 2
    attempts = {r.stem: r.attempts for r in rep.results}
    assert attempts == {"big": 1, "small": 1}, attempts
    if not late[0]:  # late, the pool may end unbroken: its close must not wait for the dead worker (it hung)
        assert any("restarted 1 time(s)" in n for n in rep.notes), rep.notes
    assert_nothing_lost(snap, out)
    assert_processes_gone(pool_workers(), timeout=5)


def test_two_workers_killed_at_once_charge_their_two_stems(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(6):
        write(src / f"s{i}.dat", text_bytes(2 << 20, i))
    snap = snapshot(src)
    hit: list[str] = []

    def progress(ev: zipkit.ProgressEvent) -> None:
        if hit or ev.bytes_done <= 0:
            return
        workers = pool_workers()
        for proc in workers:  # stopped while looked at: a worker cannot move on to its next stem
            os.kill(proc.pid, signal.SIGSTOP)
        running = {}
        for proc in workers:
            held = [Path(f.path).stem for f in proc.open_files() if f.path.startswith(str(src))]
            if held:
                running[proc.pid] = held[0]
        if len(running) == 2:
            for pid in running:
                os.kill(pid, signal.SIGKILL)
            hit.extend(running.values())
        for proc in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)

    rep = zipkit.zip_by_extension(src, "dat", out, workers=2, progress=progress, **SLOW)
    assert len(hit) == 2 and not rep.failed and len(rep.ok) == 6
    charged = sorted(r.stem for r in rep.results if r.attempts > 1)
    finished = [s for s in hit if rep[s].message == "finished before its worker was stopped"]
    assert charged == sorted(set(hit) - set(finished)), (charged, hit)
    assert any("restarted 1 time(s)" in n for n in rep.notes), rep.notes
    assert_nothing_lost(snap, out)
    assert_processes_gone(pool_workers(), timeout=5)


def test_forked_workers_that_die_at_start_up_fall_back_without_the_guard_advice(
        tmp_path: Path, monkeypatch, caplog) -> None:
    """A forked worker re-imports nothing, so when forked workers die before any stem the fix
    is not a ``__main__`` guard. (Before: the warning told the user to add one.)"""
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(8):
        write(src / f"s{i}.dat", text_bytes(64 << 10, i))
    snap = snapshot(src)
    monkeypatch.setattr(zipkit._pool, "init_pool_worker", lambda *a: os._exit(3))
    assert threading.active_count() == 1  # so the pool forks
    with caplog.at_level(logging.DEBUG, logger="zipkit"):
        rep = zipkit.zip_by_extension(src, "dat", out, workers=2, progress=False)
    assert any("starts by fork" in r.getMessage() for r in caplog.records)
    assert len(rep.ok) == 8 and rep.workers == 1
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "exited before they started any stem" in warned[0], warned
    assert "__main__" not in warned[0], warned
    assert_nothing_lost(snap, out)


def test_workers_that_die_on_every_first_stem_are_not_taken_for_a_failed_start(
        tmp_path: Path, monkeypatch, caplog) -> None:
    """Every worker dies on the stem it starts (it got that far: it started): each pool's dead
    stems are charged, the pool is restarted MAX_RESTARTS times, then the rest runs here. A stem
    whose worker died twice is reported lost with its sources kept; every other stem is zipped."""
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(16):
        write(src / f"s{i:02}.dat", text_bytes(64 << 10, i))
    snap = snapshot(src)
    parent, real = os.getpid(), zipkit._worker.run_batch

    def dies_in_a_worker(*args, **kwargs):
        if os.getpid() != parent:
            os._exit(7)
        return real(*args, **kwargs)

    monkeypatch.setattr(zipkit._worker, "run_batch", dies_in_a_worker)
    with caplog.at_level(logging.WARNING, logger="zipkit"):
        rep = zipkit.zip_by_extension(src, "dat", out, workers=2, progress=False)
    notes = " | ".join(rep.notes)
    assert f"restarted {MAX_RESTARTS} time(s)" in notes, notes
    assert f"sequential fallback: worker processes died {MAX_RESTARTS + 1} times" in notes, notes
    assert all(r.error_type == "WorkerLost" and r.attempts == 2 for r in rep.failed), rep.failed
    assert len(rep.ok) + len(rep.failed) == 16
    assert len(rep.ok) >= 16 - (MAX_RESTARTS + 1)  # at most one stem per pool can die twice
    assert_nothing_lost(snap, out)
    assert_processes_gone(pool_workers(), timeout=5)


@pytest.mark.parametrize("workers,stems", [(1, 5), (4, 1)])
def test_one_worker_or_one_stem_starts_no_pool_and_says_nothing(tmp_path: Path, caplog, workers: int,
                                                                 stems: int) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(stems):
        write(src / f"s{i}.dat", text_bytes(256 << 10, i))
    children: list[int] = []
    # an earlier test's forkserver (a long-lived child of this process) is not this run's
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    def progress(ev: zipkit.ProgressEvent) -> None:
        children.extend(p.pid for p in psutil.Process().children(recursive=True) if p.pid not in before)

    with caplog.at_level(logging.WARNING, logger="zipkit"):
        rep = zipkit.zip_by_extension(src, "dat", out, workers=workers, progress=progress)
    assert len(rep.ok) == stems and rep.executor == "in-process" and rep.notes == ()
    assert children == [] and [p for p in multiprocessing.active_children() if p.pid not in before] == []
    assert [r.getMessage() for r in caplog.records] == []


def test_5000_tiny_stems_under_repeated_kills(tmp_path: Path, caplog) -> None:
    """A worker is killed every 150 results: at most MAX_RESTARTS fresh pools, then the rest
    here; every stem is zipped or (died twice) kept; the run ends in bounded time."""
    src, out = tmp_path / "src", tmp_path / "out"
    _corpus(src, 5000)
    snap = snapshot(src)
    kills: list[int] = []

    def progress(ev: zipkit.ProgressEvent) -> None:
        if ev.result is not None and ev.stems_done % 150 == 0:
            workers = pool_workers()
            if workers:
                try:
                    os.kill(workers[0].pid, signal.SIGKILL)
                except ProcessLookupError:  # it ended between the look and the kill: next time
                    return
                kills.append(workers[0].pid)

    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="zipkit"):
        rep = zipkit.zip_by_extension(src, ["a", "b"], out, workers=2, progress=progress)
    seconds = time.perf_counter() - t0
    assert len(kills) >= MAX_RESTARTS + 1, kills
    assert f"restarted {MAX_RESTARTS} time(s)" in " ".join(rep.notes), rep.notes
    assert len([n for n in rep.notes if n.startswith("sequential fallback")]) == 1, rep.notes
    assert len(rep.ok) + len(rep.failed) == 5000 and len(rep.failed) <= MAX_RESTARTS + 1
    restarts = [r for r in caplog.records if "restarting the pool" in r.getMessage()]
    assert len(restarts) == MAX_RESTARTS
    assert seconds < 240, seconds
    print(f"5000 stems, {len(kills)} kills: {seconds:.1f} s, {len(rep.ok)} ok")
    assert_nothing_lost(snap, out)
    assert_processes_gone(pool_workers(), timeout=5)


NO_THREAD = """
import os, threading, psutil, zipkit
PARENT, real_start = os.getpid(), threading.Thread.start
def start(self):  # this process is at its thread limit for the pool's {which} (as RLIMIT_NPROC does)
    if os.getpid() == PARENT and {test}:
        raise RuntimeError("can't start new thread")
    return real_start(self)
threading.Thread.start = start
if __name__ == "__main__":
    r = zipkit.zip_by_extension({src!r}, ["a", "b"], {out!r}, progress=False, workers=2)
    print(r.summary_line())
    print("CHILDREN", [p.pid for p in psutil.Process().children(recursive=True)
                       if "forkserver" not in " ".join(p.cmdline()) and p.status() != "zombie"])
"""


@pytest.mark.parametrize("which,test", [
    ("manager thread", "type(self).__name__ == '_ExecutorManagerThread'"),
    ("task feeder thread", "self.name == 'QueueFeederThread'"),
], ids=["manager", "feeder"])
def test_a_pool_thread_that_cannot_start_falls_back(tmp_path: Path, which: str, test: str) -> None:
    """At a process limit (RLIMIT_NPROC counts threads too) the pool's own threads may fail to
    start, as the NPROC scan found between 5 and 8 tasks. (Before: the manager thread -> a
    RuntimeError traceback from shutdown and exit 1 with nothing zipped; its task feeder ->
    'Exception in thread' on stderr and a run that hung forever.)"""
    src = _corpus(tmp_path / "src", 40)
    script = _script(tmp_path, "job.py", NO_THREAD, src=str(src), out=str(tmp_path / "out"), which=which,
                     test=test)
    done, _ = _run([sys.executable, str(script)], timeout=60)
    _fell_back(done, 40)
    # 3.12+ catch the manager thread's error and break the pool, whose workers it stops first
    said = ["worker processes could not be started (RuntimeError: can't start new thread)"]
    if sys.version_info >= (3, 12):
        said.append("the worker processes exited before they started any stem")
    assert any(s in done.stderr for s in said), done.stderr
    assert "CHILDREN []" in done.stdout, done.stdout
    _archives(tmp_path / "out", 40)


TERM_AT_BIRTH = """
import glob, os, signal, sys
os.sched_setaffinity(0, {{0}})  # a forked worker shares this process's CPU
armed, seen = [True], set()
def _kids():
    lists = glob.glob(f"/proc/{{os.getpid()}}/task/*/children")
    return {{int(p) for f in lists for p in open(f).read().split()}}
def _before():  # real-time (its children not), this process keeps the CPU until the SIGTERM is sent
    if armed[0]:
        seen.update(_kids())
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(1))
def _after_in_parent():
    if armed[0]:
        armed[0] = False
        for pid in _kids() - seen:
            os.kill(pid, signal.SIGTERM)
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
os.register_at_fork(before=_before, after_in_parent=_after_in_parent)
import zipkit
if __name__ == "__main__":
    r = zipkit.zip_by_extension({src!r}, ["a", "b"], {out!r}, progress=False, workers=2)
    print(r.summary_line())
"""


def test_a_worker_sent_sigterm_before_it_first_ran_dies_of_it(tmp_path: Path) -> None:
    """concurrent.futures stops a broken pool's workers with SIGTERM, often right after their
    fork. A signal that reaches a forked child before it first runs is taken by the run's stop
    handler, inherited, and then dropped by CPython's fork clean-up: the worker lived on, and a
    pool that broke as it started (a thread it could not start) waited for it forever (3.12, 1 run
    in ~30 of test_a_pool_thread_that_cannot_start_falls_back[feeder]). Driven here: the first
    worker is sent SIGTERM by a real-time parent on the same CPU before it can run; it must die
    (the run then falls back, as for any worker that never started, or, if the other worker
    began a stem first, restarts the pool)."""
    probe = subprocess.run([sys.executable, "-c", "import os; os.sched_setscheduler(0, os.SCHED_FIFO, "
                            "os.sched_param(1))"], capture_output=True, text=True)
    if probe.returncode != 0 and os.geteuid() == 0:  # root (as CI runs) must be able to
        pytest.fail(f"SCHED_FIFO refused to root: {probe.stderr[-200:]}")
    if probe.returncode != 0:
        pytest.skip(f"no real-time scheduling here (needs CAP_SYS_NICE, as root has): {probe.stderr[-200:]}")
    src = _corpus(tmp_path / "src", 40)
    script = _script(tmp_path, "job.py", TERM_AT_BIRTH, src=str(src), out=str(tmp_path / "out"))
    done, _ = _run([sys.executable, str(script)], timeout=60)
    assert done.returncode == 0 and "40 ok of 40" in done.stdout, (done.stdout, done.stderr[-2000:])
    said = ("sequential fallback: the worker processes exited before they started any stem",
            "worker process died; restarting the pool (1 of at most")
    assert any(s in done.stderr for s in said), done.stderr  # before: nothing said, the SIGTERM lost
    assert "Traceback" not in done.stderr, done.stderr
    _archives(tmp_path / "out", 40)


TERM_IN_FIRST_SUBMIT = """
import os, signal, sys, time
armed = [True]
def _after_in_parent():  # a `kill -TERM` that lands while the pool forks its first worker
    if armed[0]:
        armed[0] = False
        os.kill(os.getpid(), signal.SIGTERM)
os.register_at_fork(after_in_parent=_after_in_parent)
import zipkit
if __name__ == "__main__":
    t0 = time.monotonic()
    try:
        zipkit.zip_by_extension({src!r}, "dat", {out!r}, workers=2, compression="lzma",
                                delete_sources=True, progress=False)
        print("NOT STOPPED")
    except zipkit.RunInterrupted as e:
        print("STOPPED", round(time.monotonic() - t0, 2), e.report.summary_line())
"""


def test_a_sigterm_while_the_first_submit_forks_stops_the_run_at_once(tmp_path: Path) -> None:
    """The signal is held while a submit forks and its handler runs as the submit returns, its
    task not yet in flight: the run must kill the pool. (Before: the pool was shut down waiting,
    so the run first archived its largest stem, lzma, and deleted its source.)"""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "big.dat", text_bytes(12 << 20))
    for i in range(20):
        write(src / f"s{i:02}.dat", text_bytes(1000, i))
    snap = snapshot(src)
    script = _script(tmp_path, "job.py", TERM_IN_FIRST_SUBMIT, src=str(src), out=str(out))
    done, _ = _run([sys.executable, str(script)], timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("STOPPED"), (done.stdout, done.stderr[-2000:])
    assert float(done.stdout.split()[1]) < 3, done.stdout  # before: 4-20 s, the lzma stem's time
    assert not (out / "big.zip").exists() and (src / "big.dat").exists()
    assert_nothing_lost(snap, out)
    assert not temp_files(out), temp_files(out)


def test_a_threaded_script_that_deleted_itself_falls_back_before_any_worker(tmp_path: Path) -> None:
    """Forkserver workers would re-run a script file that is gone and die, each with a traceback:
    the run sees that first and says so once."""
    src = _corpus(tmp_path / "src", 10)
    body = "import os\nos.unlink(__file__)\n" + THREAD + GUARDS["mirrored"]
    script = _script(tmp_path, "gone.py", body, src=str(src), out=str(tmp_path / "out"))
    done, _ = _run([sys.executable, str(script)])
    _fell_back(done, 10)
    assert "gone.py', which they would re-import, does not exist" in done.stderr, done.stderr


def test_a_child_forked_during_a_run_dies_of_sigterm() -> None:
    """Between a worker's fork and its initializer, a SIGTERM (how a breaking pool stops the
    rest) must kill it: with the run's handler inherited it raised Stopped in the bootstrap,
    took no second SIGTERM, and the pool waited on it forever (3.12, 1 run in ~10 of
    test_a_pool_thread_that_cannot_start_falls_back[feeder])."""
    from zipkit._signals import stop_on_signals

    with stop_on_signals():
        assert getattr(signal.getsignal(signal.SIGTERM), "__module__", None) == "zipkit._signals"
        pid = os.fork()
        if pid == 0:  # the child: as a pool worker is before its initializer runs
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(2)
            finally:
                os._exit(3)  # Stopped was raised, or the signal did nothing
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGTERM
