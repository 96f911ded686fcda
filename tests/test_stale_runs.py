"""A gone run's temp folders are removed by the next run even while another process holds the
gone run's live mark for a moment (a dying worker passing its gate, a given executor's worker
probing it): the race that left temp folders behind after ``kill -9`` and an immediate re-run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import zipkit
from tests.safety_helpers import assert_no_temp_files, temp_files
from tests.signal_helpers import default_signals
from zipkit import _tempfiles

RUN = "0123456789ab"  # the id of a run that was killed: its process is gone

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_SH)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def run_temps(out: Path, run: str) -> Path:
    """Run ``run``'s live mark (not held) and a worker's temp folder and file in ``out``: what
    ``kill -9`` leaves, or what a live run has once a process holds the mark."""
    out.mkdir(parents=True, exist_ok=True)
    mark = _tempfiles.lock_path(out, run)
    mark.write_bytes(b"")
    folder = out / f".zipkit-{run}-999999.tmp"
    folder.mkdir()
    (folder / f".zipkit-{run}-999999-0.tmp").write_bytes(b"half an archive")
    return mark


def _killed_run(out: Path) -> Path:
    return run_temps(out, RUN)


def _hold(mark: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(mark), str(seconds)], stdout=subprocess.PIPE,
                            text=True, preexec_fn=default_signals)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_a_moment_s_hold_on_a_gone_run_s_mark_does_not_keep_its_temp_folders(tmp_path: Path) -> None:
    out = tmp_path / "out"
    mark = _killed_run(out)
    holder = _hold(mark, 0.02)  # shorter than the grace: a worker passing its gate
    try:
        assert _tempfiles.remove_stale(out, keep="another") == [RUN]
    finally:
        holder.wait(10)
    assert_no_temp_files(out)


def test_a_run_started_while_a_dying_worker_holds_the_mark_leaves_nothing(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    (src / "a.dat").write_bytes(b"a" * 1000)
    holder = _hold(_killed_run(out), 0.02)
    try:
        report = zipkit.zip_by_extension(src, "dat", out, workers=1, progress=False)
    finally:
        holder.wait(10)
    assert report.success
    assert_no_temp_files(src, out)
    assert sorted(p.name for p in out.iterdir()) == ["a.zip"]


def test_a_mark_held_for_the_whole_sweep_is_a_live_run_and_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    mark = _killed_run(out)
    holder = _hold(mark, 30)  # a live run's process holds its mark for the whole run
    try:
        t0 = time.monotonic()
        assert _tempfiles.remove_stale(out, keep="another") == []
        waited = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait(10)
    assert len(temp_files(out)) == 3  # the mark, the folder and its file: all kept
    assert waited < _tempfiles.STALE_GRACE + 2  # it waits the grace, not the holder out


PAUSED_SWEEP = """
import os, sys
from pathlib import Path
from zipkit import _tempfiles
real = os.listdir
def listdir(path):  # the sweep has listed the folder; it goes on when the test says so
    names = real(path)
    print("listed", flush=True)
    sys.stdin.readline()
    return names
_tempfiles.os.listdir = listdir
print(_tempfiles.remove_stale(Path(sys.argv[1]), keep="sweeper"), flush=True)
"""


def test_a_sweep_that_lists_a_closing_run_between_its_mark_and_its_temp_folders_takes_nothing(
        tmp_path: Path, monkeypatch) -> None:
    """A run closes by unlinking its live mark, then removing its temp folders. A sweep by another
    process that listed the folder in between saw temp folders and no mark, and took the run for
    gone (the flake in test_sweepers_running_all_through_a_live_run_and_its_close_take_nothing_of_it,
    1 run in ~20 on 3.11). Driven here: the sweep lists exactly then."""
    out = tmp_path / "out"
    out.mkdir()
    temps = _tempfiles.RunTemps(out, "c105ed0000aa")
    temps.open()
    fd, path = _tempfiles.temp_file(out, "c105ed0000aa")
    os.close(fd)
    sweeps: list[str] = []
    real_lock_within = _tempfiles._lock_within

    def lock_within(fd: int, seconds: float) -> bool:  # in close(): the mark unlinked, the folders not gone
        assert not _tempfiles.lock_path(out, "c105ed0000aa").exists() and path.exists()
        sweep = subprocess.Popen([sys.executable, "-c", PAUSED_SWEEP, str(out)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, preexec_fn=default_signals)
        assert sweep.stdin is not None and sweep.stdout is not None
        assert sweep.stdout.readline() == "listed\n"
        sweep.stdin.write("\n")
        sweep.stdin.close()
        try:
            return real_lock_within(fd, seconds)
        finally:
            sweeps.append(sweep.stdout)  # type: ignore[arg-type]

    monkeypatch.setattr(_tempfiles, "_lock_within", lock_within)
    assert temps.close() == 1  # the run removed its own temp file
    assert [s.readline() for s in sweeps] == ["[]\n"]  # before: ['c105ed0000aa'], taken for gone
    assert_no_temp_files(out)


DELETER = """
import sys, time
from pathlib import Path
from zipkit import _tempfiles
out, run = Path(sys.argv[1]), sys.argv[2]
with _tempfiles.supervised(run), _tempfiles.deleting(out, run) as allowed:
    print("deleting", allowed, flush=True)
    time.sleep(1.0)  # unlinking a stem's many sources, longer than the sweep's grace
