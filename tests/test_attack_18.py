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
from tests.test_stale_runs import run_temps
from tests.test_stuck_pool import stuck_run
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
    return run_temps(out, RUN)


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


STUCK_DELETING = """
import json, sys, zipkit
rep = zipkit.zip_by_extension(sys.argv[1], "dat", sys.argv[2], stems=["big", "small"], workers=2,
                              delete_sources=True, progress=False)
print(json.dumps({s: [rep[s].status, len(rep[s].deleted)] for s in ("big", "small")}), flush=True)
"""




def _big_and_small(src: Path) -> None:
    for i in range(20_000):  # the result names every file: far more than a pipe holds
        write(src / f"big_{i:05}.dat", b"%d" % i)
    write(src / "small_1.dat", b"small")


def _stuck_over_an_old_archive(tmp_path: Path, script: str) -> tuple[dict, list[str]]:
    """A stuck run (``stuck_run``) over an old big.zip holding ``old_only.dat``: what the run said
    per stem, and the members of big.zip afterwards."""
    import json
    import zipfile

    src, out = tmp_path / "src", tmp_path / "out"
    _big_and_small(src)
    out.mkdir()
    with zipfile.ZipFile(out / "big.zip", "w") as zf:
        zf.writestr("old_only.dat", b"a member of the old archive")
    time.sleep(0.01)
    rc, stdout, stderr = stuck_run(script, src, out)
    assert rc == 0, stderr[-3000:]
    assert "worker process died; restarting the pool" in stderr, stderr[-3000:]
    with zipfile.ZipFile(out / "big.zip") as zf:
        return json.loads(stdout.strip().splitlines()[-1]), zf.namelist()


def test_a_stuck_pool_broken_by_unstick_reports_the_deletions_its_workers_made(tmp_path: Path) -> None:
    """bd58add with --delete-sources: the big stem's worker deleted its sources, then died while
    sending its result; the pool is broken by unstick (the other worker SIGTERMed). The report
    must name exactly the sources that are gone: deleted and reported kept loses the user's
    knowledge, reported deleted and still there is a lie."""
    import json

    src, out = tmp_path / "src", tmp_path / "out"
    _big_and_small(src)
    snap = snapshot(src)
    rc, stdout, stderr = stuck_run(STUCK_DELETING, src, out)
    assert rc == 0, stderr[-3000:]
    said = json.loads(stdout.strip().splitlines()[-1])
    left = {p.name for p in src.iterdir()}
    big_left = sum(1 for n in left if n.startswith("big_"))
    assert said["big"] == ["ok", 20_000 - big_left], (said, big_left)
    assert said["small"] == ["ok", 0 if "small_1.dat" in left else 1], (said, left)
    assert "worker process died; restarting the pool" in stderr, stderr[-3000:]  # the unstick path
    assert big_left == 0  # the worker had deleted them all before it died sending its result
    assert_nothing_lost(snap, out)


STUCK_REPLACING = """
import json, sys, zipkit
rep = zipkit.zip_by_extension(sys.argv[1], "dat", sys.argv[2], stems=["big", "small"], workers=2,
                              overwrite="replace", progress=False)
print(json.dumps({s: [rep[s].status, list(rep[s].dropped)] for s in ("big", "small")}), flush=True)
"""


def test_a_stuck_pool_broken_by_unstick_still_lists_the_members_replace_dropped(tmp_path: Path) -> None:
    """DESIGN: ``replace`` is the one policy that removes members, and the members dropped are
    listed in the report. The big stem's worker put its archive in place (dropping a member of
    the old one), then died sending its result: the stem is found finished on disk, and its
    report must still name the member it dropped."""
    said, names = _stuck_over_an_old_archive(tmp_path, STUCK_REPLACING)
    assert "old_only.dat" not in names  # dropped on disk ...
    assert said["big"] == ["ok", ["old_only.dat"]], said  # ... and so in the report


STUCK_MERGING = STUCK_REPLACING.replace('overwrite="replace"', 'overwrite="always"').replace(
    "list(rep[s].dropped)", "rep[s].carried")


def test_a_stuck_pool_broken_by_unstick_still_counts_the_members_a_merge_carried(tmp_path: Path) -> None:
    """DESIGN: with ``always`` the report says per stem how many members were carried over; so
    too for a stem found finished on disk after its worker died sending its result."""
    said, names = _stuck_over_an_old_archive(tmp_path, STUCK_MERGING)
    assert "old_only.dat" in names
    assert said["big"] == ["ok", 1], said


SWEEPER = """
import sys, time
from pathlib import Path
from zipkit import _tempfiles
out, stop = Path(sys.argv[1]), Path(sys.argv[2])
print("sweeping", flush=True)
swept, sweeps = set(), 0
while not stop.exists():
    swept.update(_tempfiles.remove_stale(out, keep="sweeper"))
    sweeps += 1
print(sorted(swept), sweeps, flush=True)
"""

RUN_MANY = """
import sys, zipkit
rep = zipkit.zip_by_extension(sys.argv[1], "dat", sys.argv[2], workers=2, delete_sources=True,
                              progress=False)
print("ok" if rep.success else "failed", len(rep.ok), flush=True)
"""


def test_sweepers_running_all_through_a_live_run_and_its_close_take_nothing_of_it(tmp_path: Path) -> None:
    """Two other processes sweep the output folder over and over while a real run writes into it,
    deletes its sources and closes: the run's temp files and mark are never taken for a gone
    run's (every stem ok, nothing lost, no sweep names the run)."""
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(300):
        write(src / f"s{i:03}.dat", text_bytes(20_000, seed=i))
    snap = snapshot(src)
    out.mkdir()
    stop = tmp_path / "stop"
    sweepers = [_start(SWEEPER, str(out), str(stop), ready="sweeping") for _ in range(2)]
    try:
        run = subprocess.run([sys.executable, "-c", RUN_MANY, str(src), str(out)], capture_output=True,
                             text=True, timeout=120, env=subprocess_env(), preexec_fn=default_signals)
        stop.write_bytes(b"")  # the run has closed: the sweeps saw all of it
        assert run.returncode == 0 and run.stdout.split() == ["ok", "300"], run.stderr[-3000:]
        for p in sweepers:
            assert p.stdout is not None
            swept, sweeps = p.stdout.readline().rsplit(" ", 1)
            assert swept == "[]" and int(sweeps) > 10, (swept, sweeps)  # never took the live run for gone
            p.wait(30)
    finally:
        for p in sweepers:
            p.kill()
            p.wait(10)
    assert_nothing_lost(snap, out)
