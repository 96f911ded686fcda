"""docs/hpc.md's Slurm batch script, run as written (``srun`` and ``sbatch`` stood in for).

The first job gets the early SIGTERM (``--signal=B:TERM@120``: to the batch script) mid-run; it
must pass it on, zipkit must stop clean with exit 143, and the script must resubmit itself. The
second job, as submitted, finishes the rest: every source byte ends in an archive.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safety_helpers import (
    REPO,
    assert_nothing_lost,
    assert_processes_gone,
    descendants,
    member_hashes,
    snapshot,
    stop_process_tree,
    subprocess_env,
    temp_files,
    text_bytes,
    wait_until,
    write,
)
from signal_helpers import default_signals

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SRUN = """#!/bin/sh
# srun's stand-in: drop its options, run the task here
while [ $# -gt 0 ]; do case "$1" in -*) shift ;; *) break ;; esac; done
exec "$@"
"""
SBATCH = """#!/bin/sh
echo "$@" >> "$SBATCH_LOG"
"""


def slurm_script() -> str:
    page = (REPO / "docs" / "hpc.md").read_text()
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", page, re.S) if "#SBATCH" in b]
    assert len(blocks) == 1, "docs/hpc.md should hold one Slurm batch script"
    return blocks[0]


def test_the_slurm_script_stops_before_the_limit_and_its_rerun_finishes(tmp_path: Path) -> None:
    script = slurm_script()
    assert "#SBATCH --signal=B:TERM@" in script and "--overwrite update" in script
    job = tmp_path / "zip-cases.sh"
    job.write_text(script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", SRUN), ("sbatch", SBATCH)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    if not (Path(sys.executable).parent / "zipkit").exists():  # the console script, as pip installs it
        (bin_dir / "zipkit").write_text(f'#!/bin/sh\nexec {sys.executable} -m zipkit "$@"\n')
        (bin_dir / "zipkit").chmod(0o755)
    src, out = tmp_path / "sims" / "csv", tmp_path / "sims" / "zip"
    for i in range(10):
        write(src / f"case{i}_jacket.csv", text_bytes(3 << 20, i))
    snap = snapshot(src)
    env = subprocess_env(SRC=str(src), OUT=str(out), SLURM_CPUS_PER_TASK="2", SLURM_JOB_ID="1001",
                         SBATCH_LOG=str(tmp_path / "sbatch.log"),
                         PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent),
                                               os.environ.get("PATH", "")]))

    def start() -> subprocess.Popen:
        return subprocess.Popen(["bash", str(job)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=tmp_path, env=env, start_new_session=True,
                                preexec_fn=default_signals)

    first = start()
    try:
        wait_until(lambda: list(out.glob("*.zip")) and temp_files(out) or first.poll() is not None,
                   90, "the first job mid-run")
        assert first.poll() is None, first.communicate()
        family = descendants(first.pid)
        t0 = time.monotonic()
        first.send_signal(signal.SIGTERM)  # B:TERM — the batch script alone
        stdout, stderr = first.communicate(timeout=60)
        seconds = time.monotonic() - t0
    finally:
        stop_process_tree(first)
    print(f"\nTIME Slurm script, SIGTERM to the batch shell: job ended after {seconds:.2f} s")
    assert first.returncode == 143, f"exit {first.returncode}\n{stdout}\n{stderr}"
    assert seconds < 5
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr, stderr
    assert (out / "zipkit-errors-1001.json").is_file()
    assert_processes_gone(family, timeout=5)
    assert (tmp_path / "sbatch.log").read_text().split() == [str(job)], "the job did not resubmit itself"
    left = [p for p in snap if p.exists()]
    assert left, "the first job finished everything: the stop came too late to test the re-run"

    second = start()  # the resubmitted job
    try:
        stdout, stderr = second.communicate(timeout=180)
    finally:
        stop_process_tree(second)
    assert second.returncode == 0, f"exit {second.returncode}\n{stdout}\n{stderr}"
    assert (tmp_path / "sbatch.log").read_text().split() == [str(job)], "a finished job resubmitted"
    assert sorted(p.name for p in out.glob("*.zip")) == [f"case{i}_jacket.zip" for i in range(10)]
    where = assert_nothing_lost(snap, out)
    # a source still there belongs to a stem stopped between its archive and its deletes: the
    # re-run skips that up-to-date archive (update), which holds the source's bytes
    for path, place in where.items():
        if place == "source":
            assert path.name in member_hashes(out / f"{path.stem}.zip"), f"{path.name} in no archive"