"""

SWEEP = """
import sys
from pathlib import Path
from zipkit import _tempfiles
print(_tempfiles.remove_stale(Path(sys.argv[1]), keep="0ther0run000"), flush=True)
"""


def test_a_run_whose_close_waits_for_a_task_elsewhere_is_not_swept_meanwhile(tmp_path: Path) -> None:
    """A closing run waits (up to CLOSE_WAIT) for a task in another process that is deleting its
    sources, with the live mark already unlinked; another run starting then must not take the
    closing run's temp files for a gone run's. (Before: a sweep after the 0.25 s grace did.)"""
    out = tmp_path / "out"
    out.mkdir()
    run = "c105ed00bb11"
    temps = _tempfiles.RunTemps(out, run)
    temps.open()
    fd, path = _tempfiles.temp_file(out, run)  # a task's archive in the making
    os.write(fd, b"half an archive")
    os.close(fd)
    deleter = subprocess.Popen([sys.executable, "-c", DELETER, str(out), run], stdout=subprocess.PIPE,
                               text=True, preexec_fn=default_signals)
    assert deleter.stdout is not None and deleter.stdout.readline() == "deleting True\n"
    seen: dict[str, object] = {}

    def sweep_once_the_mark_is_gone() -> None:
        while _tempfiles.lock_path(out, run).exists():
            time.sleep(0.001)
        done = subprocess.run([sys.executable, "-c", SWEEP, str(out)], capture_output=True, text=True,
                              preexec_fn=default_signals, timeout=30)
        seen["swept"], seen["kept"] = done.stdout, path.exists()

    sweeper = threading.Thread(target=sweep_once_the_mark_is_gone)
    sweeper.start()
    removed = temps.close()
    sweeper.join(30)
    deleter.wait(30)
    assert seen == {"swept": "[]\n", "kept": True}, seen  # before: the run's id, and its file gone
    assert removed == 1
    assert_no_temp_files(out)


WATCH = """
import fcntl, os, sys
path, stop = sys.argv[1], sys.argv[2]
print("watching", flush=True)
unheld = 0
while not os.path.exists(stop):
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        continue
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a sweep does: it took the run for gone
        unheld += 1
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
print(unheld, flush=True)
"""


def test_a_live_mark_is_held_from_the_moment_it_appears(tmp_path: Path, monkeypatch) -> None:
    """A new run's mark is made unnamed, locked, then linked into place. Plain ``os.link`` of
    ``/proc/self/fd/N`` fails (EXDEV: it links the symlink), so every mark used to be created,
    then locked, and a sweep in between took the new run for gone (the sweeper test's flake; in
    /proc/locks the sweep held the mark and the run waited for it). The lock is slowed to 0.3 s
    here; a process that watches the mark must never find it unheld."""
    import fcntl

    out = tmp_path / "out"
    out.mkdir()
    mark, stop = _tempfiles.lock_path(out, "0new0run0000"), tmp_path / "stop"
    watcher = subprocess.Popen([sys.executable, "-c", WATCH, str(mark), str(stop)], stdout=subprocess.PIPE,
                               text=True, preexec_fn=default_signals)
    assert watcher.stdout is not None and watcher.stdout.readline() == "watching\n"
    real = _tempfiles._flock

    def slow_shared_lock(fd: int, how: int) -> bool:
        if how == fcntl.LOCK_SH:
            time.sleep(0.3)
        return real(fd, how)

    monkeypatch.setattr(_tempfiles, "_flock", slow_shared_lock)
    fd = _tempfiles._create_held(mark)
    try:
        time.sleep(0.1)
        stop.write_bytes(b"")
        assert watcher.stdout.readline() == "0\n"  # before: 1 or more
        assert os.stat(mark).st_ino == os.fstat(fd).st_ino
    finally:
        os.close(fd)
        watcher.wait(10)
