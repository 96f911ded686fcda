"""MPI for real: a job under ``mpiexec -n 3 python -m mpi4py.futures`` with ``MPIPoolExecutor``
passed as ``executor=``, compared archive for archive with the local process pool.

mpi4py and the MPI runtime (MPICH's wheel, which ships ``mpiexec``) come from the ``mpi``
extra; no compiler, no system MPI. MPICH's hydra ``mpiexec`` runs as root as well.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safety_helpers import snapshot, subprocess_env, text_bytes, write
from signal_helpers import default_signals

import zipkit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

JOB = """
import json, sys
import zipkit
from mpi4py.futures import MPIPoolExecutor

if __name__ == "__main__":
    src, out = sys.argv[1], sys.argv[2]
    with MPIPoolExecutor() as pool:
        report = zipkit.zip_by_extension(src, ["dat", "log"], out, executor=pool, reproducible=True,
                                         progress=False)
    print(json.dumps({"executor": report.executor, "workers": report.workers,
                      "ok": [r.stem for r in report.ok], "failed": [r.stem for r in report.failed]}))
"""


def mpiexec() -> str:
    """The ``mpiexec`` that pip put beside this interpreter (the mpich wheel), else on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    assert found, "no mpiexec: install the mpi extra (pip install 'zipkit[mpi]')"
    return found


def test_an_mpi_job_writes_the_same_archives_as_the_local_pool(tmp_path: Path) -> None:
    import mpi4py  # noqa: F401 - the mpi extra, part of .[all]: a missing one fails, it does not skip
    src = tmp_path / "src"
    for i in range(12):
        write(src / f"case{i:02}.dat", text_bytes(200_000 + 50_000 * i, i))
        write(src / f"case{i:02}.log", os.urandom(5000))
    write(src / "big.dat", text_bytes(6 << 20, 99))
    snap = snapshot(src)
    local = zipkit.zip_by_extension(src, ["dat", "log"], tmp_path / "local", workers=2, reproducible=True,
                                    progress=False)
    assert local.success and local.executor == "process pool"
    (tmp_path / "job.py").write_text(JOB)
    done = subprocess.run([mpiexec(), "-n", "3", sys.executable, "-m", "mpi4py.futures",
                           str(tmp_path / "job.py"), str(src), str(tmp_path / "mpi")],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path, env=subprocess_env(),
                          preexec_fn=default_signals)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["executor"] == "MPIPoolExecutor" and result["workers"] == 2, result  # 3 ranks: 2 work
    assert result["failed"] == [] and sorted(result["ok"]) == sorted(r.stem for r in local.ok)
    mpi_zips = sorted(p.name for p in (tmp_path / "mpi").glob("*.zip"))
    assert mpi_zips == sorted(p.name for p in (tmp_path / "local").glob("*.zip")) and len(mpi_zips) == 13
    for name in mpi_zips:  # reproducible archives: byte for byte the same, whoever wrote them
        assert (tmp_path / "mpi" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    assert snapshot(src) == snap
    assert [n for n in os.listdir(tmp_path / "mpi") if not n.endswith(".zip")] == []
