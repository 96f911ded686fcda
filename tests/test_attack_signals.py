"""Attacks on stopping, killing and limits, as a Slurm, cron or systemd user meets them.

Cases the first tests of issue 13 did not write: a stderr that breaks under the progress bar,
a full disk as stdout/stderr, SIGHUP under ``nohup``, a script's own SIGTERM handler, signals in
quick succession, ``timeout -s KILL`` and the next run, values that pass a type check but cannot
work. Real processes, real signals, real files; each measured time to exit is printed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safety_helpers import (
    assert_nothing_lost,
    assert_processes_gone,
    descendants,
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

pytestmark = pytest.mark.timeout(180)


def _bash(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=cwd, timeout=170,
                          env=subprocess_env(PY=sys.executable), preexec_fn=default_signals)


def _small_stems(folder: Path, n: int) -> dict:
    for i in range(n):
        write(folder / f"s{i:04}.dat", f"stem {i}\n".encode() * 20)
    return snapshot(folder)


def _all_archived(src: Path, out: Path) -> None:
    want = sorted(p.with_suffix(".zip").name for p in src.glob("*.dat"))
    assert sorted(p.name for p in out.glob("*.zip")) == want
    assert not temp_files(out) and not list(out.glob(".zipkit-*"))


# --- the progress bar on a stderr that breaks ----------------------------------------------------

@pytest.mark.parametrize("redirect", ["2>&1 >/dev/null | head -c1 >/dev/null", "2>/dev/full >/dev/null",
                                      ">/dev/full 2>&1"])
def test_a_progress_bar_on_a_broken_or_full_stderr_does_not_stop_the_run(tmp_path: Path,
                                                                          redirect: str) -> None:
    """``zipkit … 2>&1 | head -c1`` and a stderr on a full disk: the bar's writes fail (EPIPE,
    ENOSPC). That once escaped from tqdm, ended the run after a few archives with exit 1 and
    left its temp folder (the bar's close failed before the clean-up)."""
    src, out = tmp_path / "src", tmp_path / "out"
    snap = _small_stems(src, 1500)
    r = _bash(f'"$PY" -m zipkit src --ext dat -o out {redirect}; echo "status=${{PIPESTATUS[0]}}"', tmp_path)
    assert r.stdout.strip().splitlines()[-1] == "status=0", (r.stdout[-500:], r.stderr[-2000:])
    _all_archived(src, out)
    assert_nothing_lost(snap, out)


# --- values that pass a type check but cannot work -------------------------------------------------

@pytest.mark.parametrize("args", [["--timeout", "1e-300"], ["--timeout", "0.0000001"],
                                  ["-j", "1", "--timeout", "1e-7"]])
def test_a_timeout_too_short_for_any_stem_is_refused_before_any_work(tmp_path: Path, args: list[str]) -> None:
    """1e-300 s once passed, made the output folder and timed out every stem (exit 1)."""
    _small_stems(tmp_path / "src", 3)
    r = subprocess.run(zipkit_cmd(tmp_path / "src", "--ext", "dat", "-o", tmp_path / "out", *args),
                       capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "argument --timeout: must be a finite number of seconds >= 0.001" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_config_timeout_too_short_is_refused_with_its_key(tmp_path: Path) -> None:
    _small_stems(tmp_path / "src", 3)
    cfg = tmp_path / "job.yml"
    cfg.write_text("analysis: {input_directory: src, filename: {extension: [dat]}}\n"
                   "file_management: {output_directory: out}\n"
                   "parallel_processing: {timeout_per_file: 1.0e-300}\n")
    r = subprocess.run(zipkit_cmd(cfg), capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert r.returncode == 2 and "parallel_processing.timeout_per_file" in r.stderr, r.stderr
    assert ">= 0.001" in r.stderr and not (tmp_path / "out").exists()


# --- SIGKILL of the parent, and a run started at once into the same folder ---------------------

def _stems(src: Path, n: int, size: int) -> dict:
    for i in range(n):
        write(src / f"c{i:02}.dat", text_bytes(size, i))
    return snapshot(src)


def _spawn(cmd: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(**env), start_new_session=True, preexec_fn=default_signals)


def _mid_run(proc: subprocess.Popen, out: Path) -> None:
    wait_until(lambda: list(out.glob("*.zip")) and temp_files(out) or proc.poll() is not None, 90,
               "an archive written and another in progress")
    assert proc.poll() is None, f"the run ended before the fault: {proc.communicate()}"


@pytest.mark.parametrize("death_signal", [True, False], ids=["pdeathsig", "parent-watch"])
def test_a_run_started_right_after_a_sigkill_removes_the_killed_runs_temp_folders(
        tmp_path: Path, death_signal: bool) -> None:
    """``kill -9`` then an immediate re-run (a requeued Slurm job, a retry loop), without waiting
    for the dying workers: forked workers held the killed run's live mark (a flock is shared by
    every copy of the descriptor), so the re-run found that run "live" and left its temp folders."""
    import zipkit

    src, out = tmp_path / "src", tmp_path / "out"
    snap = _stems(src, 8, 3 << 20)
    env = {} if death_signal else {"ZIPKIT_TEST_NO_PDEATHSIG": "1"}
    proc = _spawn(zipkit_cmd(src, "--ext", "dat", "-o", out, "-j", "2", "-c", "bzip2", "--delete-sources",
                             "--no-progress"), **env)
    try:
        _mid_run(proc, out)
        workers = descendants(proc.pid)
        proc.kill()
        proc.wait(10)
        rep = zipkit.zip_by_extension(src, "dat", out, workers=2, compression="bzip2", delete_sources=True,
                                      progress=False)
    finally:
        stop_process_tree(proc)
    assert rep.success, rep.summary_line()
    assert_processes_gone(workers, timeout=5)
    assert_nothing_lost(snap, out)  # also: no temp file left after the next run


# --- a stop signal while the CLI prints into a reader that stalled ---------------------------------

def _blocked_writing(pid: int) -> bool:
    try:
        return "pipe_write" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="needs Linux /proc")
def test_sigterm_while_the_report_is_printed_into_a_stalled_pipe_exits_143(tmp_path: Path) -> None:
    """The run is over and the CLI is writing its report table into a pipe nobody reads (a
    pager left open, a stuck log shipper). SIGTERM once left the process blocked there for good:
    the run's clean-up had set the shared handler to record signals, and nothing set it back."""
    import threading

    src, out = tmp_path / "src", tmp_path / "out"
    out.mkdir()
    for i in range(3000):  # every stem fails (a non-zip STEM.zip); --all: a table row each, after the run
        write(src / f"s{i:04}.dat", b"x")
        (out / f"s{i:04}.zip").write_text("not a zip")
    proc = subprocess.Popen(zipkit_cmd(src, "--ext", "dat", "-o", out, "-j", "2", "--no-progress", "--all"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(),
                            start_new_session=True, preexec_fn=default_signals)
    reading = threading.Event()
    reading.set()

    def drain() -> None:  # read stderr while the run runs (its warnings); stdout is never read
        while reading.is_set() and os.read(proc.stderr.fileno(), 1 << 16):
            pass

    threading.Thread(target=drain, daemon=True).start()
    try:
        wait_until(lambda: list(out.glob(".zipkit-*.lock.tmp")) or proc.poll() is not None, 60, "the run")
        wait_until(lambda: not list(out.glob(".zipkit-*.lock.tmp")), 120, "the run's end (live mark gone)")
        reading.clear()
        wait_until(lambda: _blocked_writing(proc.pid) or proc.poll() is not None, 60, "a blocked write")
        assert proc.poll() is None, "the CLI ended before its stderr stalled: nothing tested"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        seconds = time.monotonic() - t0
    finally:
        stop_process_tree(proc)
    print(f"\nTIME SIGTERM into a stalled report: exit after {seconds:.2f} s")
    assert proc.returncode == 143 and seconds < 5, (proc.returncode, seconds)
    assert not list(out.glob(".zipkit-*"))


# --- attacks that held: kept so that they keep holding --------------------------------------------

def _pooled_cli(src: Path, out: Path) -> list[str]:
    return zipkit_cmd(src, "--ext", "dat", "-o", out, "-j", "2", "-c", "bzip2", "--delete-sources",
                      "--no-progress")


def _sighup_ignored() -> None:
    default_signals()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def test_under_nohup_a_sighup_to_the_group_does_not_stop_the_run(tmp_path: Path) -> None:
    """``nohup zipkit … &`` and the terminal closes: SIGHUP is ignored by the user's choice, for
    the run and for its workers (a worker that took SIGHUP back would die and be retried)."""
    src, out = tmp_path / "src", tmp_path / "out"
    snap = _stems(src, 6, 3 << 20)
    proc = subprocess.Popen(_pooled_cli(src, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(), start_new_session=True, preexec_fn=_sighup_ignored)
    try:
        _mid_run(proc, out)
        os.killpg(proc.pid, signal.SIGHUP)
        _, stderr = proc.communicate(timeout=120)
    finally:
        stop_process_tree(proc)
    assert proc.returncode == 0, stderr
    assert "restarting the pool" not in stderr and "Traceback" not in stderr, stderr
    assert sorted(p.name for p in out.glob("*.zip")) == [f"c{i:02}.zip" for i in range(6)]
    assert_nothing_lost(snap, out)


@pytest.mark.parametrize("fault", ["sigterm-then-sigint", "workers-sigstopped"])
def test_stops_that_race_the_clean_up_exit_143_at_once(tmp_path: Path, fault: str) -> None:
    """SIGTERM then SIGINT 50 ms later (a scheduler, then an impatient user); or SIGTERM while
    every worker is SIGSTOPped (a debugger, ``kill -STOP``): 143, under 5 s, nobody left."""
    src, out = tmp_path / "src", tmp_path / "out"
    snap = _stems(src, 6, 3 << 20)
    proc = _spawn(_pooled_cli(src, out))
    try:
        _mid_run(proc, out)
        family = descendants(proc.pid)
        if fault == "workers-sigstopped":
            for p in family:
                os.kill(p.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        if fault == "sigterm-then-sigint":
            time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        seconds = time.monotonic() - t0
    finally:
        stop_process_tree(proc)
    print(f"\nTIME {fault}: exit after {seconds:.2f} s")
    assert proc.returncode == 143 and seconds < 5, (proc.returncode, seconds, stderr[-2000:])
    assert "Traceback" not in stderr
    assert_processes_gone(family, timeout=5)
    assert_nothing_lost(snap, out)


def test_a_scripts_own_sigterm_handler_is_kept_and_called(tmp_path: Path) -> None:
    """A library script that handles SIGTERM itself (here: exit 42): zipkit leaves the handler in
    place; the handler's SystemExit still stops the workers and removes the temp files."""
    src, out = tmp_path / "src", tmp_path / "out"
    snap = _stems(src, 6, 3 << 20)
    script = tmp_path / "job.py"
    script.write_text("import signal, sys, zipkit\n"
                      "def handler(signum, frame):\n"
                      "    raise SystemExit(42)\n"
                      "signal.signal(signal.SIGTERM, handler)\n"
                      f"zipkit.zip_by_extension({str(src)!r}, 'dat', {str(out)!r}, workers=2, "
                      "compression='bzip2', delete_sources=True, progress=False)\n")
    proc = _spawn([sys.executable, str(script)])
    try:
        _mid_run(proc, out)
        family = descendants(proc.pid)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        seconds = time.monotonic() - t0
    finally:
        stop_process_tree(proc)
    assert proc.returncode == 42 and seconds < 5, (proc.returncode, seconds, stderr[-2000:])
    assert_processes_gone(family, timeout=5)
    assert_nothing_lost(snap, out)


def test_timeout_s_kill_then_the_next_run_leaves_nothing_behind(tmp_path: Path) -> None:
    """``timeout -s KILL 1 zipkit …`` kills the whole group mid-run; the next run into the same
    folder removes what the killed one left and completes, nothing lost."""
    src, out = tmp_path / "src", tmp_path / "out"
    snap = _stems(src, 16, 3 << 20)  # 48 MiB of bzip2 on 2 workers: several seconds, never 1
    r = subprocess.run(["timeout", "-s", "KILL", "1", *_pooled_cli(src, out)], capture_output=True, text=True,
                       env=subprocess_env(), timeout=60, preexec_fn=default_signals)
    assert r.returncode in (137, -9), "the run ended before timeout killed it: nothing tested"
    r = subprocess.run(_pooled_cli(src, out), capture_output=True, text=True, env=subprocess_env(),
                       timeout=120, preexec_fn=default_signals)
    assert r.returncode == 0, r.stderr
    assert_nothing_lost(snap, out)
