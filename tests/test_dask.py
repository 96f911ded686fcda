"""zipkit on a Dask cluster (loopback only): same archives as the local pool, a killed worker
loses no stem and leaves nothing partial, clear errors for what a worker cannot see."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

import zipkit
from zipkit import ProgressEvent, UsageError
from zipkit._cli import run_cli
from zipkit._dask import DaskExecutor, adapted, check_workers, dask_executor, run_batch_on_worker

distributed = pytest.importorskip("distributed")  # the CI installs zipkit[dask]

EXTS = ["dat", "log"]
STEMS = 240
pytestmark = pytest.mark.timeout(120)


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def leave_no_dask_threads():
    """Hand the test process back with the one thread it had.

    distributed keeps two idle helper threads for the life of a process (its offload pool, made
    at import, and the pool that runs Future callbacks). Harmless for users (zipkit then starts
    its local pools with forkserver instead of fork, as in Jupyter), but later tests in this
    process check what a single-threaded process does. Both pools are replaced by fresh ones,
    whose threads start only when used.
    """
    yield
    import distributed.utils as dutils
    from distributed.client import Future as DaskFuture

    if DaskFuture._cb_executor is not None:
        DaskFuture._cb_executor.shutdown(wait=True)
        DaskFuture._cb_executor = None
    old = dutils._offload_executor
    dutils._offload_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="Dask-Offload")
    old.shutdown(wait=True)
    deadline = time.monotonic() + 10
    while (left := [t.name for t in threading.enumerate() if t.name.startswith(("Dask-", "IO loop"))]) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"threads left running: {left}"


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on 127.0.0.1, no dashboard."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as c, \
            distributed.Client(c, set_as_default=False) as client:
        c.client = client
        yield c


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """240 stems of two text-like files; six stems of ~1 MiB go first, the rest are small."""
    src = tmp_path_factory.mktemp("dask") / "src"
    src.mkdir()
    rng = random.Random(11)
    table = bytes(48 + b % 40 for b in range(256))
    for i in range(STEMS):
        for ext in EXTS:
            size = 500_000 if i % 40 == 0 else rng.randint(100, 12_000)
            (src / f"run{i:03d}.{ext}").write_bytes(rng.randbytes(size).translate(table))
    return src


@pytest.fixture(scope="module")
def reference(corpus) -> dict[str, str]:
    """sha256 of every archive of a local process-pool run, reproducible."""
    out = corpus.parent / "pool"
    rep = zipkit.run_plan(zipkit.plan(corpus, EXTS, out, reproducible=True), workers=2, progress=False)
    assert rep.executor == "process pool" and len(rep.ok) == STEMS
    return digests(out)


def digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.zip"))}


def assert_members_are_the_sources(out: Path, src: Path) -> None:
    """Each archive holds its stem's files by base name, sorted, with the sources' bytes."""
    for arc in sorted(out.glob("*.zip")):
        stem = arc.stem
        with zipfile.ZipFile(arc) as zf:
            assert zf.namelist() == [f"{stem}.{e}" for e in sorted(EXTS)]
            for name in zf.namelist():
                assert zf.read(name) == (src / name).read_bytes(), f"{arc.name}:{name}"


def assert_nothing_partial(out: Path) -> None:
    for arc in out.glob("*.zip"):
        with zipfile.ZipFile(arc) as zf:
            assert zf.testzip() is None, arc
    assert not list(out.glob(".zipkit-*.tmp")), "temp files left behind"


def kill_a_worker_after(client, stems_done: int) -> tuple[list[int], Callable[[ProgressEvent], None]]:
    """A progress callable that SIGKILLs one Dask worker process (the nanny's child) once
    ``stems_done`` stems have finished, choosing a worker that is running a task then."""
    pids = client.run(os.getpid)  # worker address → pid
    killed: list[int] = []

    def on_progress(ev: ProgressEvent) -> None:
        if ev.stems_done >= stems_done and not killed:
            busy = sorted(addr for addr, keys in client.processing().items() if keys and addr in pids)
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(pids[busy[0]])

    return killed, on_progress


# --- same archives as the local pool -----------------------------------------------------------
def test_client_executor_gives_the_local_pools_archives(cluster, corpus, reference, tmp_path):
    ex = cluster.client.get_executor()
    rep = zipkit.run_plan(zipkit.plan(corpus, EXTS, tmp_path, reproducible=True), executor=ex,
                          progress=False)
    assert len(rep.ok) == STEMS and rep.success
    assert digests(tmp_path) == reference
    assert_members_are_the_sources(tmp_path, corpus)
    assert_nothing_partial(tmp_path)
    assert ex.submit(pow, 2, 5).result(timeout=30) == 32  # used as given, not shut down


def workers_running(before: set[int]) -> set[int]:
    """Child processes started since ``before``, not counting multiprocessing's resource tracker
    (spawn starts one per process, for good)."""
    deadline = time.monotonic() + 15
    while True:
        left = set()
        for p in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if p.pid not in before and "resource_tracker" not in " ".join(p.cmdline()):
                    left.add(p.pid)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_executor_dask_starts_and_closes_a_local_cluster(corpus, reference, tmp_path):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    rep = zipkit.run_plan(zipkit.plan(corpus, EXTS, tmp_path, reproducible=True), executor="dask",
                          progress=False)
    assert rep.executor == "DaskExecutor" and len(rep.ok) == STEMS
    assert digests(tmp_path) == reference
    assert_nothing_partial(tmp_path)
    assert not workers_running(before), "worker processes left running"


def test_cli_dask_address_uses_the_cluster_and_leaves_it_running(cluster, corpus, reference, tmp_path):
    report, code = run_cli([str(corpus), "--ext", "dat,log", "-o", str(tmp_path), "--reproducible",
                            "--no-progress", "-q", "--dask", cluster.scheduler_address])
    assert code == 0 and report.executor == "DaskExecutor" and len(report.ok) == STEMS
    assert digests(tmp_path) == reference
    # only our client was closed: the cluster still runs both workers and takes work
    assert len(cluster.scheduler_info["workers"]) == 2
    assert cluster.client.submit(sum, [1, 2]).result(timeout=30) == 3


# --- a worker killed mid-run -------------------------------------------------------------------
def test_killed_worker_is_rescheduled_by_dask_and_the_report_says_so(cluster, corpus, reference, tmp_path):
    client = cluster.client
    client.wait_for_workers(2, timeout=60)
    killed, on_progress = kill_a_worker_after(client, 40)
    rep = zipkit.run_plan(zipkit.plan(corpus, EXTS, tmp_path, reproducible=True),
                          executor=cluster.scheduler_address, progress=on_progress)
    assert killed, "the worker was never killed"
    assert len(rep.results) == STEMS
    for r in rep.results:  # every stem ok or reported
        assert r.status == "ok" or (r.status == "failed" and r.error_type == "WorkerLost"), r
    # Whether the killed worker held a task at that instant depends on timing (small batches
    # finish fast), so "retried" marks are checked only when Dask did re-run something.
    retried = [r for r in rep.results if r.attempts > 1]
    if retried:
        assert "retried" in str(rep) and any("died during the run" in n for n in rep.notes)
    assert_nothing_partial(tmp_path)
    ok = {f"{r.stem}.zip" for r in rep.ok}
    assert digests(tmp_path) == {k: v for k, v in reference.items() if k in ok}
    assert set(digests(tmp_path)) == ok  # no archive for a stem that is not ok
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_killed_worker_past_allowed_failures_is_retried_by_zipkit(cluster, corpus, reference, tmp_path):
    """With ``allowed-failures`` 0, Dask gives up on the task at once (KilledWorker); the core
    then runs its stems again one by one.

    Whether the kill lands while a stem of the task is unfinished depends on timing (a task's
    stems can all be on disk before Dask learns it finished), so the run is tried up to three
    times until a re-run is seen; every try must lose nothing."""
    client, scheduler = cluster.client, cluster.scheduler
    retried = False
    for attempt in range(3):
        out = tmp_path / f"try{attempt}"
        client.wait_for_workers(2, timeout=60)
        old, scheduler.allowed_failures = scheduler.allowed_failures, 0
        try:
            killed, on_progress = kill_a_worker_after(client, 40)
            rep = zipkit.run_plan(zipkit.plan(corpus, EXTS, out, reproducible=True),
                                  executor=client.get_executor(), progress=on_progress)
        finally:
            scheduler.allowed_failures = old
        assert killed
        assert len(rep.results) == STEMS
        for r in rep.results:
            assert r.status == "ok" or (r.status == "failed" and r.error_type == "WorkerLost"), r
        assert_nothing_partial(out)
        ok = {f"{r.stem}.zip" for r in rep.ok}
        assert set(digests(out)) == ok
        assert digests(out) == {k: v for k, v in reference.items() if k in ok}
        if any(r.attempts == 2 for r in rep.results):
            retried = True
            break
    assert retried, "in three runs no kill landed while a task had unfinished stems"
    client.wait_for_workers(2, timeout=60)


# --- what a worker cannot see ------------------------------------------------------------------
def test_missing_source_names_the_worker_host_and_the_path(cluster, corpus, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a1.dat", "a1.log", "b2.dat", "b2.log", "c3.dat"):
        (src / name).write_bytes((corpus / "run001.dat").read_bytes())
    p = zipkit.plan(src, EXTS, tmp_path / "out")
    (src / "b2.log").unlink()  # as if this worker's mount did not have it
    with dask_executor(cluster.scheduler_address) as ex:
        rep = zipkit.run_plan(p, executor=ex, progress=False)
    assert [r.stem for r in rep.failed] == ["b2"]
    bad = rep["b2"]
    assert bad.error_type == "FileNotFoundError"
    assert str(src / "b2.log") in bad.message
    assert f"worker host {socket.gethostname()!r}" in bad.message
    assert "every Dask worker sees" in bad.message
    assert {r.stem for r in rep.ok} == {"a1", "c3"}
    assert_nothing_partial(tmp_path / "out")


def test_a_plain_client_executor_gets_the_same_care(cluster, corpus, reference, tmp_path):
    """``executor=client.get_executor()`` gets what the string forms get: host names in errors,
    "retried" marks and a note when a worker dies."""
    client = cluster.client
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a1.dat", "a1.log", "b2.dat", "b2.log"):
        (src / name).write_bytes(b"x" * 1000)
    p = zipkit.plan(src, EXTS, tmp_path / "small")
    (src / "b2.log").unlink()
    rep = zipkit.run_plan(p, executor=client.get_executor(), progress=False)
    assert rep.executor == "DaskExecutor"
    assert f"worker host {socket.gethostname()!r}" in rep["b2"].message

    for attempt in range(3):  # a kill can land after its task's stems are all on disk: try again
        client.wait_for_workers(2, timeout=60)
        killed, on_progress = kill_a_worker_after(client, 40)
        out = tmp_path / f"out{attempt}"
        rep = zipkit.run_plan(zipkit.plan(corpus, EXTS, out, reproducible=True),
                              executor=client.get_executor(), progress=on_progress)
        assert killed and len(rep.ok) == STEMS
        assert digests(out) == reference  # every run, retried or not, loses nothing
        if any(r.attempts > 1 for r in rep.results):
            break
    else:
        pytest.fail("in three runs no kill landed while a task was running")
    assert any("died during the run" in n for n in rep.notes)
    client.wait_for_workers(2, timeout=60)


def test_output_folder_a_worker_cannot_see_fails_the_batch_clearly(cluster, corpus, tmp_path):
    p = zipkit.plan(corpus, EXTS, tmp_path / "not-on-the-workers", stems=["run001", "run002"])
    batch = list(p.stems)
    results = cluster.client.submit(run_batch_on_worker, batch, p.options, "t1", pure=False).result(30)
    assert [r.status for r in results] == ["failed", "failed"]
    msg = results[0].message
    assert str(tmp_path / "not-on-the-workers") in msg and socket.gethostname() in msg
    assert "every Dask worker sees" in msg
    assert not (tmp_path / "not-on-the-workers").exists()


def test_timeout_on_dask_stops_the_stem_and_leaves_nothing(cluster, corpus, tmp_path):
    # the shortest timeout zipkit takes (1 ms), on stems that lzma -9 keeps far longer than that
    p = zipkit.plan(corpus, EXTS, tmp_path, stems=["run000", "run040", "run001"], timeout=0.001,
                    compression="lzma", level=9)
    with dask_executor(cluster.scheduler_address) as ex:
        rep = zipkit.run_plan(p, executor=ex, progress=False)
    assert [r.status for r in rep.results] == ["timed_out"] * 3
    assert all("timeout" in r.message and "worker host" in r.message for r in rep.results)
    assert not list(tmp_path.iterdir())  # no archive, no temp file


# --- asking for Dask the wrong way -------------------------------------------------------------
@pytest.mark.parametrize("spec, words", [
    ("nonsense", "scheduler address"),
    ("/nowhere/scheduler.json", "does not exist"),
])
def test_a_spec_that_is_not_a_cluster_is_a_usage_error(spec, words):
    with pytest.raises(UsageError, match=words):
        with dask_executor(spec):
            pass


def test_an_unreachable_scheduler_is_a_usage_error(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(UsageError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: "
                                         "Connection refused"):
        with dask_executor(f"127.0.0.1:{port}"):
            pass
    assert time.monotonic() - t0 < 5  # refused at once, not after Dask's 30 s connect timeout
    file = tmp_path / "scheduler.json"
    file.write_text(f'{{"type": "Scheduler", "address": "tcp://127.0.0.1:{port}"}}')
    with pytest.raises(UsageError, match=f"cannot reach the Dask scheduler at {file} "
                                         rf"\(tcp://127.0.0.1:{port}\)"):
        with dask_executor(str(file)):
            pass


def test_without_distributed_dask_is_a_usage_error_and_import_stays_light(tmp_path):
    (tmp_path / "x.dat").write_text("x")
    code = textwrap.dedent(f"""
        import sys
        sys.modules["distributed"] = None  # as if not installed
        import zipkit
        assert "dask" not in sys.modules and "distributed" not in sys.modules or \\
            sys.modules["distributed"] is None
        p = zipkit.plan({str(tmp_path)!r}, ["dat"])
        try:
            zipkit.run_plan(p, executor="dask", progress=False)
        except zipkit.UsageError as e:
            print("UsageError:", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "UsageError:" in out.stdout and "pip install 'zipkit[dask]'" in out.stdout
    assert not (tmp_path / "x.zip").exists()


def test_dask_executor_is_an_executor_that_is_not_shut_down_by_a_run(cluster, corpus, tmp_path):
    p = zipkit.plan(corpus, EXTS, tmp_path, stems=["run003", "run004", "run005"])
    ex = DaskExecutor(cluster.client)
    try:
        rep = zipkit.run_plan(p, executor=ex, progress=False)
        assert rep.success and len(rep.ok) == 3 and rep.workers == 2
        assert ex.submit(pow, 3, 2).result(timeout=30) == 9
    finally:
        ex.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(pow, 3, 2)
    assert cluster.client.submit(pow, 2, 2).result(timeout=30) == 4  # the client stays open


def test_adapted_wraps_a_client_executor_for_one_run_only(cluster, corpus, tmp_path):
    plain = cluster.client.get_executor()
    with adapted(plain) as ex:
        assert isinstance(ex, DaskExecutor) and ex.client is cluster.client
        rep = zipkit.run_plan(zipkit.plan(corpus, EXTS, tmp_path, stems=["run006", "run007"]),
                              executor=ex, progress=False)
    assert rep.executor == "DaskExecutor" and rep.success
    assert cluster.client._event_handlers.get("all") != ex._on_event  # stopped listening
    assert plain.submit(pow, 2, 3).result(timeout=30) == 8
    with ThreadPoolExecutor(1) as other, adapted(other) as same:
        assert same is other


def test_workers_that_cannot_import_zipkit_are_a_usage_error(cluster, caplog):
    check_workers(cluster.client)  # the loopback workers can
    assert "another zipkit version" not in caplog.text
    missing = functools.partial(importlib.import_module, "zipkit_not_on_this_worker")
    with pytest.raises(UsageError, match="workers cannot import zipkit.*zipkit_not_on_this_worker"):
        check_workers(cluster.client, probe=missing)


def test_cancel_on_a_local_cluster_stops_cleans_up_and_closes_it(corpus, tmp_path):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    cancel = threading.Event()

    def stop_after_some(ev: ProgressEvent) -> None:
        if ev.stems_done >= 30:
            cancel.set()

    rep = zipkit.run_plan(zipkit.plan(corpus, EXTS, tmp_path, reproducible=True), executor="dask",
                          progress=stop_after_some, cancel=cancel)
    assert rep.cancelled and len(rep.ok) >= 30 and not rep.failed
    assert len(rep.ok) + len(rep.cancelled) == STEMS
    assert_nothing_partial(tmp_path)
    assert {f"{r.stem}.zip" for r in rep.ok} <= set(digests(tmp_path))
    assert not workers_running(before), "worker processes left running"
