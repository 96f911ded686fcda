"""When workers cannot start, every stem is zipped anyway: in this process, one at a time, with
one warning that names the cause and the fix. And worker counts the process limits cannot hold
are lowered, never a hang. Each subject is a real script in a real subprocess."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from safety_helpers import stop_process_tree, subprocess_env

pytestmark = pytest.mark.timeout(300)


def _corpus(src: Path, stems: int) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    for i in range(stems):
        (src / f"c{i:04}.a").write_bytes(b"a,%d\n" % i * 200)
        (src / f"c{i:04}.b").write_bytes(b"b,%d\n" % i * 100)
    return src


def _archives(out: Path) -> int:
    n = 0
    for z in out.glob("*.zip"):
        with zipfile.ZipFile(z) as zf:
            assert zf.testzip() is None and len(zf.namelist()) == 2
        n += 1
    return n


def _run(args: list[str], *, limits: dict[int, int] | None = None, timeout: float = 240,
         cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    def preexec() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for which, n in (limits or {}).items():
            resource.setrlimit(which, (n, n))

    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env(), preexec_fn=preexec, cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_tree(proc)  # the subject and any worker it left
        out, err = proc.communicate()
        pytest.fail(f"{args[-1]} still running after {timeout} s (a hang); stderr:\n{err[-3000:]}")
    return subprocess.CompletedProcess(args, proc.returncode, out, err), time.perf_counter() - t0


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


UNGUARDED = """
import threading, zipkit
threading.Thread(target=threading.Event().wait, daemon=True).start()
r = zipkit.zip_by_extension({src!r}, ["a", "b"], {out!r}, progress=False{extra})
print(r.summary_line())
print("NOTES", r.notes)
"""


def _script(tmp_path: Path, name: str, body: str, **fmt) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body.format(**fmt)))
    return path


def test_an_unguarded_threaded_script_zips_every_stem_in_process(tmp_path: Path) -> None:
    """Issue 19's script, run as a file: a thread rules out fork, and forkserver workers would
    re-run the unguarded script. All 50 stems are archived, with one warning line, no traceback,
    in about the time of workers=1."""
    src = _corpus(tmp_path / "src", 50)
    script = _script(tmp_path, "job.py", UNGUARDED, src=str(src), out=str(tmp_path / "out"), extra="")
    done, seconds = _run([sys.executable, str(script)])
    assert done.returncode == 0, done.stderr
    assert "50 ok of 50" in done.stdout and "1 worker(s), in-process" in done.stdout
    lines = _warnings(done.stderr)
    assert len(lines) == 1, done.stderr
    assert "sequential fallback" in lines[0] and 'if __name__ == "__main__":' in lines[0]
    assert "workers=1" in lines[0]
    assert "Traceback" not in done.stderr
    assert "sequential fallback: this script calls zipkit outside" in done.stdout  # in the report
    assert _archives(tmp_path / "out") == 50
    ref = _script(tmp_path, "ref.py", UNGUARDED, src=str(src), out=str(tmp_path / "ref"),
                  extra=", workers=1")
    base, base_seconds = _run([sys.executable, str(ref)])
    assert base.returncode == 0 and base.stderr == "", base.stderr
    assert seconds < 2 * base_seconds + 1.0, (seconds, base_seconds)


def test_a_guarded_threaded_script_still_uses_the_pool(tmp_path: Path) -> None:
    src = _corpus(tmp_path / "src", 20)
    body = UNGUARDED.replace("r = zipkit", "def main():\n    r = zipkit").replace(
        "\nprint(", "\n    print(") + '\nif __name__ == "__main__":\n    main()\n'
    script = _script(tmp_path, "job.py", body, src=str(src), out=str(tmp_path / "out"), extra=", workers=2")
    done, _ = _run([sys.executable, str(script)])
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "20 ok of 20" in done.stdout and "process pool" in done.stdout
    assert "fallback" not in done.stdout


def test_workers_that_die_before_any_stem_are_detected(tmp_path: Path) -> None:
    """The call is guarded, but the script refuses to be imported under another name, so the
    forkserver workers that re-import it die: the run sees workers that exited before starting
    any stem, and zips everything here without restarting pools. (A script that deleted itself
    is now caught before any worker starts: tests/test_attack_pool.py.)"""
    src = _corpus(tmp_path / "src", 30)
    refuse = 'if __name__ != "__main__":\n    raise ImportError("run this script, do not import it")\n'
    call = UNGUARDED.split("\nr = ", 1)
    body = call[0] + "\n" + refuse + 'if __name__ == "__main__":\n' + "".join(
        "    " + line + "\n" for line in ("r = " + call[1]).strip().splitlines())
    script = _script(tmp_path, "refuses.py", body, src=str(src), out=str(tmp_path / "out"),
                     extra=", workers=2")
    done, _ = _run([sys.executable, str(script)])
    assert done.returncode == 0, done.stderr
    assert "30 ok of 30" in done.stdout
    # the dying workers print their tracebacks while the run goes on: lines may interleave
    assert done.stderr.count("zipkit:") == 1, done.stderr
    assert "sequential fallback: the worker processes exited before they started any stem" in done.stderr
    assert "restarting the pool" not in done.stderr
    assert _archives(tmp_path / "out") == 30


def _other_uid() -> list[str]:
    """Run as a uid of its own (not root: RLIMIT_NPROC binds), keeping only the right to read
    and write the test's files (which are root's)."""
    if os.geteuid() != 0:
        return []
    uid = str(50000 + os.getpid() % 10000)  # not shared with other test runs on the machine
    caps = "+dac_override,+dac_read_search"
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", f"--inh-caps={caps}",
            f"--ambient-caps={caps}", "--"]


NPROC_SCRIPT = """
import zipkit, zipkit._executors
{patch}
r = zipkit.zip_by_extension({src!r}, ["a", "b"], {out!r}, progress=False, workers=4)
print(r.summary_line())
print("NOTES", r.notes)
"""


@pytest.mark.parametrize("capped", [True, False], ids=["lowered-up-front", "fork-fails"])
def test_workers_that_cannot_be_forked(tmp_path: Path, capped: bool) -> None:
    """RLIMIT_NPROC leaves room for no worker. ``lowered-up-front``: the limit is read before
    the pool starts and the run goes in-process with one warning. ``fork-fails``: with that
    check switched off, fork fails with EAGAIN: the workers started are killed, and every stem
    is zipped here with one warning."""
    src = _corpus(tmp_path / "src", 40)
    patch = "" if capped else "zipkit._executors.limit_workers = lambda n: (n, None)  # fork until it fails"
    script = _script(tmp_path, "job.py", NPROC_SCRIPT, src=str(src), out=str(tmp_path / "out"), patch=patch)
    done, _ = _run([*_other_uid(), sys.executable, str(script)], limits={resource.RLIMIT_NPROC: 3})
    assert done.returncode == 0, done.stderr
    assert "40 ok of 40" in done.stdout
    lines = _warnings(done.stderr)
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "1 worker(s), in-process" in done.stdout
    if capped:
        assert "process limit (ulimit -u 3)" in lines[0], lines
    else:
        assert "sequential fallback: worker processes could not be started" in lines[0], lines
        assert "Resource temporarily unavailable" in lines[0] or "thread" in lines[0], lines
    assert _archives(tmp_path / "out") == 40


def test_j400_under_ulimit_n_256_is_lowered_with_one_warning(tmp_path: Path) -> None:
    """Issue 13: ``-j 400`` under ``ulimit -n 256`` once printed 'Too many open files' and hung."""
    src = _corpus(tmp_path / "src", 400)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "zipkit", str(src), "--ext", "a", "--ext", "b", "-o", str(out), "-j", "400",
           "--no-progress"]
    done, _ = _run(cmd, limits={resource.RLIMIT_NOFILE: 256}, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "open-file limit (ulimit -n 256)" in lines[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert _archives(out) == 400


FDS_SCRIPT = """
import os, psutil, zipkit, zipkit._executors
zipkit._executors.limit_workers = lambda n: (n, None)  # start workers until the open-file limit stops it
r = zipkit.zip_by_extension({src!r}, ["a", "b"], {out!r}, progress=False, workers=200)
print(r.summary_line())
print("CHILDREN", [p.pid for p in psutil.Process().children(recursive=True)
                   if "forkserver" not in " ".join(p.cmdline()) and p.status() != "zombie"])
"""


def test_a_pool_start_that_runs_out_of_files_kills_its_workers_and_falls_back(tmp_path: Path) -> None:
    src = _corpus(tmp_path / "src", 300)
    script = _script(tmp_path, "job.py", FDS_SCRIPT, src=str(src), out=str(tmp_path / "out"))
    done, _ = _run([sys.executable, str(script)], limits={resource.RLIMIT_NOFILE: 256}, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "300 ok of 300" in done.stdout
    assert "CHILDREN []" in done.stdout, done.stdout
    lines = _warnings(done.stderr)
    assert len(lines) == 1 and "Too many open files" in lines[0], done.stderr[-3000:]
    assert _archives(tmp_path / "out") == 300
