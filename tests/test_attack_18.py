"""Attacks on two fixes of issue 18: the stale sweep's grace (b1b0357) and the stuck pool's
unstick (bd58add). Real processes, real files."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.safety_helpers import (
    assert_nothing_lost,
    snapshot,
    subprocess_env,
    temp_files,
    text_bytes,
    wait_until,
    write,
)
from tests.signal_helpers import default_signals
from zipkit import _tempfiles

pytestmark = pytest.mark.timeout(180)

RUN = "fedcba987654"

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_SH)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""

# what the tasks of a live run do to its mark all the time: pass the gate (a brief shared hold)
# and probe it between stems (run_open: a brief exclusive attempt)
CHURN = """
import fcntl, os, sys, time
from pathlib import Path
from zipkit import _tempfiles
mark, end = sys.argv[1], time.monotonic() + float(sys.argv[2])
print("churning", flush=True)
while time.monotonic() < end:
    fd = os.open(mark, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    time.sleep(0.001)
    os.close(fd)
    _tempfiles.run_open(Path(mark).parent, sys.argv[3])
"""


def _live_run(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    mark = _tempfiles.lock_path(out, RUN)
    mark.write_bytes(b"")
    folder = out / f".zipkit-{RUN}-999999.tmp"
    folder.mkdir()
    (folder / f".zipkit-{RUN}-999999-0.tmp").write_bytes(b"half of a live run's archive")
    return mark


def _start(code: str, *args: str, ready: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True,
                            preexec_fn=default_signals, env=subprocess_env())
    assert proc.stdout is not None and proc.stdout.readline() == ready + "\n"
    return proc


def test_a_live_run_whose_tasks_keep_passing_its_gate_is_never_swept(tmp_path: Path) -> None:
    """The grace waits for brief holds to end: a live run's owner holds its mark throughout, so
    however busy its tasks are with the gate, sweeps (several at once) never take it for gone."""
    out = tmp_path / "out"
    mark = _live_run(out)
    owner = _start(HOLD, str(mark), "60", ready="held")
    churn = [_start(CHURN, str(mark), "4", RUN, ready="churning") for _ in range(2)]
    try:
        end = time.monotonic() + 3
        while time.monotonic() < end:
            assert _tempfiles.remove_stale(out, keep="another") == []
            assert len(temp_files(out)) == 3  # the mark, the folder and its half-written file
    finally:
        for p in [owner, *churn]:
            p.kill()
            p.wait(10)
    assert len(temp_files(out)) == 3


GIVEN_POOL = """
import multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor
import zipkit
if __name__ == "__main__":
    ex = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    print(ex.submit(os.getpid).result(), flush=True)  # the worker, forked before the run
    zipkit.zip_by_extension(sys.argv[1], "dat", sys.argv[2], executor=ex, delete_sources=True,
                            level=9, progress=False)
"""


def test_a_given_pool_s_worker_deletes_nothing_once_its_run_is_killed(tmp_path: Path) -> None:
    """DESIGN: a worker whose parent died deletes nothing more. A given ProcessPoolExecutor's
    worker (a child of the run's process) that finishes its stem after ``kill -9`` of the run
    must keep the stem's sources (the run that could report the deletion is gone)."""
    src, out = tmp_path / "src", tmp_path / "out"
    write(src / "big.dat", text_bytes(48 << 20))
    snap = snapshot(src)
    script = tmp_path / "given_pool.py"
    script.write_text(GIVEN_POOL)
    proc = subprocess.Popen([sys.executable, str(script), str(src), str(out)], stdout=subprocess.PIPE,
                            text=True, preexec_fn=default_signals, env=subprocess_env())
    worker = 0
    try:
        assert proc.stdout is not None
        worker = int(proc.stdout.readline())
        wait_until(lambda: any(p.parent != out for p in temp_files(out)), 60, "the archive begun")
        os.kill(proc.pid, signal.SIGKILL)  # the run dies; its given pool's worker carries on
        proc.wait(10)
        wait_until(lambda: (out / "big.zip").exists(), 90, "the worker to put its archive in place")
        time.sleep(1.0)  # time for the deletes it would do
        assert (src / "big.dat").exists(), "a worker of a killed run deleted its stem's sources"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if worker:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
    _tempfiles.remove_stale(out, keep="next")  # the next run into the folder sweeps the dead one
    assert_nothing_lost(snap, out)


def test_a_given_pool_s_worker_of_a_live_run_still_deletes_its_sources(tmp_path: Path) -> None:
    """The other side of the gate: while the run lives, a given pool's worker deletes as asked."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import zipkit

    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(4):
        write(src / f"s{i}.dat", b"x%d" % i * 1000)
    snap = snapshot(src)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as ex:
        rep = zipkit.zip_by_extension(src, "dat", out, executor=ex, delete_sources=True, progress=False)
    assert rep.success
    assert sorted(p.name for p in src.iterdir()) == []
    assert all(r.deleted for r in rep.ok)
    assert_nothing_lost(snap, out)


def test_a_run_s_start_waits_the_grace_once_not_once_per_live_run(tmp_path: Path) -> None:
    """Every run's start sweeps: with the grace waited in turn for each live run's mark (held
    throughout, so each waits the whole grace), k live runs into one folder (a job array) cost
    each new run k * STALE_GRACE before it begins. Holds that end within the grace end at once
    for all marks: one grace is enough."""
    out = tmp_path / "out"
    out.mkdir()
    holders = []
    try:
        for i in range(12):
            mark = _tempfiles.lock_path(out, f"{i:012x}")
            mark.write_bytes(b"")
            holders.append(_start(HOLD, str(mark), "60", ready="held"))
        t0 = time.monotonic()
        assert _tempfiles.remove_stale(out, keep="another") == []
        waited = time.monotonic() - t0
    finally:
        for p in holders:
            p.kill()
            p.wait(10)
    assert waited < 2 * _tempfiles.STALE_GRACE + 0.5, f"the sweep took {waited:.2f} s for 12 live runs"
