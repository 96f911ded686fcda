"""Any ``concurrent.futures.Executor`` passed as ``executor=``: used as given, never shut down,
same archives as the process pool, and a task that fails (a lost worker) costs no stem."""

from __future__ import annotations

import hashlib
import random
import threading
import zipfile
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

import pytest

import zipkit
from zipkit._worker import run_batch

EXTS = ["dat", "log"]


def corpus(folder: Path, stems: int = 40) -> Path:
    """``stems`` stems of two text-like files each, a few of them larger (deterministic)."""
    folder.mkdir(parents=True)
    rng = random.Random(6)
    table = bytes(48 + b % 40 for b in range(256))
    for i in range(stems):
        for ext in EXTS:
            size = 300_000 if i < 3 else rng.randint(200, 30_000)
            (folder / f"run{i:03d}.{ext}").write_bytes(rng.randbytes(size).translate(table))
    return folder


def digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.zip"))}


def assert_clean(out: Path) -> None:
    """Every archive reads back with good CRCs; no temp file is left."""
    for p in out.glob("*.zip"):
        with zipfile.ZipFile(p) as zf:
            assert zf.testzip() is None, p
    assert not list(out.glob(".zipkit-*.tmp"))


def test_thread_pool_is_used_as_given_and_matches_the_process_pool(tmp_path):
    src = corpus(tmp_path / "src")
    ref = zipkit.run_plan(zipkit.plan(src, EXTS, tmp_path / "pool", reproducible=True),
                          workers=2, progress=False)
    assert ref.executor == "process pool" and len(ref.ok) == 40
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        rep = zipkit.run_plan(zipkit.plan(src, EXTS, tmp_path / "threads", reproducible=True),
                              executor=pool, progress=False)
        # not shut down by the run: it still takes work
        assert pool.submit(pow, 2, 10).result(timeout=10) == 1024
    finally:
        pool.shutdown()
    assert rep.executor == "ThreadPoolExecutor"
    assert rep.workers == 2  # the pool's own size
    assert [(r.stem, r.status, r.files, r.bytes_in, r.bytes_out) for r in rep.results] == \
        [(r.stem, r.status, r.files, r.bytes_in, r.bytes_out) for r in ref.results]
    assert digests(tmp_path / "threads") == digests(tmp_path / "pool")
    assert len(digests(tmp_path / "pool")) == 40
    assert_clean(tmp_path / "threads")


def test_thread_pool_isolates_a_failing_stem(tmp_path):
    src = corpus(tmp_path / "src", stems=12)
    p = zipkit.plan(src, EXTS, tmp_path / "out")
    (src / "run005.log").unlink()  # vanishes between plan and run
    with ThreadPoolExecutor(max_workers=2) as pool:
        rep = zipkit.run_plan(p, executor=pool, progress=False)
    assert [r.stem for r in rep.failed] == ["run005"]
    bad = rep["run005"]
    assert bad.error_type == "FileNotFoundError" and str(src / "run005.log") in bad.message
    assert len(rep.ok) == 11 and not (tmp_path / "out" / "run005.zip").exists()
    assert_clean(tmp_path / "out")


class LosingExecutor(Executor):
    """A thread pool whose tasks "lose their worker" (the future raises, nothing runs) for the
    stems that ``lose`` picks, the first ``times`` times each is submitted."""

    def __init__(self, lose, times: int):
        self.pool = ThreadPoolExecutor(max_workers=2)
        self.lose, self.times = lose, times
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        self.lost_tasks = 0

    def submit(self, fn, /, *args, **kwargs):
        assert fn is run_batch  # the core submits the module-level worker function
        batch = args[0]
        with self.lock:
            doomed = False
            for s in batch:
                if self.lose(s.stem):
                    self.seen[s.stem] = self.seen.get(s.stem, 0) + 1
                    doomed |= self.seen[s.stem] <= self.times
            if doomed:
                self.lost_tasks += 1
                f: Future = Future()
                f.set_exception(ConnectionResetError("worker connection lost"))
                return f
        return self.pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def test_a_lost_task_is_retried_stem_by_stem(tmp_path):
    src = corpus(tmp_path / "src", stems=30)
    ex = LosingExecutor(lambda stem: stem in ("run004", "run020"), times=1)
    try:
        rep = zipkit.run_plan(zipkit.plan(src, EXTS, tmp_path / "out"), executor=ex, progress=False)
    finally:
        ex.shutdown()
    assert ex.lost_tasks >= 1
    assert rep.success and len(rep.ok) == 30
    retried = {r.stem for r in rep.results if r.attempts > 1}
    assert {"run004", "run020"} <= retried
    assert "retried" in str(rep)
    assert_clean(tmp_path / "out")


