"""A worker killed while it sends its result home (an OOM kill, a scheduler's SIGKILL) leaves half
a message in the pool's result pipe. concurrent.futures' manager thread then waits for the rest
forever and the other workers for the pipe's lock: the pool never breaks, and the run hung. The
run must notice the dead worker itself and carry on as for any lost worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safety_helpers import (
    assert_nothing_lost,
    is_gone,
    pool_workers,
    snapshot,
    stop_process_tree,
    subprocess_env,
    temp_files,
    write,
)
from signal_helpers import default_signals

pytestmark = pytest.mark.timeout(180)

SCRIPT = """
import sys, zipkit
rep = zipkit.zip_by_extension(sys.argv[1], "dat", sys.argv[2], stems=["big", "small"], workers=2,
                              progress=False)
print("ok" if rep.success else "failed", len(rep.ok), rep["big"].attempts, flush=True)
"""


def _wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


def stuck_run(script: str, src: Path, out: Path, *args: str) -> tuple[int, str, str]:
    """Run ``script`` (a run of stems big and small, 2 workers) in a subprocess and leave its pool
    stuck the parent stopped until the big stem's worker blocks
    sending its result, that worker killed there; then let the run finish."""
    proc = subprocess.Popen([sys.executable, "-c", script, str(src), str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals, env=subprocess_env())
    stopped = False
    try:
        deadline = time.monotonic() + 90
        while not any(p.parent != out for p in temp_files(out)):
            assert proc.poll() is None and time.monotonic() < deadline, "the big stem never started"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGSTOP)
        stopped = True
        sender = None
        while sender is None:
            assert time.monotonic() < deadline, "no worker blocked sending its result"
            sender = next((w for w in pool_workers(proc.pid) if "pipe_write" in _wchan(w.pid)), None)
            time.sleep(0.005)
        sender.kill()
        while not is_gone(sender):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGCONT)
        stopped = False
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if stopped:
            os.kill(proc.pid, signal.SIGCONT)
        stop_process_tree(proc)
    return proc.returncode, stdout, stderr


def test_a_worker_killed_while_it_sends_its_result_does_not_hang_the_run(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(20_000):  # the result names every file: far more than a pipe holds (64 KiB)
        write(src / f"big_{i:05}.dat", b"%d" % i)
    write(src / "small_1.dat", b"small")
    snap = snapshot(src)
    returncode, stdout, stderr = stuck_run(SCRIPT, src, out)
    assert returncode == 0, stderr[-3000:]
    # the big stem's archive was in place when its worker died: found finished, not run again
    assert stdout.split()[:2] == ["ok", "2"], (stdout, stderr[-3000:])
    assert "worker process died; restarting the pool" in stderr, stderr[-3000:]
    assert_nothing_lost(snap, out)