def test_a_task_lost_twice_is_reported_as_worker_lost(tmp_path):
    src = corpus(tmp_path / "src", stems=20)
    ex = LosingExecutor(lambda stem: stem == "run007", times=99)
    try:
        rep = zipkit.run_plan(zipkit.plan(src, EXTS, tmp_path / "out"), executor=ex, progress=False)
    finally:
        ex.shutdown()
    assert [r.stem for r in rep.failed] == ["run007"]
    lost = rep["run007"]
    assert lost.error_type == "WorkerLost" and lost.attempts == 2
    assert "ConnectionResetError" in lost.message and "sources kept" in lost.message
    assert (src / "run007.dat").exists() and not (tmp_path / "out" / "run007.zip").exists()
    assert len(rep.ok) == 19
    assert_clean(tmp_path / "out")


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_argument_sizes_the_window_of_a_given_executor(tmp_path, workers):
    src = corpus(tmp_path / "src", stems=10)
    with ThreadPoolExecutor(max_workers=2) as pool:
        rep = zipkit.run_plan(zipkit.plan(src, EXTS, tmp_path / "out"), executor=pool,
                              workers=workers, progress=False)
    assert rep.workers == workers and rep.executor == "ThreadPoolExecutor" and rep.success


REGISTRY_SCRIPT = """
import sys
from concurrent.futures import ThreadPoolExecutor
import zipkit
with ThreadPoolExecutor(2) as pool:
    rep = zipkit.zip_by_extension({src!r}, ["dat", "log"], {out!r}, executor=pool, progress=False)
print(rep.executor, rep.workers, len(rep.ok))
print(sorted(m for m in ("distributed", "zipkit._dask", "mpi4py", "mpi4py.futures") if m in sys.modules))
"""


def test_a_given_executor_loads_no_other_backend(tmp_path):
    """The executor registry imports a backend's library only for that library's objects: a
    thread pool run loads neither Dask nor mpi4py, and the pool's own size is its capacity."""
    import subprocess
    import sys

    src = corpus(tmp_path / "src", stems=6)
    script = REGISTRY_SCRIPT.format(src=str(src), out=str(tmp_path / "out"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ThreadPoolExecutor 2 6", "[]"], done.stdout


def test_an_executor_that_says_no_size_gets_the_cpus_here(tmp_path):
    """A given executor that does not say how many tasks it runs at once is given as many as
    this process has CPUs (``workers`` then tells zipkit its size)."""
    from zipkit._executors import GivenExecutor
    from zipkit._pool import available_cpus

    class Quiet(Executor):
        def __init__(self):
            self.pool = ThreadPoolExecutor(3)

        def submit(self, fn, /, *args, **kwargs):
            return self.pool.submit(fn, *args, **kwargs)

    with ThreadPoolExecutor(3) as sized:
        assert GivenExecutor(sized).capacity() == 3
    quiet = Quiet()
    try:
        assert GivenExecutor(quiet).capacity() == available_cpus()
        rep = zipkit.zip_by_extension(corpus(tmp_path / "src", stems=5), EXTS, tmp_path / "out",
                                      executor=quiet, workers=3, progress=False)
        assert rep.success and rep.workers == 3 and rep.executor == "Quiet"
    finally:
        quiet.pool.shutdown()
